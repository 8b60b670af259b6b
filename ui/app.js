// slipway dashboard: models, versions (lineage, curves, gate), rollouts and serving, from the
// server's read-only JSON API (../api/v1/, relative, so a path prefix in front works).
// Pages are hash routes; the current one is polled every 2 s and redrawn only when its
// data changed. Nothing here changes state: the API is read-only.
'use strict';

const API = '../api/v1/';
const POLL_MS = 2000;
const main = document.getElementById('main');
const statusEl = document.getElementById('status');
let info = null;
let lastKey = null, lastRoute = null, timer = null, busy = false, again = false;

// ---- helpers ------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) {
    if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) continue;
    if (k === 'class') e.className = attrs[k];
    else e.setAttribute(k, attrs[k]);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    e.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function get(path) {
  const r = await fetch(API + path, {cache: 'no-store'});
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
  return j;
}

const badge = (text, cls) => h('span', {class: `badge ${cls || text}`}, text);
const fmt = (v, d) => (v === null || v === undefined || !isFinite(v) ? '–' : Number(v).toFixed(d === undefined ? 4 : d));
const short = (s, n) => (s ? String(s).slice(0, n || 12) : '–');
const when = (iso) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC') : '–');
const secs = (iso) => Date.parse(iso) / 1000;
const vlink = (m, v) => h('a', {href: `#/version/${encodeURIComponent(m)}/${v}`}, `${m}:${v}`);
const rlink = (id) => h('a', {href: `#/rollout/${id}`}, `#${id}`);
const ms = (s) => (s === null || s === undefined ? '–' : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + ' ms');

function metricsText(m) {
  return Object.keys(m || {}).sort().map((k) => `${k} ${fmt(m[k])}`).join(', ');
}

function card(...kids) { return h('div', {class: 'card'}, ...kids); }

function table(headers, rows, attrs) {
  return h('table', attrs || {},
    h('thead', {}, h('tr', {}, headers.map((x) => (x.startsWith('#') ? h('th', {class: 'num'}, x.slice(1)) : h('th', {}, x))))),
    h('tbody', {}, rows));
}

function lastDecision(r) {
  const ds = (r.decisions || []).filter((d) => d.action !== 'snapshot');
  return ds.length ? ds[ds.length - 1] : null;
}

// ---- pages ----------------------------------------------------------------------------

function needRegistry() {
  return card(h('p', {class: 'muted'},
    'This server serves --model-file files, not a registry: models, versions and rollouts come from a registry ',
    '(slipway serve --registry). The serving page works either way.'), h('a', {href: '#/serving'}, 'serving →'));
}

