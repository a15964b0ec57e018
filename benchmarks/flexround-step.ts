// Where a layer-wise FlexRound step's time goes on the linears of a 1B decoder (TinyLlama's
// shapes: 2048x2048, 2048x5632, 5632x2048, as [out, in]), w4 with groups of 32.
//
//   npm run build && node dist/benchmarks/flexround-step.js [--steps 8] [--rows 1024] [--batch 256]
//       [--shapes 2048x2048,5632x2048,2048x5632] [--no-profile]
//
// For each shape: flexRoundLayer's own split of its wall time (building the objective and its
// onnxruntime sessions; the optimizer steps; the rest: two evaluations over all rows and the
// bake), then, with onnxruntime's profiler, one forward+backward of the objective (no Adam)
// split by operator type: the matrix products against the elementwise work of the
// fake-quantizer and its gradient over all n x k weights.
import { buildGradientGraph } from '../src/autodiff/gradient.js';
import { Random } from '../src/autodiff/random.js';
import { DataType } from '../src/ir/dtype.js';
import { deltaNames, floatOutputs, flexRoundLayer, flexRoundObjective } from '../src/quantize/flexround.js';
import { quantizeWeight } from '../src/quantize/weight-quantizer.js';
import { Session } from '../src/runtime/session.js';
import * as os from 'node:os';

const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const steps = Number(opt('--steps', '8'));
const rows = Number(opt('--rows', '1024'));
const batch = Number(opt('--batch', '256'));
const shapes = opt('--shapes', '2048x2048,5632x2048,2048x5632').split(',').map((s) => s.split('x').map(Number) as [number, number]);

function randn(rng: Random, n: number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * rng.normal();
  return out;
}

async function main(): Promise<void> {
  console.log(`FlexRound layer-wise, w4 groups of 32, ${rows} rows, batch ${batch}, ${steps} steps; ${os.availableParallelism()} cores, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const [n, k] of shapes) {
    const rng = new Random(n + k);
    const w = randn(rng, n * k, 0.02);
    const x = randn(rng, rows * k, 1);
    const q = await quantizeWeight(w, n, k, { bits: 4, symmetric: true, blockSize: 32, search: 'mse' });
    const r = await flexRoundLayer(w, q, x, { iters: steps, batch });
    const rest = r.seconds - r.setupSeconds - r.stepSeconds;
    console.log(`${n}x${k}: ${r.seconds.toFixed(1)} s = setup ${r.setupSeconds.toFixed(1)} s + ${steps} steps ${r.stepSeconds.toFixed(1)} s (${((r.stepSeconds / steps) * 1000).toFixed(0)} ms/step) + evaluations and bake ${rest.toFixed(1)} s; load ${os.loadavg()[0]!.toFixed(2)}`);
    if (args.includes('--no-profile')) continue;
    const { model, names } = flexRoundObjective(q, true, w);
    const grad = buildGradientGraph(model, { loss: 'flexround_loss', wrt: [names.d1, names.d2, names.d3] });
    const s = await Session.create(grad.model, { profile: true });
    const d = deltaNames('w');
    const feeds = {
      flexround_x: { dtype: DataType.FLOAT, dims: [batch, k], data: x.subarray(0, batch * k) },
      flexround_target: { dtype: DataType.FLOAT, dims: [batch, n], data: (await floatOutputs(w, n, k, x.subarray(0, batch * k))) },
      [d.d1]: { dtype: DataType.FLOAT, dims: [n, q.groups], data: new Float32Array(n * q.groups) },
      [d.d2]: { dtype: DataType.FLOAT, dims: [n, q.groups * q.blockSize], data: new Float32Array(n * q.groups * q.blockSize) },
      [d.d3]: { dtype: DataType.FLOAT, dims: [n], data: new Float32Array(n) },
    };
    const RUNS = 3;
    const t0 = performance.now();
    for (let i = 0; i < RUNS + 1; i++) await s.run(feeds);
    const wall = (performance.now() - t0) / (RUNS + 1);
    const nodes = s.endProfiling();
    await s.release();
    const byOp = new Map<string, number>();
    for (const node of nodes) for (let r = 1; r <= RUNS; r++) byOp.set(node.op, (byOp.get(node.op) ?? 0) + node.micros[r]! / 1000 / RUNS);
    const total = [...byOp.values()].reduce((a, b) => a + b, 0);
    const top = [...byOp].sort((a, b) => b[1] - a[1]);
    const products = top.filter(([op]) => ['MatMul', 'Gemm', 'FusedMatMul'].includes(op)).reduce((a, [, t]) => a + t, 0);
    console.log(`  forward+backward (no Adam), kernel time ${total.toFixed(0)} ms per run (wall ${wall.toFixed(0)} ms): products ${products.toFixed(0)} ms, elementwise and copies ${(total - products).toFixed(0)} ms`);
    console.log(`  by op: ${top.slice(0, 10).map(([op, t]) => `${op} ${t.toFixed(0)}`).join(', ')}`);
  }
}

await main();
