// Block-wise reconstruction (BRECQ / FlexRound style): for each transformer block in order,
// learn the parameters a pass declares so that the compressed block, fed the output of the
// already-compressed blocks before it, reproduces the float block's output on calibration data.
import { trainInChunks } from '../autodiff/chunked-steps.js';
import { Trainer, type OptimizerOptions, type TrainableParameter } from '../autodiff/optimizer.js';
import { Random } from '../autodiff/random.js';
import { declareInputShapes, extractSubgraph } from '../autodiff/subgraph.js';
import type { RuleTable } from '../autodiff/rules/types.js';
import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { discoverStructure } from '../discover/index.js';
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Value } from '../ir/value.js';
import { inStep, silentProgress, type Progress } from '../progress.js';
import { Session } from '../runtime/session.js';
import { type BlockSpan, blockSpans } from './blocks.js';
import { ActivationCache, type TensorStore } from './store.js';

/** What a pass learns in one block. */
export interface BlockReconstruction {
  /** The learnable tensors and their starting values. */
  params: TrainableParameter[];
  /**
   * Rewrites `graph` (a standalone copy of the block as it is in the model, reading the
   * block's input and side inputs) into the compressed block computed from the parameters,
   * which are graph inputs of that graph (`params`, by name). Initializers keep the model's names.
   */
  buildBlock(graph: Graph, params: ReadonlyMap<string, Value>): void;
  /** Writes the learned values into the model (the block's nodes and initializers live there under the same names). */
  bake(model: Model, values: ReadonlyMap<string, Float32Array>): void | Promise<void>;
}

/** How much calibration data a block is learned on. */
export interface BlockData {
  /** Calibration rows (samples). */
  rows: number;
  /** Token positions over all rows (rows x the positions of one row of the block's input). */
  tokens: number;
}

/** Decides what to learn in each block (the engine says on how much data); undefined leaves the block as it is. */
export type ReconstructionPlan = (span: BlockSpan, block: Model, model: Model, data?: BlockData) => BlockReconstruction | undefined;

export interface ReconstructOptions {
  calibration: Dataset;
  plan: ReconstructionPlan;
  /** The float model the targets come from (default: `model` as it is before reconstruction starts). */
  reference?: Model;
  /** Optimizer steps per block (default 500). */
  iterations?: number;
  /** Calibration rows per step (default 8). */
  batchSize?: number;
  /** Default: Adam, lr 1e-3, cosine schedule to 0. */
  optimizer?: OptimizerOptions;
  /** Seed of the mini-batch order (default 0); the same seed repeats a run exactly. */
  seed?: number;
  /** Use at most this many calibration samples. */
  samples?: number;
  /** Bytes of captured activations kept in memory; the rest goes to files in the temp folder (default 512 MiB). */
  memoryBudget?: number;
  /** Rows per onnxruntime run when capturing and evaluating (default 16). */
  captureBatch?: number;
  /** Keep the starting values when learning did not lower the calibration loss (default true). */
  keepBest?: boolean;
  /** With keepBest: the learned values are kept only when they lower the calibration loss by at least this fraction of it (default 0). */
  minGain?: number;
  /** Indices of the blocks to reconstruct (default all). */
  blocks?: number[];
  threads?: number;
  progress?: Progress;
  signal?: AbortSignal;
  rules?: RuleTable;
  /** Called after every step with the block index, the step and the mini-batch loss. */
  onStep?: (block: number, step: number, loss: number) => void;
}

export interface BlockReport {
  index: number;
  /** Mean squared error over the calibration rows with the starting and the learned values. */
  lossBefore: number;
  lossAfter: number;
  /** Which values were baked in. */
  kept: 'learned' | 'initial' | 'untouched';
  /** Mini-batch loss at every step. */
  curve: number[];
  seconds: number;
  /** Of `seconds`, the time spent in optimizer steps (the part that grows with the iterations). */
  stepSeconds: number;
}

export interface ReconstructResult {
  /** The model given, changed in place. */
  model: Model;
  blocks: BlockReport[];
  /** Peak bytes of activations kept in memory and on disk. */
  cache: { memory: number; disk: number };
}

const TARGET = '__reconstruction_target';
const LOSS = '__reconstruction_loss';

/**
 * Reconstructs the blocks of `model` in order and bakes the results into it. Float inputs and
 * outputs of every block are captured once from the reference; the compressed path's inputs
 * are propagated block by block through the baked blocks.
 */