async function pageModels() {
  if (!info.registry) return {key: 'no-registry', render: needRegistry};
  const [m, r] = await Promise.all([get('models'), get('rollouts')]);
  return {
    key: JSON.stringify([m, r]),
    render: () => {
      const out = [h('h1', {}, 'Models')];
      if (!m.models.length) out.push(card(h('p', {class: 'muted'}, 'The registry holds no model yet (slipway registry register).')));
      for (const model of m.models) {
        const aliases = Object.keys(model.aliases).sort().map((a) => h('span', {}, badge(`${a} → ${model.aliases[a]}`, 'alias'), ' '));
        const rows = model.versions.slice().reverse().map((v) => h('tr', {'data-version': v.version, 'data-state': v.state},
          h('td', {}, vlink(model.name, v.version)),
          h('td', {}, badge(v.state), v.state_reason ? h('div', {class: 'muted reason'}, v.state_reason) : null),
          h('td', {}, v.aliases.map((a) => badge(a, 'alias'))),
          h('td', {}, when(v.created_at), h('div', {class: 'muted'}, v.created_by || '')),
          h('td', {}, v.evaluations.filter((e, i, all) => e.slice === null &&
            all.findIndex((x) => x.slice === null && x.context === e.context) === i).slice(0, 3).map((e) =>
            h('div', {}, h('span', {class: 'muted'}, `${e.context || 'eval'} · ${e.split}: `), metricsText(e.metrics))))));
        const hist = model.alias_history.slice().reverse().map((x) => h('tr', {},
          h('td', {}, when(x.at)), h('td', {}, badge(x.alias, 'alias')),
          h('td', {}, x.from === null ? '(new)' : x.from, ' → ', x.to), h('td', {}, x.who), h('td', {}, x.why || '')));
        const ros = r.rollouts.filter((x) => x.model === model.name).map((x) => {
          const d = lastDecision(x);
          return h('tr', {'data-rollout': x.id, 'data-state': x.state}, h('td', {}, rlink(x.id)),
            h('td', {}, `${x.challenger} vs ${x.incumbent === null ? '–' : x.incumbent}`), h('td', {}, x.mode),
            h('td', {}, badge(x.state)), h('td', {class: 'num'}, `${fmt(x.weight, 0)} %`),
            h('td', {class: 'reason'}, d ? d.reason : ''));
        });
        out.push(card(
          h('h2', {}, model.name, ' ', aliases),
          table(['version', 'state', 'aliases', 'created', 'evaluations'], rows, {class: 'versions', 'data-model': model.name}),
          ros.length ? [h('h3', {}, 'rollouts'), table(['id', 'challenger vs incumbent', 'mode', 'state', '#weight', 'last decision'], ros)] : null,
          hist.length ? [h('h3', {}, 'alias history'), table(['at', 'alias', 'move', 'who', 'why'], hist, {class: 'alias-history'})] : null));
      }
      return out;
    },
  };
}

function lineageGraph(d) {
  const v = d.version, lin = d.lineage, nodes = [], edges = [];
  let prev = null;
  if (lin.dataset) {
    nodes.push({id: 'dataset', layer: 0, label: 'dataset', sub: short(lin.dataset.manifest_sha256),
      title: `${lin.dataset.path || ''}\nmanifest sha256 ${lin.dataset.manifest_sha256}`});
    prev = 'dataset';
  }
  if (lin.run) {
    const base = (lin.run.path || '').split('/').filter(Boolean).pop() || 'run';
    nodes.push({id: 'run', layer: 1, label: `run ${base}`, sub: `${lin.run.steps} steps`, title: lin.run.path || ''});
    if (prev) edges.push([prev, 'run']);
    prev = 'run';
  }
  nodes.push({id: 'version', layer: 2, label: v.ref, sub: v.state, cls: `version ${v.state}`});
  if (prev) edges.push([prev, 'version']);
  // one node per kind of evaluation (promote:candidate, monitor, ...): its newest, and how many
  const byContext = new Map();
  for (const e of v.evaluations.filter((x) => x.slice === null)) {
    const k = e.context || 'evaluation';
    if (!byContext.has(k)) byContext.set(k, {e, n: 0});
    byContext.get(k).n++;
  }
  [...byContext.entries()].forEach(([k, {e, n}], i) => {
    const acc = e.metrics && e.metrics.accuracy !== undefined ? `accuracy ${fmt(e.metrics.accuracy, 3)}` : metricsText(e.metrics);
    nodes.push({id: `eval-${i}`, layer: 3, label: n > 1 ? `${k} (${n})` : k, sub: `${e.split}: ${acc}`,
      title: `newest ${when(e.at)}\n${metricsText(e.metrics)}`});
    edges.push(['version', `eval-${i}`]);
  });
  d.rollouts.forEach((r) => {
    const role = r.challenger === v.version ? 'challenger' : 'incumbent';
    nodes.push({id: `rollout-${r.id}`, layer: 4, label: `rollout #${r.id}`, sub: `${role} · ${r.state}`, cls: r.state, href: `#/rollout/${r.id}`});
    edges.push(['version', `rollout-${r.id}`]);
  });
  // a layer with nothing in it still takes its column, so the flow reads left to right
  return {svg: Chart.graph(nodes, edges), nodes, edges};
}

