// Block reconstruction on a bundled fixture, printing the loss curve of every block: the
// linear weights are perturbed (a stand-in for a compression error), then each block learns
// its weights back from the float model's block outputs on the calibration set.
//
//   npm run build && node dist/benchmarks/autodiff-reconstruct.js [fixtures/vit_mnist.onnx] [--noise 0.05] [--iterations 100] [--samples 64]
import * as path from 'node:path';
import { openDataset } from '../src/data/dataset.js';
import { bindDataset, batches } from '../src/data/bind.js';
import { discoverStructure } from '../src/discover/index.js';
import type { ArrayTensor } from '../src/ir/array-tensor.js';
import type { Model } from '../src/ir/model.js';
import { loadModel } from '../src/onnx/index.js';
import { Random } from '../src/autodiff/random.js';
import { blockSpans } from '../src/reconstruct/blocks.js';
import { reconstructBlocks } from '../src/reconstruct/engine.js';
import { weightPlan } from '../src/reconstruct/plans.js';
import { consoleProgress } from '../src/progress.js';
import { Session } from '../src/runtime/session.js';
import type { Dataset } from '../src/data/dataset.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const file = args.find((a) => a.endsWith('.onnx')) ?? 'fixtures/vit_mnist.onnx';
const NOISE = flag('--noise', 0.05);
const ITERATIONS = flag('--iterations', 100);
const SAMPLES = flag('--samples', 64);

async function outputs(model: Model, data: Dataset): Promise<ArrayTensor[]> {
  const s = await Session.create(model);
  const out: ArrayTensor[] = [];
  for (const b of batches(bindDataset(data, model), 16)) out.push(Object.values(await s.run(b.feeds))[0]!);
  await s.release();
  return out;
}

function mse(a: ArrayTensor[], b: ArrayTensor[]): number {
  let s = 0;
  let n = 0;
  a.forEach((t, k) => {
    const x = t.data as Float32Array;
    const y = b[k]!.data as Float32Array;
    for (let i = 0; i < x.length; i++, n++) s += (x[i]! - y[i]!) ** 2;
  });
  return s / n;
}

async function main(): Promise<void> {
  const name = path.basename(file, '.onnx');
  const float = loadModel(file);
  const calib = openDataset(path.join('calibration', name, 'calib'));
  const data: Dataset = { ...calib, size: Math.min(SAMPLES, calib.size), read: (i) => calib.read(i), where: (i) => calib.where(i) };
  console.log(`${file}: ${data.size} calibration samples, weights perturbed by ${NOISE} x their RMS, ${ITERATIONS} Adam steps per block`);

  const rng = new Random(1);
  const perturb = (w: Float32Array): Float32Array => {
    let rms = 0;
    for (const v of w) rms += v * v;
    rms = Math.sqrt(rms / w.length);
    return w.map((v) => v + NOISE * rms * rng.normal());
  };
  const model = float.clone();
  const noisy = weightPlan({ init: perturb });
  for (const span of blockSpans(discoverStructure(model))) {
    const p = noisy(span, model, model)!;
    await p.bake(model, new Map(p.params.map((x) => [x.name, x.init])));
  }
  const reference = await outputs(float, data);
  const before = mse(await outputs(model, data), reference);

  const started = performance.now();
  const r = await reconstructBlocks(model, {
    calibration: data,
    reference: float,
    plan: weightPlan(),
    iterations: ITERATIONS,
    batchSize: 8,
    optimizer: { kind: 'adam', lr: 1e-3 },
    progress: consoleProgress(process.stderr, 2000),
  });
  const seconds = (performance.now() - started) / 1000;
  for (const b of r.blocks) {
    const every = Math.max(1, Math.floor(b.curve.length / 10));
    console.log(`block ${b.index}: ${b.curve.filter((_, i) => i % every === 0).map((l) => l.toExponential(2)).join(' ')}`);
    console.log(`         calibration loss ${b.lossBefore.toExponential(3)} -> ${b.lossAfter.toExponential(3)} (${b.kept}), ${b.seconds.toFixed(1)} s`);
  }
  const after = mse(await outputs(model, data), reference);
  console.log(`model output MSE vs float: perturbed ${before.toExponential(3)} -> reconstructed ${after.toExponential(3)}; ${seconds.toFixed(1)} s in all`);
  console.log(`activations kept: ${(r.cache.memory / 2 ** 20).toFixed(1)} MiB in memory, ${(r.cache.disk / 2 ** 20).toFixed(1)} MiB on disk`);
}

await main();