export async function reconstructBlocks(model: Model, options: ReconstructOptions): Promise<ReconstructResult> {
  const progress = options.progress ?? silentProgress;
  const reference = options.reference ?? model.clone();
  const spans = blockSpans(discoverStructure(reference));
  if (spans.length === 0) throw new UserError(`no transformer blocks were found in ${model.sourcePath ?? 'the model'}`);
  const wanted = new Set(options.blocks ?? spans.map((s) => s.index));
  const lastWanted = Math.max(-1, ...spans.filter((s) => wanted.has(s.index)).map((s) => s.index));
  const captureBatch = options.captureBatch ?? 16;
  const cache = new ActivationCache(options.memoryBudget ?? 512 * 2 ** 20);
  const peak = { memory: 0, disk: 0 };
  const notePeak = (): void => {
    const u = cache.usage();
    peak.memory = Math.max(peak.memory, u.memory);
    peak.disk = Math.max(peak.disk, u.disk);
  };
  const dataset = limited(options.calibration, options.samples);
  const reports: BlockReport[] = [];
  try {
    // float inputs and outputs of every block, and what the blocks read besides
    const pieces = spans.map((s) => extractSubgraph(reference, { inputs: [s.input], outputs: [s.output] }));
    const names = [...new Set(spans.flatMap((s, i) => [s.input, s.output, ...pieces[i]!.sideInputs]))];
    const fp = await capture(reference, dataset, names, cache, captureBatch, options, 'capture float activations');
    notePeak();
    const rows = fp.rows;
    let qIn: TensorStore = options.reference ? (await capture(model, dataset, [spans[0]!.input], cache, captureBatch, options, 'capture compressed inputs')).stores.get(spans[0]!.input)! : fp.stores.get(spans[0]!.input)!;
    notePeak();

    for (const [k, span] of spans.entries()) {
      options.signal?.throwIfAborted();
      const started = performance.now();
      const piece = extractSubgraph(model, { inputs: [span.input], outputs: [span.output] });
      declareInputShapes(piece.model, exampleDims(piece.inputs, fp, qIn));
      declareInputShapes(piece.model, Object.fromEntries(piece.sideInputs.filter((n) => fp.statics.has(n)).map((n) => [n, fp.statics.get(n)!.dims])), false);
      const sideFeedsOf = (sideInputs: readonly string[], idx: number[]): Record<string, ArrayTensor> => {
        const out: Record<string, ArrayTensor> = {};
        for (const n of sideInputs) {
          const s = fp.stores.get(n);
          const st = fp.statics.get(n);
          if (s) out[n] = s.read(idx);
          else if (st) out[n] = st;
          else throw new UserError(`block ${span.index} reads '${n}', which the reference model does not compute the same way`);
        }
        return out;
      };
      const sideFeeds = (idx: number[]): Record<string, ArrayTensor> => sideFeedsOf(piece.sideInputs, idx);
      const data: BlockData = { rows, tokens: rows * qIn.rowDims.slice(0, -1).reduce((a, b) => a * b, 1) };
      const planned = wanted.has(span.index) ? options.plan(span, piece.model, model, data) : undefined;
      const plan = planned && planned.params.length > 0 ? planned : undefined;
      const report: BlockReport = { index: span.index, lossBefore: NaN, lossAfter: NaN, kept: 'untouched', curve: [], seconds: 0, stepSeconds: 0 };
      if (plan) {
        const target = fp.stores.get(span.output)!;
        const trainModel = lossModel(piece.model, plan, span);
        const iterations = options.iterations ?? 500;
        const trainer = await Trainer.create({
          model: trainModel,
          loss: LOSS,
          params: plan.params,
          optimizer: options.optimizer ?? { kind: 'adam', lr: 1e-3, schedule: 'cosine' },
          steps: iterations,
          threads: options.threads,
          rules: options.rules,
        });
        try {
          const feeds = (idx: number[]): Record<string, ArrayTensor> => ({ [span.input]: qIn.read(idx), ...sideFeeds(idx), [TARGET]: target.read(idx) });
          const evaluate = async (params: ReadonlyMap<string, Float32Array>): Promise<number> => {
            let sum = 0;
            for (let at = 0; at < rows; at += captureBatch) {
              const idx = rowRange(at, Math.min(rows, at + captureBatch));
              sum += (await trainer.evaluate(feeds(idx), params)) * idx.length;
            }
            return sum / rows;
          };
          const initial = new Map(plan.params.map((p) => [p.name, p.init]));
          report.lossBefore = await evaluate(initial);
          const sampler = new MiniBatches(rows, Math.min(options.batchSize ?? 8, rows), (options.seed ?? 0) + span.index * 7919);
          const { learned, keep } = await inStep(progress, `reconstruct block ${span.index}`, iterations, async (tick) => {
            const stepsStarted = performance.now();
            await trainInChunks(trainer, iterations, () => feeds(sampler.next()), (i, loss) => {
              report.curve.push(loss);
              options.onStep?.(span.index, i, loss);
              tick(i + 1, `loss ${loss.toPrecision(4)}`);
            }, options.signal);
            report.stepSeconds = (performance.now() - stepsStarted) / 1000;
            const learned = trainer.parameters();
            report.lossAfter = await evaluate(learned);
            const keep = (options.keepBest ?? true) && !(report.lossAfter < report.lossBefore * (1 - (options.minGain ?? 0)));
            report.kept = keep ? 'initial' : 'learned';
            return { learned, keep };
          }, ({ keep }) => `calibration loss ${report.lossBefore.toPrecision(4)} -> ${report.lossAfter.toPrecision(4)}${keep ? ' (kept the start: no better)' : ''}`);
          await plan.bake(model, keep ? initial : learned);
        } finally {
          await trainer.release();
        }
      }
      report.seconds = (performance.now() - started) / 1000;
      reports.push(report);

      // the compressed path's input of the next block
      const next = spans[k + 1];
      if (!next || next.index > lastWanted) break;
      let nextIn: TensorStore;
      if (next.input === span.output) {
        const baked = extractSubgraph(model, { inputs: [span.input], outputs: [span.output] });
        nextIn = await runPiece(baked.model, span, qIn, (idx) => sideFeedsOf(baked.sideInputs, idx), rows, cache, captureBatch, options);
      } else {
        nextIn = (await capture(model, dataset, [next.input], cache, captureBatch, options, `capture inputs of block ${next.index}`)).stores.get(next.input)!;
      }
      if (qIn !== fp.stores.get(qIn.name)) cache.drop(qIn);
      qIn = nextIn;
      notePeak();
    }
    return { model, blocks: reports, cache: peak };
  } finally {
    cache.dispose();
  }
}