function curves(metrics) {
  const charts = [];
  for (const [key, label] of [['loss', 'loss'], ['accuracy', 'accuracy']]) {
    const series = [];
    if (metrics.train.lines) series.push({name: `train ${label}`, x: metrics.train.step, y: metrics.train[key]});
    if (metrics.val.lines) series.push({name: `val ${label}`, x: metrics.val.step, y: metrics.val[key]});
    if (!series.some((s) => s.y.some((y) => y !== null))) continue;
    const svg = Chart.line({series, xLabel: 'step', yLabel: label, width: 560, height: 240});
    svg.setAttribute('data-chart', label);
    charts.push(h('div', {}, h('h3', {}, label), svg));
  }
  return charts;
}

function gateTable(g) {
  const dec = g.decision || {};
  const rows = (dec.checks || []).map((c) => h('tr', {'data-passed': c.passed},
    h('td', {}, c.metric, c.slice ? ` [${c.slice}]` : ''), h('td', {}, c.kind),
    h('td', {class: 'num'}, fmt(c.threshold)), h('td', {class: 'num'}, fmt(c.value)),
    h('td', {class: 'num'}, c.baseline === undefined ? '–' : fmt(c.baseline)),
    h('td', {}, c.skipped ? badge('skipped', 'waiting') : badge(c.passed ? 'passed' : 'failed')),
    h('td', {}, c.reason || '')));
  return h('div', {class: 'gate'},
    h('p', {}, badge(g.action === 'promote' ? 'passed' : 'failed'), ` ${g.action} for @${g.alias || '?'}`,
      g.baseline !== null && g.baseline !== undefined ? ` against version ${g.baseline}` : ' (no baseline)',
      h('span', {class: 'muted'}, ` · ${when(g.at)} by ${g.who}`)),
    table(['metric', 'check', '#threshold', '#value', '#baseline', 'result', 'reason'], rows));
}

async function pageVersion(args) {
  if (!info.registry) return {key: 'no-registry', render: needRegistry};
  const [m, ver] = args;
  const base = `models/${encodeURIComponent(m)}/versions/${ver}`;
  const d = await get(base);
  const metrics = d.lineage.run ? await get(`${base}/metrics`) : null;
  return {
    key: JSON.stringify([d, metrics]),
    render: () => {
      const v = d.version, lin = d.lineage;
      const stateEv = (v.events || []).filter((e) => e.action === 'state').pop();
      const why = stateEv && stateEv.detail ? stateEv.detail.why : null;
      const g = lineageGraph(d);
      const kv = [
        ['artifact', h('span', {class: 'mono'}, v.artifact.sha256)], ['size', `${v.artifact.size} bytes`],
        ['created', `${when(v.created_at)} by ${v.created_by}`], ['code', v.code_version || '–'],
        ['dataset', lin.dataset ? lin.dataset.path || lin.dataset.manifest_sha256 : '–'],
        ['run', lin.run ? lin.run.path : (v.source || '–')],
        ['hyperparameters', lin.run ? h('span', {class: 'mono'}, JSON.stringify(lin.run.hyperparameters)) : '–'],
      ];
      return [
        h('h1', {}, h('a', {href: '#/models'}, 'models'), ' / ', v.ref, ' ', badge(v.state), ' ', v.aliases.map((a) => badge(a, 'alias'))),
        why ? h('div', {class: `decision ${v.state}`, id: 'state-reason'}, `${v.state}: ${why}`) : null,
        card(h('h2', {}, 'lineage'), h('div', {id: 'lineage', 'data-edges': g.edges.length}, g.svg)),
        metrics ? card(h('h2', {}, 'training curves'),
          h('p', {class: 'muted'}, `${metrics.lines} lines of metrics.jsonl: ${metrics.train.lines} train, ${metrics.val.lines} validation`,
            metrics.truncated ? ' (truncated)' : ''),
          h('div', {class: 'grid', id: 'curves', 'data-lines': metrics.lines}, curves(metrics))) : null,
        card(h('h2', {}, 'gate decisions'), d.gate.length ? d.gate.slice().reverse().map(gateTable)
          : h('p', {class: 'muted'}, 'No promotion was judged for this version.')),
        card(h('h2', {}, 'details'), h('div', {class: 'kv'}, kv.map(([k, x]) => [h('div', {}, k), h('div', {}, x)]))),
        card(h('h2', {}, 'events'), table(['id', 'at', 'who', 'what', 'detail'], (v.events || []).slice().reverse().map((e) => h('tr', {},
          h('td', {}, e.id), h('td', {}, when(e.at)), h('td', {}, e.who), h('td', {}, `${e.entity} ${e.action}`),
          h('td', {class: 'muted'}, e.detail && e.detail.why ? e.detail.why : ''))))),
      ];
    },
  };
}

