// The dashboard's browser check, run by tests/integration/test_dashboard.py: Debian's
// chromium driven headless by playwright-core opens every page of a running server (and
// the same pages behind a reverse proxy under a path prefix), checks what they show
// against the records the server's rollout controller wrote (the rolled-back version and
// its reason, each metric's evidence against its boundary, the curves' point counts, the
// lineage edges), then starts a rollout through the admin API with `slipway loadgen`
// traffic and watches its page move (weight and evidence growing, the promotion) without
// a reload; no page may log a console error or fail a request; it saves screenshots and
// measures the load time with the Navigation Timing API.
// Usage: node dashboard.js SPEC.json; prints a JSON report.
'use strict';

const fs = require('fs');
const path = require('path');
const {spawn} = require('child_process');
const {chromium} = require('playwright-core');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const report = {checks: [], errors: [], load_ms: {}, screenshots: []};
let loadgen = null;

function check(ok, what) {
  report.checks.push({ok: !!ok, what});
  if (!ok) throw new Error(`check failed: ${what}`);
}

async function waitFor(page, fn, arg, what, timeout) {
  try {
    await page.waitForFunction(fn, arg, {timeout: timeout || 10000, polling: 100});
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

async function open(page, url, what) {
  await page.goto('about:blank'); // a whole new load each time, not a same-document hash change
  await page.goto(url, {waitUntil: 'load'});
  await waitFor(page, () => document.body.dataset.loaded === '1' && !document.querySelector('#status.error'), null, `${what} to load`);
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return {load: n.loadEventEnd - n.startTime, dcl: n.domContentLoadedEventEnd - n.startTime};
  });
  // content: the first poll has drawn the page from the API
  const content = await page.evaluate(() => performance.now());
  report.load_ms[what] = {navigation_load: Math.round(nav.load * 10) / 10, dom_content_loaded: Math.round(nav.dcl * 10) / 10,
    content: Math.round(content)};
  return nav;
}

function lineageEdges(page) {
  return page.$$eval('#lineage path.edge', (es) => es.map((e) => `${e.dataset.from}->${e.dataset.to}`));
}

async function shot(page, name) {
  const file = path.join(spec.screenshots, name);
  await page.screenshot({path: file, fullPage: true});
  report.screenshots.push(file);
}