/** Dims of one row of each named tensor, as captured (a leading 1 for the row axis). */
function exampleDims(names: readonly string[], fp: Captured, qIn: TensorStore): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const n of names) {
    const s = n === qIn.name ? qIn : fp.stores.get(n);
    if (s) out[n] = [1, ...s.rowDims];
  }
  return out;
}

function rowRange(start: number, end: number): number[] {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

/** The block with its parameters, the target as an input and the mean squared error as output. */
function lossModel(block: Model, plan: BlockReconstruction, span: BlockSpan): Model {
  const m = block.clone();
  const g = m.graph;
  const params = new Map<string, Value>();
  for (const p of plan.params) {
    if (g.value(p.name)) throw new UserError(`block ${span.index}: parameter name '${p.name}' is already a tensor of the block`);
    params.set(p.name, g.addInput(p.name, { kind: 'tensor', dtype: DataType.FLOAT, shape: p.dims }));
  }
  plan.buildBlock(g, params);
  const out = g.outputs[0]!;
  if (out.type?.kind === 'tensor' && out.type.dtype !== DataType.FLOAT) throw new UserError(`block ${span.index}: reconstruction needs a float32 block output; '${out.name}' is not`);
  const target = g.addInput(TARGET, { kind: 'tensor', dtype: DataType.FLOAT, shape: out.type?.kind === 'tensor' ? out.type.shape : undefined });
  const diff = g.addNode('Sub', [out, target], ['__reconstruction_diff']).output(0);
  const sq = g.addNode('Mul', [diff, diff], ['__reconstruction_sq']).output(0);
  const loss = g.addNode('ReduceMean', [sq], [LOSS], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0);
  g.outputs = [loss];
  g.removeDeadNodes();
  g.toposort();
  return m;
}

/** A dataset view holding its first `n` samples. */
/**
 * At most `n` samples, all shaped like the first: a block is reconstructed on rows of one token
 * count, so the decode-step samples a cached decoder's calibration adds after its prompts
 * (withDecodeSteps) are left to the other passes.
 */
function limited(d: Dataset, n: number | undefined): Dataset {
  if (n !== undefined && n < 1) throw new UserError('reconstruction needs at least one calibration sample');
  const shape = (i: number) => d.read(i).inputs.map((x) => `${x.name}:${x.dims.join('x')}`).join('|');
  const first = d.size > 0 ? shape(0) : '';
  const keep: number[] = [];
  for (let i = 0; i < d.size && (n === undefined || keep.length < n); i++) if (i === 0 || shape(i) === first) keep.push(i);
  if (keep.length === d.size) return d;
  return { path: d.path, size: keep.length, read: (i) => d.read(keep[i]!), where: (i) => d.where(keep[i]!) };
}

interface Captured {
  rows: number;
  stores: Map<string, TensorStore>;
  /** Tensors without a row axis (the same for every batch): their first value. */
  statics: Map<string, ArrayTensor>;
}

/** Runs `model` over the dataset, keeping the named tensors row by row. */
async function capture(model: Model, dataset: Dataset, names: string[], cache: ActivationCache, batchSize: number, options: ReconstructOptions, label: string): Promise<Captured> {
  const bound = bindDataset(dataset, model);
  const session = await Session.create(model, { expose: names, threads: options.threads });
  const stores = new Map<string, TensorStore>();
  const statics = new Map<string, ArrayTensor>();
  const progress = options.progress ?? silentProgress;
  let row = 0;
  let total = 0;
  try {
    await inStep(progress, label, dataset.size, async (tick) => {
      for (const batch of batches(bound, batchSize)) {
        options.signal?.throwIfAborted();
        const fetched = names.filter((n) => !(n in batch.feeds));
        const out = fetched.length > 0 ? { ...(await session.run(batch.feeds, fetched)), ...pick(batch.feeds, names) } : pick(batch.feeds, names);
        const first = Object.values(batch.feeds)[0]!;
        const n = first.dims[0] ?? 1;
        if (total === 0) total = Math.round((n / batch.count) * dataset.size);
        for (const name of names) {
          const t = out[name]!;
          if (t.dims[0] !== n) {
            if (!statics.has(name)) statics.set(name, t);
            continue;
          }
          let s = stores.get(name);
          if (!s) {
            s = cache.create(name, t.dtype, t.dims.slice(1), total);
            stores.set(name, s);
          }
          s.write(row, t);
        }
        row += n;
        tick(batch.start + batch.count);
      }
    });
  } finally {
    await session.release();
  }
  if (row !== total) throw new UserError(`calibration samples in ${dataset.path} do not all hold the same number of rows`);
  return { rows: row, stores, statics };
}

function pick(feeds: Record<string, ArrayTensor>, names: readonly string[]): Record<string, ArrayTensor> {
  const out: Record<string, ArrayTensor> = {};
  for (const n of names) if (n in feeds) out[n] = feeds[n]!;
  return out;
}

/** Runs a block over stored inputs; returns its outputs as a new store. */
async function runPiece(
  piece: Model,
  span: BlockSpan,
  input: TensorStore,
  side: (idx: number[]) => Record<string, ArrayTensor>,
  rows: number,
  cache: ActivationCache,
  batchSize: number,
  options: ReconstructOptions,
): Promise<TensorStore> {
  const session = await Session.create(piece, { threads: options.threads });
  let out: TensorStore | undefined;
  try {
    for (let at = 0; at < rows; at += batchSize) {
      options.signal?.throwIfAborted();
      const idx = rowRange(at, Math.min(rows, at + batchSize));
      const r = (await session.run({ [span.input]: input.read(idx), ...side(idx) }, [span.output]))[span.output]!;
      out ??= cache.create(span.output, r.dtype, r.dims.slice(1), rows);
      out.write(at, r);
    }
  } finally {
    await session.release();
  }
  return out!;
}

/** Seeded mini-batches of row indices: each epoch a fresh shuffle, batches of a fixed size. */
export class MiniBatches {
  private order: number[] = [];
  private at = 0;
  private readonly rng: Random;

  constructor(
    private readonly rows: number,
    private readonly size: number,
    seed: number,
  ) {
    this.rng = new Random(seed);
  }

  next(): number[] {
    if (this.at + this.size > this.order.length) {
      this.order = this.rng.shuffle(Array.from({ length: this.rows }, (_, i) => i));
      this.at = 0;
    }
    const idx = this.order.slice(this.at, this.at + this.size);
    this.at += this.size;
    return idx;
  }
}
