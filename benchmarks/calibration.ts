// Benchmark: streaming calibration of a BERT-base-sized encoder (12 blocks, hidden 768, 12
// heads, MLP 3072, sequence 128; ~85M parameters) on 128 random samples, calibrating the
// inputs of its 72 linear layers (48 distinct tensors).
//
//   npm run build && node dist/benchmarks/calibration.js [--samples 128] [--kinds minmax,percentile]
//
// Each configuration runs in a fresh child process that loads the model file and the dataset
// folder, so the figures are those of a real run: wall time (load + calibrate) and peak RSS
// (getrusage maxRSS). Target for the whole quantize command later: under 3 minutes and
// 2.5 GB. Also prints the throughput of the observers' JavaScript loops against the forward
// passes, and min/max reduced inside the onnxruntime graph against the JavaScript loop.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { calibrate } from '../src/calibrate/calibrate.js';
import { createObserver, type ObserverKind } from '../src/calibrate/observer.js';
import { withStatistics } from '../src/calibrate/stats-graph.js';
import { batches, bindDataset } from '../src/data/bind.js';
import { openDataset } from '../src/data/dataset.js';
import { discoverStructure } from '../src/discover/index.js';
import { DataType } from '../src/ir/dtype.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel, saveModel, writeTensorFile } from '../src/onnx/index.js';
import { Session } from '../src/runtime/session.js';
import { buildTransformer, Rng, type TransformerOptions } from '../tests/helpers/transformer-builder.js';

const BERT_BASE: TransformerOptions = { blocks: 12, hidden: 768, heads: 12, mlpWidth: 3072, seq: 128, opset: 17, mask: 'additive-input', placement: 'post', activation: 'gelu', seed: 1 };

interface Config {
  label: string;
  kind: ObserverKind;
  minmaxIn?: 'graph' | 'js';
  memoryArena?: boolean;
  /** Use the cache folder shared by the configurations that set this. */
  cached?: boolean;
  /** No calibration: load the model, create a plain session and run one sample (the floor). */
  baseline?: boolean;
}

