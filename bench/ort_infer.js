// Benchmark (never a test): inference of an ONNX model with ONNX Runtime
// (onnxruntime-node, CPU), as bench/infer_onnx.c does it with our engine, for
// bench/infer_vs_ort.sh. One InferenceSession (intraOpNumThreads = T, interOpNumThreads
// = 1, executionMode sequential, default graph optimizations), the input filled with
// the same pseudo-random pixels 0..255 (f32) as infer_onnx; W warm-up runs, then N runs
// timed one by one with process.hrtime.bigint() around `await session.run(feeds)`, so
// each figure includes the JS call and the output tensor's creation. One JSON line:
// batch, threads, p50_ms, p99_ms, mean_ms, samples_per_sec (B / mean).
//
//   NODE_PATH=ORT_DIR/node_modules node bench/ort_infer.js MODEL.onnx --batch B
//       [--threads T] [--iters N] [--warmup W]
'use strict';
const ort = require('onnxruntime-node');

function usage() {
  console.error('usage: ort_infer.js MODEL.onnx --batch B [--threads T] [--iters N] [--warmup W]');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { model: null, batch: 0, threads: 1, iters: 200, warmup: 20 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const key = a.slice(2);
      if (!(key in o) || key === 'model' || i + 1 >= argv.length) usage();
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < (key === 'warmup' ? 0 : 1)) usage();
      o[key] = v;
    } else if (o.model === null) {
      o.model = a;
    } else {
      usage();
    }
  }
  if (o.model === null || o.batch < 1) usage();
  return o;
}

// The q-quantile of sorted v, nearest rank (as infer_onnx.c).
function quantile(v, q) {
  const i = Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1));
  return v[i];
}

(async () => {
  const o = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(o.model, {
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const meta = session.inputMetadata ? session.inputMetadata[0] : null;
  let dims = meta && meta.shape ? meta.shape.slice(1) : null;
  if (!dims || dims.some((d) => typeof d !== 'number')) {
    throw new Error(`cannot read the input shape of ${o.model}`);
  }
  const shape = [o.batch].concat(dims);
  const n = shape.reduce((a, b) => a * b, 1);
  // The same 64-bit LCG as infer_onnx.c: the top byte of each state is one pixel.
  const x = new Float32Array(n);
  let s = 0x9E3779B97F4A7C15n;
  const mask = (1n << 64n) - 1n;
  for (let i = 0; i < n; i++) {
    s = (s * 6364136223846793005n + 1442695040888963407n) & mask;
    x[i] = Number(s >> 56n);
  }
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', x, shape);

  for (let i = 0; i < o.warmup; i++) await session.run(feeds);
  const ms = new Array(o.iters);
  let total = 0;
  for (let i = 0; i < o.iters; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    const t1 = process.hrtime.bigint();
    ms[i] = Number(t1 - t0) / 1e6;
    total += ms[i];
  }
  ms.sort((a, b) => a - b);
  const mean = total / o.iters;
  const f = (v, d) => Number(v.toFixed(d));
  console.log(JSON.stringify({
    engine: 'onnxruntime-node', version: ort.env.versions ? ort.env.versions.common : undefined,
    batch: o.batch, threads: o.threads, iters: o.iters,
    p50_ms: f(quantile(ms, 0.5), 4), p99_ms: f(quantile(ms, 0.99), 4), mean_ms: f(mean, 4),
    samples_per_sec: f(o.batch / (mean / 1e3), 1),
  }));
})().catch((e) => { console.error(`ort_infer.js: ${e && e.stack ? e.stack : e}`); process.exit(1); });