async function pageRollouts() {
  if (!info.registry) return {key: 'no-registry', render: needRegistry};
  const r = await get('rollouts');
  return {
    key: JSON.stringify(r),
    render: () => [h('h1', {}, 'Rollouts'), card(r.rollouts.length ? table(
      ['id', 'model', 'challenger vs incumbent', 'mode', 'state', '#weight', 'updated', 'last decision'],
      r.rollouts.map((x) => {
        const d = lastDecision(x);
        return h('tr', {'data-rollout': x.id, 'data-state': x.state}, h('td', {}, rlink(x.id)), h('td', {}, x.model),
          h('td', {}, vlink(x.model, x.challenger), ' vs ', x.incumbent === null ? '–' : vlink(x.model, x.incumbent)), h('td', {}, x.mode),
          h('td', {}, badge(x.state)), h('td', {class: 'num'}, `${fmt(x.weight, 0)} %`), h('td', {}, when(x.updated_at)),
          h('td', {class: 'reason'}, d ? d.reason : ''));
      })) : h('p', {class: 'muted'}, 'No rollout yet.'))],
  };
}

async function pageRollout(args) {
  if (!info.registry) return {key: 'no-registry', render: needRegistry};
  const r = await get(`rollouts/${encodeURIComponent(args[0])}`);
  return {
    key: JSON.stringify(r),
    render: () => {
      const live = ['running', 'holding', 'pending'].includes(r.state);
      const decs = r.decisions || [];
      // the start decision is stamped just before the record is created
      const t0 = Math.min(secs(r.created_at), ...decs.map((x) => secs(x.at)).filter((x) => isFinite(x)));
      const d = lastDecision(r);
      // weight over time: every decision's weight, then the record's own now
      const tx = decs.map((x) => secs(x.at) - t0), wy = decs.map((x) => x.weight);
      const tEnd = live ? Date.now() / 1000 - t0 : secs(r.updated_at) - t0;
      tx.push(Math.max(tEnd, tx.length ? tx[tx.length - 1] : 0)); wy.push(r.weight);
      const timeline = Chart.line({series: [{name: 'challenger weight %', x: tx, y: wy}], step: true, yMin: 0, yMax: 100,
        xLabel: 'seconds since start', yLabel: 'weight %', width: 620, height: 220});
      timeline.setAttribute('data-chart', 'weight');
      // the evidence of each metric as it accumulated (snapshots and decisions carry it)
      const names = [];
      for (const x of decs) for (const k of Object.keys(x.evidence || {})) if (!names.includes(k)) names.push(k);
      const evCharts = names.map((k) => {
        const pts = decs.filter((x) => x.evidence && x.evidence[k]);
        const ev = pts.map((x) => x.evidence[k]);
        const last = ev[ev.length - 1];
        const svg = Chart.line({series: [{name: `e-value (${k})`, x: pts.map((x) => secs(x.at) - t0), y: ev.map((e) => e.e_value)}],
          logY: true, hlines: [{y: last.boundary, label: `boundary 1/α = ${Chart.fmt(last.boundary)}`}],
          xLabel: 'seconds since start', yLabel: 'e-value (log)', width: 460, height: 200});
        svg.setAttribute('data-chart', `evidence-${k}`);
        const side = (s) => (s ? `${s.events}/${s.n}` : '–');
        // an objective (slo_*) is the challenger against a fixed figure, not the incumbent;
        // latency's events are answers slower than the incumbent's p99 once it is fixed
        const against = last.objective_ms !== undefined ? `objective p99 ≤ ${Chart.fmt(last.objective_ms)} ms`
          : last.objective !== undefined ? `objective ≤ ${Chart.fmt(last.objective)}` : `incumbent ${side(last.incumbent)}`;
        const what = {error_rate: 'errors', latency: last.threshold_ms !== undefined ? `slower than ${Chart.fmt(last.threshold_ms)} ms` : 'slow',
          quality: 'wrong', slo_p99: `over ${Chart.fmt(last.objective_ms)} ms`, slo_error_rate: 'errors'}[k] || 'events';
        return h('div', {'data-metric': k}, h('h3', {}, k, ' ', badge(last.verdict || 'waiting')), svg,
          h('p', {class: 'muted'}, `challenger ${side(last.challenger)} · ${against} (${what}/n) · e = ${Chart.fmt(last.e_value)} · α ${Chart.fmt(last.alpha)}`));
      });
      const p = r.policy || {};
      return [
        h('h1', {}, h('a', {href: '#/rollouts'}, 'rollouts'), ` / #${r.id} `, badge(r.state), live ? h('span', {class: 'muted'}, ' live') : null),
        h('p', {}, `${r.mode} of `, vlink(r.model, r.challenger), ' against ', r.incumbent === null ? '–' : vlink(r.model, r.incumbent),
          ` · weight ${fmt(r.weight, 0)} % at step ${r.step} · started ${when(r.created_at)}`),
        h('div', {class: `decision ${r.state}`, id: 'decision'}, d ? [h('b', {}, d.action), ': ', h('span', {class: 'reason'}, d.reason)] : 'no decision yet'),
        card(h('h2', {}, 'traffic'), timeline),
        card(h('h2', {}, 'evidence'), names.length ? h('div', {class: 'grid'}, evCharts) : h('p', {class: 'muted'}, 'No evidence recorded yet.')),
        card(h('h2', {}, 'decisions'), table(['at', '#step', '#weight', 'action', 'reason'],
          decs.filter((x) => x.action !== 'snapshot').map((x) => h('tr', {'data-action': x.action}, h('td', {}, when(x.at)),
            h('td', {class: 'num'}, x.step), h('td', {class: 'num'}, `${fmt(x.weight, 0)} %`), h('td', {}, badge(x.action, x.action === 'rollback' ? 'rolled_back' : x.action === 'promote' ? 'promoted' : '')),
            h('td', {}, x.reason || ''))), {id: 'decisions'}),
          (() => { const n = decs.filter((x) => x.action === 'snapshot').length; return h('p', {class: 'muted'}, `${n} evidence snapshot${n === 1 ? '' : 's'} (drawn above, not listed)`); })()),
        card(h('h2', {}, 'policy'), h('div', {class: 'kv'},
          h('div', {}, 'steps'), h('div', {}, (p.steps || []).join(' → ') + ' %'),
          h('div', {}, 'min requests / step'), h('div', {}, p.min_requests_per_step ?? '–'),
          h('div', {}, 'max step seconds'), h('div', {}, p.max_step_seconds ?? '–'),
          h('div', {}, 'alpha'), h('div', {}, p.alpha ?? '–'),
          h('div', {}, 'SLO'), h('div', {}, p.slo ? `p99 ${p.slo.p99_ms ?? '–'} ms, error rate ${p.slo.error_rate ?? '–'}` : '–'))),
      ];
    },
  };
}