(async () => {
  const browser = await chromium.launch({executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']});
  try {
    const ctx = await browser.newContext({viewport: {width: 1280, height: 900}});
    const page = await ctx.newPage();
    page.on('console', (m) => { if (m.type() === 'error') report.errors.push(`console: ${m.text()} (${page.url()})`); });
    page.on('pageerror', (e) => report.errors.push(`page error: ${e.message} (${page.url()})`));
    page.on('requestfailed', (r) => report.errors.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
    page.on('response', (r) => { if (r.status() >= 400) report.errors.push(`HTTP ${r.status()}: ${r.url()}`); });

    for (const [label, base] of [['direct', spec.base], ['prefix', spec.prefix_base]]) {
      // the models page: every version with its state; the rolled-back one with its reason
      await open(page, `${base}/ui/#/models`, `${label} models`);
      await waitFor(page, (m) => document.querySelectorAll(`table.versions[data-model="${m}"] tr[data-version]`).length > 0, spec.model, 'the versions table');
      const states = await page.$$eval('table.versions tr[data-version]', (rows) => rows.map((r) => [r.dataset.version, r.dataset.state, r.textContent]));
      check(states.length === spec.versions, `${label}: ${spec.versions} versions listed (got ${states.length})`);
      const rb = states.find((s) => s[0] === String(spec.rolled_back.version));
      check(rb && rb[1] === 'rolled_back', `${label}: version ${spec.rolled_back.version} is shown rolled_back`);
      check(rb && rb[2].includes(spec.rolled_back.reason), `${label}: the rolled-back version shows its reason`);
      const prod = states.find((s) => s[0] === String(spec.promoted.version));
      check(prod && prod[1] === 'production', `${label}: version ${spec.promoted.version} is production`);

      // the rolled-back version's page: lineage from the dataset to its rollout, the reason
      await open(page, `${base}/ui/#/version/${spec.model}/${spec.rolled_back.version}`, `${label} rolled-back version`);
      await waitFor(page, () => document.querySelector('#lineage path.edge'), null, 'the lineage');
      const edges = await lineageEdges(page);
      for (const e of spec.rolled_back.edges) check(edges.includes(e), `${label}: lineage edge ${e} (edges: ${edges.join(', ')})`);
      check(edges.filter((e) => e.startsWith('version->rollout-')).length === 1, `${label}: one rollout in version ${spec.rolled_back.version}'s lineage (edges: ${edges.join(', ')})`);
      const sr = await page.textContent('#state-reason').catch(() => '');
      check(sr.startsWith('rolled_back') && sr.includes(spec.rolled_back.state_reason), `${label}: the version page says why it was rolled back (got ${sr})`);

      // the version page: curves with one point per metrics.jsonl line
      await open(page, `${base}/ui/#/version/${spec.model}/${spec.curves.version}`, `${label} version`);
      await waitFor(page, () => document.querySelector('#curves svg[data-chart="loss"]'), null, 'the curves');
      const edges3 = await lineageEdges(page);
      for (const e of ['dataset->run', 'run->version']) check(edges3.includes(e), `${label}: lineage edge ${e} of version ${spec.curves.version}`);
      const pts = await page.$$eval('#curves svg[data-chart="loss"] path.series', (ps) => ps.map((p) => [p.dataset.series, +p.dataset.points]));
      const train = pts.find((p) => p[0] === 'train loss'), val = pts.find((p) => p[0] === 'val loss');
      check(train && train[1] === spec.curves.train_lines, `${label}: train loss curve has ${spec.curves.train_lines} points (got ${train && train[1]})`);
      check(spec.curves.val_lines === 0 ? !val : val && val[1] === spec.curves.val_lines,
        `${label}: val loss curve has ${spec.curves.val_lines} points (got ${val && val[1]})`);
      const accPts = await page.$$eval('#curves svg[data-chart="accuracy"] path.series', (ps) => ps.reduce((n, p) => n + +p.dataset.points, 0));
      check(accPts === spec.curves.train_lines + spec.curves.val_lines, `${label}: accuracy curves have one point per line (got ${accPts})`);
      if (label === 'direct') await shot(page, 'version.png');

      // the incumbent's page: the gate's decision with each threshold
      await open(page, `${base}/ui/#/version/${spec.model}/${spec.gate.version}`, `${label} gate`);
      await waitFor(page, () => document.querySelector('.gate table tbody tr'), null, 'the gate table');
      const checks = await page.$$eval('.gate table tbody tr', (rs) => rs.map((r) => r.textContent));
      check(checks.length === spec.gate.checks, `${label}: ${spec.gate.checks} gate checks shown (got ${checks.length})`);
      const gateEdges = await lineageEdges(page);
      for (const id of [spec.rolled_back.rollout]) check(gateEdges.includes(`version->rollout-${id}`), `${label}: the incumbent's lineage reaches rollout ${id}`);
      if (label === 'direct') await shot(page, 'gate.png');

      // the rolled-back rollout: its decision, reason and evidence against the boundary
      await open(page, `${base}/ui/#/rollout/${spec.rolled_back.rollout}`, `${label} rollout`);
      await waitFor(page, () => document.querySelector('#decision b'), null, 'the decision');
      const dec = await page.textContent('#decision');
      check(dec.startsWith('rollback') && dec.includes(spec.rolled_back.reason), `${label}: the rollout shows "rollback: reason" (got ${dec})`);
      for (const [metric, want] of Object.entries(spec.rolled_back.evidence)) {
        const got = await page.$eval(`svg[data-chart="evidence-${metric}"] path.series`, (p) => +p.dataset.points).catch(() => -1);
        check(got === want.points, `${label}: evidence of ${metric} drawn with ${want.points} points (got ${got})`);
        const boundary = await page.$eval(`svg[data-chart="evidence-${metric}"] line.boundary`, (l) => +l.dataset.value).catch(() => -1);
        check(Math.abs(boundary - want.boundary) < 1e-6 * want.boundary, `${label}: ${metric}'s boundary at ${want.boundary} (got ${boundary})`);
        const verdict = await page.textContent(`[data-metric="${metric}"] h3 .badge`).catch(() => '');
        check(verdict === want.verdict, `${label}: ${metric}'s verdict ${want.verdict} (got ${verdict})`);
      }
      const acts = await page.$$eval('#decisions tr[data-action]', (rs) => rs.map((r) => r.dataset.action));
      check(JSON.stringify(acts) === JSON.stringify(spec.rolled_back.actions), `${label}: decisions ${spec.rolled_back.actions.join(', ')} (got ${acts.join(', ')})`);
      const wpts = await page.$eval('svg[data-chart="weight"] path.series', (p) => +p.dataset.points);
      check(wpts === spec.rolled_back.weight_points, `${label}: weight timeline has ${spec.rolled_back.weight_points} points (got ${wpts})`);
      if (label === 'direct') await shot(page, 'rollout-rolled-back.png');

      // the serving page: the served version with its requests
      await open(page, `${base}/ui/#/serving`, `${label} serving`);
      await waitFor(page, (k) => document.querySelector(`tr[data-version="${k}"]`), spec.served, 'the served version');
    }

    // live: a rollout started now (POST /admin/rollouts), with loadgen's labeled traffic,
    // watched from its page: the weight timeline and the evidence grow and the promotion
    // shows, all without a reload
    const live = spec.live;
    const res = await fetch(`${spec.base}/admin/rollouts`, {method: 'POST', headers: {'Content-Type': 'application/json',
      Authorization: `Bearer ${live.token}`}, body: JSON.stringify({model: spec.model, challenger: live.challenger, mode: 'canary', policy: live.policy})});
    const started = await res.json();
    check(res.status === 201 && started.state === 'running', `POST /admin/rollouts started a rollout (HTTP ${res.status}: ${JSON.stringify(started).slice(0, 300)})`);
    report.live_rollout = started.id;
    loadgen = spawn(live.loadgen[0], live.loadgen.slice(1), {stdio: ['ignore', 'pipe', 'pipe']});
    let lgOut = '', lgErr = '';
    loadgen.stdout.on('data', (d) => { lgOut += d; });
    loadgen.stderr.on('data', (d) => { lgErr += d; });
    const lgDone = new Promise((resolve) => loadgen.on('close', (code) => resolve(code)));
    await open(page, `${spec.base}/ui/#/rollout/${started.id}`, 'live rollout');
    await page.evaluate(() => { window.__noReload = 1; });
    await waitFor(page, () => document.querySelector('svg[data-chart="weight"] path.series'), null, 'the weight timeline');
    const before = await page.textContent('#decision');
    check(!before.startsWith('promote'), `the new rollout is not promoted yet when its page opens (got ${before})`);
    const pts = (chart) => page.$eval(`svg[data-chart="${chart}"] path.series`, (p) => +p.dataset.points).catch(() => 0);
    const ev0 = await pts('evidence-quality'), w0 = await pts('weight');
    await waitFor(page, ([n]) => { const p = document.querySelector('svg[data-chart="evidence-quality"] path.series'); return p && +p.dataset.points >= n; },
      [ev0 + 2], 'the quality evidence to grow by two points', 30000);
    await waitFor(page, () => document.querySelector('#decisions tr[data-action="advance"]'), null, 'an advance in the decisions', 30000);
    const w1 = await pts('weight');
    check(w1 > w0, `the weight timeline grew (${w0} -> ${w1} points)`);
    await waitFor(page, () => document.querySelector('#decision') && document.querySelector('#decision').textContent.startsWith('promote'), null,
      'the rollout page to show the promotion', 45000);
    check(await page.evaluate(() => window.__noReload === 1), 'the rollout page updated without a reload');
    const liveActs = await page.$$eval('#decisions tr[data-action]', (rs) => rs.map((r) => r.dataset.action));
    check(JSON.stringify(liveActs) === JSON.stringify(['start', 'advance', 'advance', 'promote']), `the live rollout's decisions (got ${liveActs.join(', ')})`);
    const evEnd = await pts('evidence-quality');
    report.live_points = {evidence_quality: [ev0, evEnd], weight: [w0, await pts('weight')]};
    loadgen.kill('SIGTERM');
    const lgCode = await lgDone;
    loadgen = null;
    check(lgCode === 0, `loadgen exited ${lgCode}: ${lgErr.slice(-500)}`);
    report.loadgen = JSON.parse(lgOut);
    await shot(page, 'rollout-promoted.png');

    // the promoted version's lineage reaches its rollout; the alias moved by the rollout
    await open(page, `${spec.base}/ui/#/version/${spec.model}/${live.challenger}`, 'promoted version');
    await waitFor(page, (id) => [...document.querySelectorAll('#lineage path.edge')].some((e) => e.dataset.to === `rollout-${id}`), started.id,
      'the promoted version\'s lineage to reach its rollout');
    await open(page, `${spec.base}/ui/#/models`, 'models after');
    await waitFor(page, (v) => { const r = document.querySelector(`table.versions tr[data-version="${v}"]`); return r && r.dataset.state === 'production'; },
      live.challenger, `version ${live.challenger} to be production`);
    const moved = await page.$$eval('table.alias-history tr', (rs) => rs.map((r) => r.textContent));
    check(moved.some((t) => t.includes(`→ ${live.challenger}`) && t.includes('rollout')), `the alias history shows the rollout's move (got ${moved.join(' | ')})`);
    await shot(page, 'models.png');

    // the promoted version takes the traffic once the server follows the alias
    await open(page, `${spec.base}/ui/#/serving`, 'live serving');
    await page.evaluate(() => { window.__noReload = 1; });
    await waitFor(page, (k) => document.querySelector(`tr[data-version="${k}"] td:nth-child(2)`) &&
      document.querySelector(`tr[data-version="${k}"] td:nth-child(2)`).textContent === 'default', spec.served_after,
      'the promoted version to be served by default', 15000);
    const cell = `tr[data-version="${spec.served_after}"] td:nth-child(5)`;
    const n0 = +(await page.textContent(cell));
    const body = JSON.stringify({instances: [new Array(784).fill(0)]});
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${spec.base}/v1/models/${spec.model}:predict`, {method: 'POST', body, headers: {'Content-Type': 'application/json'}});
      check(r.ok, `prediction ${i} answered`);
    }
    await waitFor(page, ([c, n]) => +document.querySelector(c).textContent >= n, [cell, n0 + 5], 'the serving page to count the new requests', 15000);
    check(await page.evaluate(() => window.__noReload === 1), 'the serving page updated without a reload');
    await page.waitForTimeout(2300); // one more poll: requests/s from two samples
    const rate = await page.textContent(`tr[data-version="${spec.served_after}"] td:nth-child(3)`);
    check(/^\d+\.\d$/.test(rate), `requests/s is shown from two polls (got ${rate})`);
    // the monitor loop's families, read from /metrics as they come (quality per metric, drift per feature)
    for (const section of ['quality', 'drift'])
      await waitFor(page, (x) => document.querySelector(`[data-section="${x}"] tbody tr`), section, `the ${section} table`, 20000);
    await shot(page, 'serving.png');
  } catch (e) {
    report.failure = e.message;
  } finally {
    if (loadgen) loadgen.kill('SIGTERM');
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report, null, 1) + '\n');
  process.exit(report.failure || report.errors.length ? 1 : 0);
})();
