// slipway dashboard: a small SVG chart kit (line and step charts, a layered graph).
// No dependencies; every chart is built as SVG elements, so tests can count what is drawn.
'use strict';

const Chart = (() => {
  const NS = 'http://www.w3.org/2000/svg';

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // "nice" tick values covering [lo, hi]
  function ticks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1);
    return String(Math.round(v * 1000) / 1000);
  }

  // opts: {width, height, series: [{name, x: [], y: [], cls?}], step?, logY?, hlines?: [{y, label}],
  //        xLabel?, yLabel?, xTime?: bool, yMin?, yMax?}
  function line(opts) {
    const W = opts.width || 520, H = opts.height || 240, L = 56, R = 12, T = 28, B = 34;
    const svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'chart'});
    const tr = (y) => (opts.logY ? (y > 0 ? Math.log10(y) : null) : y);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of opts.series) {
      s.x.forEach((x, i) => {
        const y = s.y[i] === null || s.y[i] === undefined ? null : tr(s.y[i]);
        if (y === null || !isFinite(y) || x === null || !isFinite(x)) return;
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      });
    }
    for (const h of opts.hlines || []) {
      const y = tr(h.y);
      if (y !== null && isFinite(y)) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    }
    if (opts.yMin !== undefined) y0 = Math.min(y0, opts.yMin);
    if (opts.yMax !== undefined) y1 = Math.max(y1, opts.yMax);
    if (!isFinite(x0)) { x0 = 0; x1 = 1; }
    if (!isFinite(y0)) { y0 = 0; y1 = 1; }
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + (Math.abs(y0) || 1) * 0.1; y0 -= (Math.abs(y0) || 1) * 0.1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis'}, svg);
    el('line', {x1: L, y1: T, x2: L, y2: H - B, class: 'axis'}, svg);
    // log scale: ticks at powers of ten when at least two fall in range
    let yt = ticks(y0, y1, 4);
    if (opts.logY) {
      const p = [];
      for (let e = Math.ceil(y0); e <= Math.floor(y1); e++) p.push(e);
      if (p.length >= 2) yt = p;
    }
    for (const t of yt) {
      el('line', {x1: L, y1: sy(t), x2: W - R, y2: sy(t), class: 'grid'}, svg);
      el('text', {x: L - 6, y: sy(t) + 4, 'text-anchor': 'end'}, svg, opts.logY ? fmt(Math.pow(10, t)) : fmt(t));
    }
    for (const t of ticks(x0, x1, 5)) {
      el('text', {x: sx(t), y: H - B + 16, 'text-anchor': 'middle'}, svg,
         opts.xTime ? new Date(t * 1000).toISOString().slice(11, 19) : fmt(t));
    }
    if (opts.xLabel) el('text', {x: W - R, y: H - 4, 'text-anchor': 'end'}, svg, opts.xLabel);
    if (opts.yLabel) el('text', {x: 4, y: 12}, svg, opts.yLabel);
    for (const h of opts.hlines || []) {
      const y = tr(h.y);
      if (y === null || !isFinite(y)) continue;
      el('line', {x1: L, y1: sy(y), x2: W - R, y2: sy(y), class: 'boundary', 'data-value': h.y}, svg);
      if (h.label) el('text', {x: W - R - 4, y: sy(y) - 4, 'text-anchor': 'end'}, svg, h.label);
    }
    opts.series.forEach((s, k) => {
      let d = '', n = 0, prevY = null;
      s.x.forEach((x, i) => {
        const yv = s.y[i] === null || s.y[i] === undefined ? null : tr(s.y[i]);
        if (yv === null || !isFinite(yv) || x === null || !isFinite(x)) return;
        const px = sx(x).toFixed(1), py = sy(yv).toFixed(1);
        if (n === 0) d += `M${px},${py}`;
        else if (opts.step) d += `H${px}V${py}`;
        else d += `L${px},${py}`;
        prevY = py;
        n++;
      });
      if (opts.step && n > 0 && opts.stepTo !== undefined) d += `H${sx(opts.stepTo).toFixed(1)}`;
      const cls = s.cls || `s${k}`;
      el('path', {d: d || 'M0,0', class: `series ${cls}`, 'data-series': s.name, 'data-points': n}, svg);
      if (n === 1) el('circle', {cx: sx(s.x.find((x, i) => s.y[i] !== null && s.y[i] !== undefined)), cy: prevY, r: 3, class: `dot ${cls}`}, svg);
    });
    const lg = el('g', {class: 'legend'}, svg);
    let lx = Math.max(L, 12 + 6.5 * (opts.yLabel || '').length);
    opts.series.forEach((s, k) => {
      el('rect', {x: lx, y: 8, width: 10, height: 3, class: `series ${s.cls || 's' + k}`, style: 'stroke-width:3'}, lg);
      const t = el('text', {x: lx + 14, y: 12}, lg, s.name);
      lx += 24 + 7 * s.name.length;
      return t;
    });
    return svg;
  }

  // A tiny sparkline of ys (no axes).
  function spark(ys, width, height) {
    const W = width || 120, H = height || 24;
    const svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'sparkline'});
    const v = ys.filter((y) => y !== null && isFinite(y));
    if (v.length < 2) return svg;
    const hi = Math.max(...v, 1e-9), lo = Math.min(0, ...v);
    const d = ys.map((y, i) => `${i ? 'L' : 'M'}${(i / (ys.length - 1) * (W - 2) + 1).toFixed(1)},${(H - 2 - ((y || 0) - lo) / (hi - lo) * (H - 4)).toFixed(1)}`).join('');
    el('path', {d, class: 'spark'}, svg);
    return svg;
  }

  // A layered graph: nodes [{id, layer, label, sub?, cls?, href?}], edges [[from, to]].
  // Layers become columns, left to right; each edge is drawn as a curve with an arrow and
  // carries data-from / data-to, so its ends can be checked.
  function graph(nodes, edges, opts) {
    opts = opts || {};
    const NW = 150, NH = 42, GX = 60, GY = 14;
    const depth = Math.max(0, ...nodes.map((n) => n.layer)) + 1;
    const layers = Array.from({length: depth}, () => []);
    for (const n of nodes) layers[n.layer].push(n);
    const rows = Math.max(1, ...layers.map((l) => l.length));
    const W = Math.max(1, layers.length) * (NW + GX) - GX + 20, H = rows * (NH + GY) - GY + 20;
    const svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'graph'});
    const defs = el('defs', {}, svg);
    const m = el('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'}, defs);
    el('path', {d: 'M0,0L10,5L0,10z', class: 'arrow'}, m);
    const pos = {};
    layers.forEach((l, li) => {
      const off = (H - 20 - (l.length * (NH + GY) - GY)) / 2;
      l.forEach((n, i) => { pos[n.id] = {x: 10 + li * (NW + GX), y: 10 + off + i * (NH + GY)}; });
    });
    for (const [a, b] of edges) {
      const p = pos[a], q = pos[b];
      if (!p || !q) continue;
      const x1 = p.x + NW, y1 = p.y + NH / 2, x2 = q.x, y2 = q.y + NH / 2, mx = (x1 + x2) / 2;
      el('path', {d: `M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: 'edge', 'marker-end': 'url(#arrow)', 'data-from': a, 'data-to': b}, svg);
    }
    for (const n of nodes) {
      const p = pos[n.id];
      const g = el('g', {class: `node ${n.cls || ''}`, 'data-id': n.id, transform: `translate(${p.x},${p.y})`}, svg);
      const holder = n.href ? el('a', {href: n.href}, g) : g;
      el('rect', {width: NW, height: NH}, holder);
      el('text', {x: 8, y: 17}, holder, clip(n.label, 22));
      if (n.sub) el('text', {x: 8, y: 33, class: 'sub'}, holder, clip(n.sub, 24));
      if (n.title) el('title', {}, g, n.title);
    }
    return svg;
  }

  function clip(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + '…' : s; }

  return {line, spark, graph, fmt};
})();