// serving: rates and windowed percentiles come from the difference between two polls
const prevServing = {at: null, byKey: {}};
const history = {};

function hq(q, le, cum, count) { // Prometheus's histogram_quantile
  if (!(count > 0)) return null;
  const rank = q * count;
  let pl = 0, pc = 0;
  for (let i = 0; i < le.length; i++) {
    if (cum[i] >= rank) { const n = cum[i] - pc; return n > 0 ? pl + (le[i] - pl) * (rank - pc) / n : le[i]; }
    pl = le[i]; pc = cum[i];
  }
  return pl;
}

async function pageServing() {
  const s = await get('serving');
  s.at = s.at_ms / 1000;
  const dt = prevServing.at ? s.at - prevServing.at : null;
  const rows = s.versions.map((v) => {
    const key = `${v.model}:${v.version}`, prev = prevServing.byKey[key];
    const lat = v.histograms.request_duration_seconds;
    const batch = v.histograms.batch_size;
    let rate = null, p50 = lat ? lat.p50 : null, p99 = lat ? lat.p99 : null, p90 = lat ? lat.p90 : null;
    if (prev && dt > 0) {
      rate = (v.requests - prev.requests) / dt;
      if (lat && prev.lat && lat.count > prev.lat.count) { // the window since the last poll
        const cum = lat.counts.map((c, i) => c - (prev.lat.counts[i] || 0)), n = lat.count - prev.lat.count;
        p50 = hq(0.5, lat.le, cum, n); p90 = hq(0.9, lat.le, cum, n); p99 = hq(0.99, lat.le, cum, n);
      }
    }
    (history[key] = history[key] || []).push(rate);
    if (history[key].length > 60) history[key].shift();
    return {v, key, rate, p50, p90, p99, batch};
  });
  prevServing.at = s.at;
  prevServing.byKey = Object.fromEntries(s.versions.map((v) => [`${v.model}:${v.version}`,
    {requests: v.requests, lat: v.histograms.request_duration_seconds}]));
  const m = s.metrics || {};
  const drift = Object.keys(m).filter((k) => k.startsWith('slipway_drift_'));
  const quality = Object.keys(m).filter((k) => k.startsWith('slipway_model_quality'));
  const rollout = Object.keys(m).filter((k) => k.startsWith('slipway_rollout') || k === 'slipway_rollbacks_total');
  return {
    key: JSON.stringify(s),
    render: () => [
      h('h1', {}, 'Serving ', s.ready ? badge('ready', 'ok') : badge('not ready', 'pending')),
      card(h('h2', {}, 'versions'), rows.length ? table(
        ['version', 'loaded', '#requests/s', '', '#requests', '#4xx', '#5xx', '#p50', '#p90', '#p99', '#mean batch', '#live accuracy', '#memory'],
        rows.map((x) => {
          const v = x.v, val = v.values || {};
          const acc = val.live_accuracy, lo = val.live_accuracy_lower, hi = val.live_accuracy_upper;
          return h('tr', {'data-version': x.key},
            h('td', {}, info.registry ? vlink(v.model, v.version) : x.key),
            h('td', {}, v.loaded ? badge(v.default ? 'default' : 'loaded', 'ok') : badge('unloaded', '')),
            h('td', {class: 'num'}, x.rate === null ? '…' : x.rate.toFixed(1)), h('td', {}, Chart.spark(history[x.key])),
            h('td', {class: 'num'}, v.requests), h('td', {class: 'num'}, v.errors_4xx), h('td', {class: 'num'}, v.errors_5xx),
            h('td', {class: 'num'}, ms(x.p50)), h('td', {class: 'num'}, ms(x.p90)), h('td', {class: 'num'}, ms(x.p99)),
            h('td', {class: 'num'}, x.batch && x.batch.count ? fmt(x.batch.sum / x.batch.count, 2) : '–'),
            h('td', {class: 'num'}, acc === undefined ? '–' : fmt(acc, 3), lo !== undefined ? h('div', {class: 'muted'}, `[${fmt(lo, 3)}, ${fmt(hi, 3)}]`) : null),
            h('td', {class: 'num'}, val.model_memory_bytes ? `${(val.model_memory_bytes / 1048576).toFixed(1)} MiB` : '–'));
        })) : h('p', {class: 'muted'}, 'Nothing served yet.'),
      h('p', {class: 'muted'}, 'requests/s and percentiles over the last poll (2 s); the first poll shows percentiles since the start.')),
      s.rollouts && s.rollouts.length ? card(h('h2', {}, 'rollouts in progress'), table(['id', 'model', 'challenger', 'mode', 'state', '#weight'],
        s.rollouts.map((r) => h('tr', {}, h('td', {}, rlink(r.id)), h('td', {}, r.model), h('td', {}, r.challenger), h('td', {}, r.mode),
          h('td', {}, badge(r.state)), h('td', {class: 'num'}, `${fmt(r.weight, 0)} %`))))) : null,
      card(h('h2', {}, 'open alerts'), s.alerts.length ? table(['alert', 'model', 'since', 'summary'], s.alerts.map((a) => h('tr', {},
        h('td', {}, badge((a.labels || {}).alertname || 'alert', 'firing')), h('td', {}, `${(a.labels || {}).model || ''}:${(a.labels || {}).version || ''}`),
        h('td', {}, when(a.startsAt || a.at)), h('td', {}, (a.annotations || {}).summary || ''))))
        : h('p', {class: 'muted'}, s.registry ? 'No alert is firing.' : 'Alerts come from the registry\'s event log (a registry server).')),
      famCard('drift', drift, m, 'No drift figures in /metrics (the monitor adds them when it watches a dataset).'),
      famCard('quality', quality, m, 'No quality figures in /metrics.'),
      rollout.length ? famCard('rollout figures', rollout, m, '') : null,
    ],
  };
}