interface ChildResult {
  loadSeconds: number;
  calibrateSeconds: number;
  maxRssBytes: number;
  forwardPasses: number;
  batchSize: number;
  groups: number;
  fromCache: boolean;
  tensors: number;
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function child(dir: string, config: Config): Promise<void> {
  const t0 = performance.now();
  const model = loadModel(path.join(dir, 'bert-base.onnx'));
  const dataset = openDataset(path.join(dir, 'calib'));
  const tensors = [...new Set(discoverStructure(model).linears.map((l) => l.input.name))];
  const t1 = performance.now();
  if (config.baseline) {
    const session = await Session.create(model);
    const created = performance.now();
    const bound = bindDataset(dataset, model);
    await session.run(bound.feeds(dataset.read(0)));
    await session.release();
    const out: ChildResult = { loadSeconds: (t1 - t0) / 1000, calibrateSeconds: (created - t1) / 1000, maxRssBytes: process.resourceUsage().maxRSS * 1024, forwardPasses: 1, batchSize: 1, groups: 0, fromCache: false, tensors: 0 };
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const options = {
    tensors,
    observer: { kind: config.kind, symmetric: config.kind !== 'minmax' },
    minmaxIn: config.minmaxIn,
    memoryArena: config.memoryArena,
    cacheDir: config.cached ? path.join(dir, 'cache') : (false as const),
  };
  const t2 = performance.now();
  const r = await calibrate(model, dataset, options);
  const t3 = performance.now();
  const out: ChildResult = {
    loadSeconds: (t1 - t0) / 1000,
    calibrateSeconds: (t3 - t2) / 1000,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    forwardPasses: r.forwardPasses,
    batchSize: r.batchSize,
    groups: r.groups,
    fromCache: r.fromCache,
    tensors: tensors.length,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

/**
 * Per-batch cost of min/max: one batch of 8 samples through (a) the plain model, (b) the model
 * with ReduceMin/ReduceMax (and the finiteness check) added for the 48 tensors, (c) the model
 * exposing the 48 tensors, reduced by MinMaxObserver in JavaScript. Rounds interleave the three
 * so background load hits all alike; prints medians.
 */
async function compareMinMax(dir: string, rounds: number): Promise<void> {
  const model = loadModel(path.join(dir, 'bert-base.onnx'));
  const bound = bindDataset(openDataset(path.join(dir, 'calib')), model);
  const tensors = [...new Set(discoverStructure(model).linears.map((l) => l.input.name))];
  const stats = withStatistics(model, tensors.map((name) => ({ name, reduce: true })));
  const batch = batches(bound, 8).next().value!;
  const plain = await Session.create(model);
  const reduced = await Session.create(stats.model);
  const exposed = await Session.create(model, { expose: tensors, memoryArena: false });
  const fetchReduced = tensors.flatMap((n) => {
    const o = stats.outputs.get(n)!;
    return [o.min!, o.max!, o.nonFinite!];
  });
  const times: Record<'plain' | 'graph' | 'js' | 'jsLoop', number[]> = { plain: [], graph: [], js: [], jsLoop: [] };
  for (let r = 0; r < rounds + 1; r++) {
    let t0 = performance.now();
    await plain.run(batch.feeds, plain.outputNames.slice());
    const tPlain = performance.now() - t0;
    t0 = performance.now();
    await reduced.run(batch.feeds, fetchReduced);
    const tGraph = performance.now() - t0;
    t0 = performance.now();
    const out = await exposed.run(batch.feeds, tensors);
    const tRun = performance.now();
    for (const n of tensors) createObserver({ kind: 'minmax' }).update(out[n]!.data as Float32Array, out[n]!.dims);
    const tJs = performance.now() - t0;
    if (r === 0) continue; // warm-up
    times.plain.push(tPlain);
    times.graph.push(tGraph);
    times.js.push(tJs);
    times.jsLoop.push(performance.now() - tRun);
  }
  for (const s of [plain, reduced, exposed]) await s.release();
  const med = (a: number[]): number => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  process.stdout.write(JSON.stringify({ plain: med(times.plain), graph: med(times.graph), js: med(times.js), jsLoop: med(times.jsLoop) }) + '\n');
}

/** Elements per second of an observer's update on activation-like data. */
function observerThroughput(kind: ObserverKind, symmetric: boolean): number {
  const rng = new Rng(7);
  const data = Float32Array.from({ length: 8 * 128 * 768 }, () => rng.normal());
  const o = createObserver({ kind, symmetric });
  o.update(data, [8, 128, 768]);
  const t0 = performance.now();
  const reps = 20;
  for (let i = 0; i < reps; i++) o.update(data, [8, 128, 768]);
  const s = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  o.range();
  const rangeMs = performance.now() - t1;
  if (kind !== 'minmax') console.log(`  ${kind}${symmetric ? ' symmetric' : ''}: range() from the histogram ${rangeMs.toFixed(1)} ms per tensor`);
  return (reps * data.length) / s;
}

function writeDataset(dir: string, samples: number): void {
  const { seq, hidden } = { seq: BERT_BASE.seq!, hidden: BERT_BASE.hidden! };
  const rng = new Rng(42);
  for (let i = 0; i < samples; i++) {
    const d = path.join(dir, `test_data_set_${i}`);
    fs.mkdirSync(d, { recursive: true });
    writeTensorFile(path.join(d, 'input_0.pb'), Tensor.from('x', DataType.FLOAT, [1, seq, hidden], Float32Array.from({ length: seq * hidden }, () => rng.normal())));
    const real = seq - Math.floor(rng.uniform() * seq * 0.5); // up to half the positions padded
    writeTensorFile(path.join(d, 'input_1.pb'), Tensor.from('attention_mask', DataType.INT64, [1, seq], Array.from({ length: seq }, (_, j) => (j < real ? 1 : 0))));
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, JSON.parse(args[2]!) as Config);
  if (args[0] === '--compare') return compareMinMax(args[1]!, Number(args[2]));
  const samples = args.includes('--samples') ? Number(args[args.indexOf('--samples') + 1]) : 128;
  const kinds = args.includes('--kinds') ? args[args.indexOf('--kinds') + 1]!.split(',').filter((k) => k) : ['minmax', 'percentile', 'entropy', 'mse'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-bench-calib-'));
  try {
    const built = buildTransformer(BERT_BASE);
    saveModel(built.model, path.join(dir, 'bert-base.onnx'));
    writeDataset(path.join(dir, 'calib'), samples);
    console.log(`model: BERT-base-sized encoder, ${(built.model.parameterCount() / 1e6).toFixed(1)}M parameters; ${samples} samples of [1, 128, 768]; ${os.availableParallelism()} cores; threads ${process.env.SLIMFORMER_THREADS ?? 'default'}`);

    console.log('observer update throughput in JavaScript (one [8, 128, 768] batch of N(0,1) at a time):');
    for (const [kind, symmetric] of [['minmax', false], ['percentile', true], ['percentile', false], ['entropy', true], ['mse', true]] as const) {
      const eps = observerThroughput(kind, symmetric);
      console.log(`  ${kind}${symmetric ? ' symmetric' : ''}: ${(eps / 1e6).toFixed(0)} M values/s`);
    }

    const self = fileURLToPath(import.meta.url);
    const cmp = spawnSync(process.execPath, [self, '--compare', dir, '7'], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (cmp.status !== 0) throw new Error(`min/max comparison failed: ${cmp.stderr}`);
    const c = JSON.parse(cmp.stdout.trim().split('\n').pop()!) as { plain: number; graph: number; js: number; jsLoop: number };
    console.log(
      `min/max of 48 tensors, one batch of 8 (median of 7 interleaved rounds): plain forward ${c.plain.toFixed(0)} ms; ` +
        `ReduceMin/Max in the graph ${c.graph.toFixed(0)} ms (+${(c.graph - c.plain).toFixed(0)}); ` +
        `tensors copied out + JS loop ${c.js.toFixed(0)} ms (+${(c.js - c.plain).toFixed(0)}, of which the loop ${c.jsLoop.toFixed(0)})`,
    );

    const configs: Config[] = [{ label: 'baseline: load, Session.create, run one sample (no calibration)', kind: 'minmax', baseline: true }];
    for (const k of kinds) {
      if (k === 'minmax') configs.push({ label: 'minmax (ReduceMin/Max in the graph)', kind: 'minmax', minmaxIn: 'graph' }, { label: 'minmax (tensors copied out, JS loop)', kind: 'minmax', minmaxIn: 'js' });
      else configs.push({ label: `${k} (symmetric, 2048 bins)`, kind: k as ObserverKind });
    }
    if (kinds.includes('percentile')) {
      configs.push({ label: 'percentile with the cache on, first run', kind: 'percentile', cached: true });
      configs.push({ label: 'percentile with the cache on, second run', kind: 'percentile', cached: true });
    }
    for (const config of configs) {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [self, '--child', dir, JSON.stringify(config)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const wall = (performance.now() - t0) / 1000;
      if (r.status !== 0) throw new Error(`${config.label} failed: ${r.stderr}`);
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
      if (config.baseline) {
        console.log(`${config.label}: Session.create ${res.calibrateSeconds.toFixed(1)}s (load ${res.loadSeconds.toFixed(1)}s), peak RSS ${mib(res.maxRssBytes)}`);
        continue;
      }
      console.log(
        `${config.label}: calibrate ${res.calibrateSeconds.toFixed(1)}s (load ${res.loadSeconds.toFixed(1)}s, process ${wall.toFixed(1)}s), peak RSS ${mib(res.maxRssBytes)}; ` +
          `${res.tensors} tensors, ${res.forwardPasses} runs, batch ${res.batchSize}, ${res.groups} pass(es)${res.fromCache ? ', from cache' : ''}`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