// Families as one table: a row per label set (without the family's own value label), a
// column per family, so drift per feature reads across psi, js, the KS p-value and the verdict.
function famCard(title, names, m, empty) {
  if (!names.length) return h('div', {class: 'card', 'data-section': title}, h('h2', {}, title), h('p', {class: 'muted'}, empty));
  const rows = {};
  for (const n of names) for (const s of m[n]) {
    const key = JSON.stringify(s.labels);
    (rows[key] = rows[key] || {labels: s.labels, v: {}}).v[n] = s.value;
  }
  const cols = names.map((n) => n.replace(/^slipway_/, ''));
  const lab = [...new Set(Object.values(rows).flatMap((r) => Object.keys(r.labels)))];
  return h('div', {class: 'card', 'data-section': title}, h('h2', {}, title), table([...lab, ...cols.map((c) => '#' + c)],
    Object.values(rows).map((r) => h('tr', {}, lab.map((l) => h('td', {}, r.labels[l] ?? '')),
      names.map((n) => h('td', {class: 'num'}, r.v[n] === undefined ? '' : fmt(r.v[n])))))));
}

// ---- the router and the poller ---------------------------------------------------------

const pages = {models: pageModels, version: pageVersion, rollouts: pageRollouts, rollout: pageRollout, serving: pageServing};

function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const name = pages[parts[0]] ? parts[0] : 'models';
  return {name, args: parts.slice(1), key: location.hash};
}

async function tick() {
  if (busy) { again = true; return; }
  busy = true;
  const route = currentRoute();
  try {
    if (!info) info = await get('info');
    const page = await pages[route.name](route.args);
    if (route.key !== currentRoute().key) return; // the user moved on meanwhile
    if (page.key !== lastKey || route.key !== lastRoute) {
      const y = window.scrollY;
      main.replaceChildren(...[page.render()].flat(Infinity).filter((x) => x));
      if (route.key === lastRoute) window.scrollTo(0, y);
      lastKey = page.key;
      lastRoute = route.key;
    }
    statusEl.textContent = `updated ${new Date().toLocaleTimeString()}`;
    statusEl.className = 'status';
    document.body.dataset.page = route.name;
    document.body.dataset.loaded = '1';
  } catch (e) {
    statusEl.textContent = `error: ${e.message}`;
    statusEl.className = 'status error';
    if (route.key !== lastRoute) {
      main.replaceChildren(card(h('p', {class: 'error'}, e.message)));
      lastRoute = route.key;
      lastKey = null;
    }
  } finally {
    busy = false;
    if (again) { again = false; tick(); }
  }
}

function navigate() {
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.nav === currentRoute().name ||
    (a.dataset.nav === 'rollouts' && currentRoute().name === 'rollout') || (a.dataset.nav === 'models' && currentRoute().name === 'version'));
  tick();
}

window.addEventListener('hashchange', navigate);
navigate();
timer = setInterval(tick, POLL_MS);
