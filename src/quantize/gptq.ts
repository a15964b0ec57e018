import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import { Session } from '../runtime/session.js';
import { defaultSegmentBytes, planSegments, runBlockwise, type BatchSource, type SegmentBatch } from '../runtime/block-runner.js';
import { SpillStore } from '../runtime/spill-store.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { traceMemory } from '../runtime/memory-trace.js';
import { collectGarbage } from '../runtime/collect-garbage.js';
import { choleskyJs, invertLowerJs, upperCholeskyOfReversed, type Handed, type InputMatrix } from './cholesky.js';
import { f64, float64Session, transposed } from './float64-graph.js';
import { fitGroupGrids } from './group-grid.js';
import { planForClone, recomputeWideInputs } from './gptq-segments.js';
import type { QuantizedWeight, WeightQuantSpec } from './weight-quantizer.js';

/**
 * Gram matrices Σ xᵀx of linear-layer inputs (each flattened to [tokens, k]) over a dataset.
 * The products run in onnxruntime (a Transpose·MatMul graph); only the k×k sums come back.
 */
export async function inputGrams(model: Model, data: Dataset, tensors: { name: string; k: number }[], options: { batchSize?: number; threads?: number; signal?: AbortSignal; samples?: number } = {}): Promise<Map<string, Float64Array>> {
  const out = new Map<string, Float64Array>(tensors.map((t) => [t.name, new Float64Array(t.k * t.k)]));
  if (tensors.length === 0) return out;
  const session = await Session.create(model, { expose: tensors.map((t) => t.name), threads: options.threads, memoryArena: false });
  const gram = await Session.create(gramGraph());
  try {
    let seen = 0;
    for (const batch of batches(bindDataset(data, model), options.batchSize ?? 8)) {
      options.signal?.throwIfAborted();
      if (options.samples !== undefined && seen >= options.samples) break;
      const acts = await session.run(batch.feeds, tensors.map((t) => t.name));
      for (const t of tensors) {
        const a = acts[t.name]!;
        const x = a.data as Float32Array;
        await addGram(gram, x, t.k, out.get(t.name)!);
      }
      seen += batch.count;
    }
    for (const t of tensors) completeGram(out.get(t.name)!, t.k);
  } finally {
    await session.release();
    await gram.release();
  }
  traceMemory(`Gram matrices of ${tensors.length} input(s) accumulated`);
  return out;
}

/**
 * Gram matrices handed out one at a time, computed a segment of the graph at a time
 * (runtime/block-runner.ts): only one segment's weights are in a session, and only the Gram
 * matrices of the inputs of the segment being consumed are held (BERT-base: about 90 MB at a
 * time instead of 1.07 GB for all 48 inputs; a 1B Llama: 0.36 GB a layer instead of 7.8 GB).
 * `take` the matrices in `order` (the same one again is fine); those of a segment are forgotten
 * once one of a later segment is taken. A segment's session is created when the first matrix
 * of it is taken, from the model's weights as they are then.
 */
export interface GramStream {
  /** The names in the order their matrices come (taking them in this order never fails). */
  order: string[];
  take(name: string): Promise<InputMatrix>;
  /**
   * With a `reference` model: X̃ᵀ(X − X̃) of the input last taken under `name`, X̃ the input this
   * model gives and X the one the reference gives (undefined without a reference).
   */
  cross(name: string): Float64Array | undefined;
  /**
   * With a reference and `crossWeights` giving weights for `name`: W·ΔCᵀ ([n, k], float64) for
   * each of them, in their order, summed instead of ΔC (`cross` then gives undefined).
   */
  weightCross(name: string): Float64Array[] | undefined;
  /**
   * Lets go of the Gram and cross matrices of `name` before the stream moves on (each is k×k
   * float64: 72 MiB for a 3072-wide input); taking them again is an error.
   */
  release(name: string): void;
  /**
   * Whether the session of the segment holding `node` has been created (its weights read), or
   * will never be; false while a later `take` may still create it. Whole-model fallback: true.
   */
  started(node: Node): boolean;
  /** Stops early (the sessions of the segment in progress are released). */
  close(): Promise<void>;
}

/**
 * The same sums as inputGrams (which holds a session over the whole model and all matrices),
 * streamed segment by segment. Graphs the block runner does not cut (with If/Loop subgraphs)
 * fall back to inputGrams (then no cross matrices: `cross` gives undefined). `cutBefore`: nodes
 * that start a segment of their own (sequential GPTQ cuts before every linear; the inputs wider
 * than what they are computed from are then recomputed where they are read: recomputeWideInputs);
 * `reference`: the same graph with other weights (the float model; with `cutBefore`, a
 * Model.clone of `model`), run in step so that `cross` can be given; `crossWeights`: for an
 * input, the float weights ([n, k]) of the layers reading it when W·ΔCᵀ of each is all that is
 * needed of ΔC (`weightCross`), read when the input's segment starts: summed instead of ΔC,
 * they take Σn·k instead of k·k (BERT-base's MLP down projection: 18 MiB instead of 72, and a
 * quarter of the per-batch products). `spill` (default true): the feeds and the values crossing
 * segments on disk (runtime/spill-store.ts); false holds them in memory (the same sums, bit for bit).
 */
export async function inputGramsBlockwise(model: Model, data: Dataset, tensors: { name: string; k: number }[], options: { batchSize?: number; threads?: number; signal?: AbortSignal; samples?: number; maxSegmentBytes?: number; cutBefore?: ReadonlySet<Node>; reference?: Model; crossWeights?: (name: string) => Float32Array[] | undefined; spill?: boolean } = {}): Promise<GramStream> {
  const cut = planSegments(model, tensors.map((t) => t.name), options.maxSegmentBytes ?? defaultSegmentBytes(model), undefined, options.cutBefore);
  // a segment per linear: its wide inputs computed again where they are read instead of kept
  const plan = cut && options.cutBefore ? recomputeWideInputs(model, cut, new Map(tensors.map((t) => [t.name, t.k]))) : cut;
  if (!plan) {
    const all = await inputGrams(model, data, tensors, options);
    return {
      order: tensors.map((t) => t.name),
      take: async (name) => all.get(name) ?? Promise.reject(new Error(`no Gram matrix for '${name}' (not one of the tensors given, or released)`)),
      cross: () => undefined,
      weightCross: () => undefined,
      release: (name) => void all.delete(name),
      started: () => true,
      close: async () => {},
    };
  }
  // the reference runs in step, cut as this model is (same node names, same segments)
  const refPlan = options.reference ? (options.cutBefore ? planForClone(plan, model, options.reference) : planSegments(options.reference, tensors.map((t) => t.name), 0, plan)) : undefined;
  // no arena: these sessions live through the whole stream, and an arena would keep their largest
  // temporaries (a 3072-wide input's slices and products: ~45 MiB for the three) all along
  const gram = await Session.create(gramGraph(), { memoryArena: false });
  const crossSession = refPlan ? await Session.create(crossGraph(), { memoryArena: false }) : undefined;
  const weightCrossSession = refPlan && options.crossWeights ? await Session.create(weightCrossGraph(), { memoryArena: false }) : undefined;
  const releaseSessions = async (): Promise<void> => {
    await gram.release();
    await crossSession?.release();
    await weightCrossSession?.release();
  };
  // the calibration feeds and the values crossing segments go to disk (SpillStore), so that
  // neither the samples of all batches nor the boundary values of all batches are held while
  // GPTQ's k x k work runs (BERT-base-sized encoder: 48 MiB of samples and 2 x 48 MiB of hidden
  // state); the model and the reference read one store of feeds
  const spill = options.spill ?? true;
  let feeds: StoredFeeds;
  try {
    feeds = storeFeeds(model, data, options.batchSize ?? streamBatchSize(tensors), options.samples, spill);
  } catch (e) {
    await releaseSessions();
    throw e;
  }
  const k = new Map(tensors.map((t) => [t.name, t.k]));
  const ready = new Map<string, InputMatrix>();
  const partial = new Map<string, InputMatrix>();
  const runs = runBlockwise(model, feeds.source, tensors.map((t) => t.name), { plan, threads: options.threads, signal: options.signal, spill });
  const refRuns = refPlan ? runBlockwise(options.reference!, feeds.source, tensors.map((t) => t.name), { plan: refPlan, threads: options.threads, signal: options.signal, spill }) : undefined;
  const crossReady = new Map<string, Float64Array>();
  const crossPartial = new Map<string, Float64Array>();
  // per input summed as W·ΔCᵀ: the weights stacked ([Σn, k]) and the row count of each
  const stacked = new Map<string, { w: Float32Array; rows: number[] }>();
  const weightCrossReady = new Map<string, Float64Array[]>();
  const segmentOfNode = new Map<Node, number>();
  // a node recomputed in a later segment (recomputeWideInputs) counts as started with the last
  plan.nodes.forEach((list, s) => list.forEach((n) => segmentOfNode.set(n, s)));
  let reached = -1;
  let done = false;
  const released = new Set<string>();
  const finish = async (): Promise<void> => {
    if (done) return;
    done = true;
    try {
      await runs.return(undefined);
      await refRuns?.return(undefined);
      await releaseSessions();
    } finally {
      feeds.store.close();
    }
  };
  // a batch of both models crosses from the runners to addBatch through `holder` alone, and is let
  // go there: an async function keeps its locals while it awaits (take awaits the next batch),
  // and the last batch's wide inputs (BERT-base's MLP: 12 MiB a model) stayed alive beside the
  // next batch's, and through GPTQ's work on the segment
  const holder: { pair?: { r: SegmentBatch; ref: SegmentBatch | undefined } } = {};
  // the next batch of both models into `holder`; what take needs of it comes back
  const pull = async (): Promise<{ lastOfSegment: boolean; segment: number; segments: number; names: string[] } | undefined> => {
    const next = await runs.next();
    if (next.done) return undefined;
    const ref = refRuns ? await refRuns.next() : undefined;
    if (ref && (ref.done || ref.value.segment !== next.value.segment || ref.value.batch !== next.value.batch)) throw new Error('Gram matrices: the reference model did not run in step');
    holder.pair = { r: next.value, ref: ref && !ref.done ? ref.value : undefined };
    const { lastOfSegment, segment, segments, tensors } = next.value;
    return { lastOfSegment, segment, segments, names: Object.keys(tensors) };
  };
  const addBatch = async (): Promise<void> => {
    const { r, ref } = holder.pair!;
    holder.pair = undefined;
    for (const [n, a] of Object.entries(r.tensors)) {
      const kk = k.get(n)!;
      const x = a.data as Float32Array;
      let acc = partial.get(n);
      if (!acc) partial.set(n, (acc = gramAccumulator(kk)));
      await addGram(gram, x, kk, acc);
      if (ref && r.batch === 0 && options.crossWeights) {
        const ws = options.crossWeights(n);
        if (ws) {
          const w = new Float32Array(ws.reduce((a, x) => a + x.length, 0));
          let at = 0;
          for (const x of ws) {
            w.set(x, at);
            at += x.length;
          }
          stacked.set(n, { w, rows: ws.map((x) => x.length / kk) });
        }
      }
      const weights = stacked.get(n);
      if (ref && weights) {
        const xf = ref.tensors[n]!.data as Float32Array;
        const rows = weights.w.length / kk;
        const c = (await weightCrossSession!.run({ X: { dtype: DataType.FLOAT, dims: [x.length / kk, kk], data: x }, R: { dtype: DataType.FLOAT, dims: [x.length / kk, kk], data: xf }, W: { dtype: DataType.FLOAT, dims: [rows, kk], data: weights.w } })).C!.data as Float32Array;
        let cacc = crossPartial.get(n);
        if (!cacc) crossPartial.set(n, (cacc = new Float64Array(rows * kk)));
        for (let i = 0; i < c.length; i++) cacc[i] += c[i]!;
      } else if (ref) {
        const xf = ref.tensors[n]!.data as Float32Array;
        const c = (await crossSession!.run({ X: { dtype: DataType.FLOAT, dims: [x.length / kk, kk], data: x }, R: { dtype: DataType.FLOAT, dims: [x.length / kk, kk], data: xf } })).C!.data as Float32Array;
        let cacc = crossPartial.get(n);
        if (!cacc) crossPartial.set(n, (cacc = new Float64Array(kk * kk)));
        for (let i = 0; i < c.length; i++) cacc[i] += c[i]!;
      }
    }
  };
  return {
    order: plan.wanted.flat(),
    async take(name) {
      if (released.has(name)) throw new Error(`Gram matrix of '${name}' was taken after it was released`);
      // asked in the model's order: a name not ready is in a later segment, and the matrices
      // of the earlier one are done with before the next segment's are summed (BERT-base: the
      // ~230 MiB of one segment's were held while the next segment's were accumulated)
      if (!ready.has(name)) {
        ready.clear();
        crossReady.clear();
        weightCrossReady.clear();
      }
      // an abort or an error ends the stream: its sessions and temporary files go with it
      try {
        while (!ready.has(name)) {
          const batch = done ? undefined : await pull();
          if (!batch) {
            await finish();
            throw new Error(`Gram matrix of '${name}' was asked for after a later segment's (take them in the model's order, as 'order' lists them), or it is not one of the tensors given`);
          }
          const { lastOfSegment, segment, segments, names } = batch;
          reached = segment;
          const wide = names.some((n) => k.get(n)! > WIDE_INPUT);
          await addBatch();
          if (wide) collectGarbage();
          if (lastOfSegment) {
            for (const n of names) {
              ready.set(n, completeGram(partial.get(n)!, k.get(n)!));
              partial.delete(n);
              const summed = crossPartial.get(n);
              const weights = stacked.get(n);
              if (summed && weights) {
                const kk = k.get(n)!;
                let at = 0;
                weightCrossReady.set(n, weights.rows.map((rows) => summed.subarray(at, (at += rows * kk))));
              } else if (summed) crossReady.set(n, summed);
              crossPartial.delete(n);
              stacked.delete(n);
            }
            traceMemory(`Gram matrices of segment ${segment + 1}/${segments} accumulated`);
          }
        }
      } catch (e) {
        await finish();
        throw e;
      }
      return ready.get(name)!;
    },
    cross: (name) => crossReady.get(name),
    weightCross: (name) => weightCrossReady.get(name),
    release(name) {
      released.add(name);
      ready.delete(name);
      crossReady.delete(name);
      weightCrossReady.delete(name);
    },
    started: (node) => done || (segmentOfNode.get(node) ?? -1) <= reached,
    close: finish,
  };
}

/** The calibration batches in a SpillStore, and the source the block runner reads them from. */
interface StoredFeeds {
  store: SpillStore;
  source: BatchSource;
}

/** Reads the dataset's batches (up to `samples` samples) into a store: on disk with `spill`, else in memory. */
function storeFeeds(model: Model, data: Dataset, batchSize: number, samples: number | undefined, spill: boolean): StoredFeeds {
  const store = new SpillStore(spill ? undefined : Infinity);
  let count = 0;
  try {
    let seen = 0;
    for (const batch of batches(bindDataset(data, model), batchSize)) {
      if (samples !== undefined && seen >= samples) break;
      for (const [n, t] of Object.entries(batch.feeds)) store.put(n, count, t);
      count++;
      seen += batch.count;
    }
  } catch (e) {
    store.close();
    throw e;
  }
  return { store, source: { count, get: (b, names) => Object.fromEntries(names.map((n) => [n, store.get(n, b)])) } };
}

/**
 * Samples per batch of the Gram stream: 4 where an input is wider than WIDE_INPUT, else 8. A
 * batch's activations are what the stream holds beside a segment's sums (both models' MLP
 * sessions and their outputs: the peak of sequential GPTQ on BERT-base, 479 MiB at batches of 8
 * against 454 at batches of 4, in the same time: 283 and 247 s at load 2.5); narrower models keep
 * batches of 8, and their sums as before.
 */
function streamBatchSize(tensors: readonly { k: number }[]): number {
  return tensors.some((t) => t.k > WIDE_INPUT) ? 4 : 8;
}

/** Xᵀ(R − X): the cross term of an input X against the reference's R. */
function crossGraph(): Model {
  const g = new Graph('gram_cross');
  const x = g.addInput('X', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'k'] });
  const r = g.addInput('R', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'k'] });
  const xt = g.addNode('Transpose', [x], 1, { attributes: { perm: { type: 'ints', value: [1, 0] } } }).output(0);
  const y = g.addNode('MatMul', [xt, g.addNode('Sub', [r, x], 1).output(0)], ['C']).output(0);
  g.outputs.push(y);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/** W·ΔCᵀ = ((R − X)·Wᵀ)ᵀ·X for stacked weights W [Σn, k], ΔC = Xᵀ(R − X) never formed. */
function weightCrossGraph(): Model {
  const g = new Graph('gram_weight_cross');
  const x = g.addInput('X', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'k'] });
  const r = g.addInput('R', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'k'] });
  const w = g.addInput('W', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['m', 'k'] });
  const d = g.addNode('Gemm', [g.addNode('Sub', [r, x], 1).output(0), w], 1, { attributes: { transB: { type: 'int', value: 1 } } }).output(0);
  g.outputs.push(g.addNode('Gemm', [d, x], ['C'], { attributes: { transA: { type: 'int', value: 1 } } }).output(0));
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/**
 * Inputs wider than this are "wide": their Gram matrix is summed a band of rows at a time (upper
 * triangle only), and sequential GPTQ sums W·ΔCᵀ for their layers instead of ΔC (crossWeights),
 * where the k×k matrices cost most; narrower inputs keep the previous numerics exactly.
 */
export const WIDE_INPUT = 2048;
const GRAM_FULL_K = WIDE_INPUT;
const GRAM_BAND = 512;

/**
 * Adds XᵀX of `x` ([tokens, k]) to `acc` (k×k). Wide inputs go a band of GRAM_BAND rows at a
 * time, each from its diagonal on (rows c0..c1, columns c0..k): per-batch products of at most
 * 512×k float32 instead of one k×k (36 MiB for k = 3072, with onnxruntime's own copy beside it)
 * and half the work; completeGram mirrors the upper triangle once the sum is done.
 */
async function addGram(session: Session, x: Float32Array, k: number, acc: InputMatrix): Promise<void> {
  const band = k > GRAM_FULL_K ? GRAM_BAND : k;
  const int64 = (v: number): ArrayTensor => ({ dtype: DataType.INT64, dims: [1], data: BigInt64Array.of(BigInt(v)) });
  for (let c0 = 0; c0 < k; c0 += band) {
    const c1 = Math.min(k, c0 + band);
    const g = (await session.run({ X: { dtype: DataType.FLOAT, dims: [x.length / k, k], data: x }, S: int64(c0), E: int64(c1), K: int64(k) })).G!.data as Float32Array;
    const w = band === k ? k : k - c0;
    for (let r = 0; r < c1 - c0; r++) {
      const at = (c0 + r) * k + (band === k ? 0 : c0);
      for (let j = 0; j < w; j++) acc[at + j] += g[r * w + j]!;
    }
  }
}

/**
 * The k×k sum a Gram matrix is accumulated in: float64, or float32 for inputs wider than
 * WIDE_INPUT, where the matrix is largest when held with everything else of a segment (72 MiB in
 * float64 for k = 3072, beside both models' sessions running the MLP: the peak of sequential
 * GPTQ on BERT-base). Each batch's product is float32 from onnxruntime either way; the sum of
 * the batches then rounds to float32 too (relative 6e-8 a batch), and the factor is made in
 * float64 from it.
 */
function gramAccumulator(k: number): InputMatrix {
  return k > WIDE_INPUT ? new Float32Array(k * k) : new Float64Array(k * k);
}

/** A Gram matrix summed by bands (addGram, wide inputs): its lower triangle from the upper. Returns `acc`. */
function completeGram(acc: InputMatrix, k: number): InputMatrix {
  if (k <= GRAM_FULL_K) return acc;
  for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) acc[j * k + i] = acc[i * k + j]!;
  return acc;
}

/** Rows S..E of XᵀX from column S on (S = 0, E = k: all of it, when the band is the whole width). */
function gramGraph(): Model {
  const g = new Graph('gram');
  const x = g.addInput('X', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'k'] });
  const [s, e, k] = ['S', 'E', 'K'].map((name) => g.addInput(name, { kind: 'tensor', dtype: DataType.INT64, shape: [1] }));
  const axes = g.addInitializer(Tensor.fromBytes('axes', DataType.INT64, [1], new Uint8Array(BigInt64Array.of(1n).buffer)));
  const rows = g.addNode('Slice', [x, s!, e!, axes], 1).output(0);
  // the whole width from the band's first column: its diagonal block and what is right of it
  const right = g.addNode('Slice', [x, s!, k!, axes], 1).output(0);
  const y = g.addNode('Gemm', [rows, right], ['G'], { attributes: { transA: { type: 'int', value: 1 } } }).output(0);
  g.outputs.push(y);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/** Inverse of a symmetric positive definite matrix from its Cholesky factor. */
function spdInverse(a: Float64Array, k: number): Float64Array {
  // inv(L) (lower), then inv(A) = inv(L)ᵀ inv(L)
  const li = invertLowerJs(choleskyJs(a, k), k);
  const inv = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = i; p < k; p++) s += li[p * k + i]! * li[p * k + j]!;
      inv[i * k + j] = s;
      inv[j * k + i] = s;
    }
  }
  return inv;
}

/**
 * GPTQ's factor of a layer input's damped Gram matrix H = XᵀX + λI (λ = `damp` · mean diag,
 * dampedDiagonal): U upper triangular with (P H Pᵀ)⁻¹ = UᵀU, P the column order GPTQ goes
 * through (`perm`: position i holds column perm[i]). One factor serves every layer reading the
 * input, both for its float target weight (floatTargetWeight) and for GPTQ's updates
 * (gptqLevelsWithFactor).
 */
export interface GptqFactor {
  k: number;
  U: Float64Array;
  perm: number[];
  /** Inputs that are always zero: their weights are zeroed. */
  dead: Uint8Array;
}

/**
 * The factor of the Gram matrix in `gram` (GptqFactor), taken over: J P H Pᵀ J (H damped, in
 * GPTQ's column order, its elements reversed) is written over the Gram matrix, in place, and
 * the holder is cleared, so the only k×k matrices made are that one's blocks and U (72 MiB each
 * for a 3072-wide layer; a separate J P H Pᵀ J was one more, made while the Gram matrix was
 * still there). Not async: an async function would keep the matrix in its locals while it awaits.
 */
export function gptqFactor(gram: Handed, k: number, damp: number, actOrder: boolean): Promise<GptqFactor> {
  const { diagonal, dead, perm } = dampedDiagonal(gram.a!, k, damp, actOrder);
  const reversed: Handed = { a: reverseHessianInPlace(gram.a!, k, diagonal, perm) };
  gram.a = undefined;
  return factorOfReversed(reversed, k, perm, dead);
}

async function factorOfReversed(reversed: Handed, k: number, perm: number[], dead: Uint8Array): Promise<GptqFactor> {
  const U = await upperCholeskyOfReversed(reversed, k);
  traceMemory(`gptq: inverse factor (k ${k})`);
  return { k, U, perm, dead };
}

let crossSessionF64: Promise<Session> | undefined;
let targetSession: Promise<Session> | undefined;

/**
 * W·ΔCᵀ ([n, k], float64) for floatTargetWeight: all it needs of the k×k cross matrix ΔC
 * (GramStream.cross), so that ΔC can be let go before the factor is made.
 */
export async function weightTimesCross(w: Float32Array, n: number, k: number, cross: Float64Array): Promise<Float64Array> {
  // Gemm with transB: no transposed k×k copy inside onnxruntime
  crossSessionF64 ??= float64Session('gptq_weight_cross', ['W', 'D'], (g, [wv, d]) => [g.addNode('Gemm', [wv!, d!], ['WD'], { attributes: { transB: { type: 'int', value: 1 } } }).output(0)]);
  const r = await (await crossSessionF64).run({ W: f64(Float64Array.from(w), n, k), D: f64(cross, k, k) });
  return r.WD!.data as Float64Array;
}

/**
 * The weight that, on the inputs X̃ a layer gets from the quantized layers before it, best
 * gives the outputs the float model gives on its inputs X: argmin ‖X̃Ŵᵀ − XWᵀ‖² =
 * W + W·ΔCᵀ·H̃⁻¹, with ΔC = X̃ᵀ(X − X̃) (GramStream.cross; `wCross` = W·ΔCᵀ from
 * weightTimesCross) and H̃ = X̃ᵀX̃ damped as GPTQ damps it: H̃⁻¹ = Pᵀ UᵀU P from GPTQ's own
 * factor of the layer's input (GptqFactor), so no second k×k factor is made. GPTQ on this
 * weight with H̃ then minimises the output error against the float model's outputs rather than
 * against this layer's float weight on the quantized inputs (GPTAQ's asymmetric calibration,
 * Li et al. 2025). Equal to `w` when X̃ = X.
 */
export async function floatTargetWeight(w: Float32Array, n: number, k: number, wCross: Float64Array, factor: GptqFactor): Promise<Float32Array> {
  const { perm, U } = factor;
  // W·ΔCᵀ with its columns in GPTQ's order, times Uᵀ then U: (W·ΔCᵀ·H̃⁻¹) in that order
  const permuted = new Float64Array(n * k);
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) permuted[r * k + i] = wCross[r * k + perm[i]!]!;
  targetSession ??= float64Session('gptq_float_target', ['M', 'U'], (g, [m, u]) => {
    const mu = g.addNode('Gemm', [m!, u!], 1, { attributes: { transB: { type: 'int', value: 1 } } }).output(0);
    return [g.addNode('MatMul', [mu, u!], ['T']).output(0)];
  });
  const t = (await (await targetSession).run({ M: f64(permuted, n, k), U: f64(U, k, k) })).T!.data as Float64Array;
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) out[r * k + perm[i]!] = w[r * k + perm[i]!]! + t[r * k + i]!;
  return out;
}

/** Columns quantized together before the rest of the weight is updated in one product. */
const LAZY_BLOCK = 128;
/** Below this many inputs the whole algorithm stays in JavaScript (no session overhead): gptqLevels on the Gram matrix. */
export const SMALL_K = 256;

let updateSession: Promise<Session> | undefined;

/** W − Aᵀ·E in onnxruntime (float64): a lazy block's columns updated for the errors of the columns quantized before it. */
async function trailingUpdate(w: Float64Array, a: Float64Array, e: Float64Array, m: number, b: number, n: number): Promise<Float64Array> {
  updateSession ??= float64Session('gptq_update', ['W', 'A', 'E'], (g, [w, at, e]) => [g.addNode('Sub', [w!, g.addNode('MatMul', [transposed(g, at!), e!], 1).output(0)], ['Wout']).output(0)]);
  const r = await (await updateSession).run({ W: f64(w, m, n), A: f64(a, b, m), E: f64(e, b, n) });
  return r.Wout!.data as Float64Array;
}

/**
 * Dynamic groups (the reference GPTQ's default, `static_groups=False`): a group's grid (scale
 * and zero point per output channel) is fitted when GPTQ reaches the group's first column, on
 * the weights as the error feedback from the columns already quantized has left them, with the
 * range search `search` of the weight's grid. Without it ("static groups") the grids are those
 * of the round-to-nearest weight passed in, fitted on the original weights. Groups stay
 * contiguous in the original column order (what MatMulNBits stores); with activation order a
 * group is fitted when the first of its columns in that order comes up (its other columns,
 * not yet quantized, carry the feedback so far).
 */
export interface GroupRefit {
  search: WeightQuantSpec['search'];
}

/**
 * GPTQ (Frantar et al. 2023): the levels are chosen one input column at a time, each column's
 * rounding error being spread over the columns not yet quantized through the inverse Gram
 * matrix of the layer's inputs (H = XᵀX + λI, λ = `damp` · mean diag). `w` is [n, k] (rows =
 * output channels); `q` is its round-to-nearest weight, whose grids are kept (static groups) or,
 * with `refit`, refitted group by group (GroupRefit). With `actOrder`, columns go by descending
 * diag(H). Returns a weight of the same layout with new levels (and with `refit`, new scales
 * and zero points). For wide layers the factor of H⁻¹ (`upperCholeskyOfInverse`) and the
 * lazy-batch updates (blocks of 128 columns) run their products in onnxruntime in float64;
 * small layers stay in JavaScript.
 */
export async function gptqLevelsAsync(w: Float32Array, q: QuantizedWeight, gram: Float64Array, damp = 0.01, actOrder = false, refit?: GroupRefit): Promise<QuantizedWeight> {
  if (q.k <= SMALL_K) return gptqLevels(w, q, gram, damp, actOrder, refit);
  // the factor is made over a copy: the caller's Gram matrix stays as it was
  return gptqLevelsWithFactor(w, q, await gptqFactor({ a: gram.slice() }, q.k, damp, actOrder), refit);
}

/** gptqLevelsAsync's lazy-batch GPTQ given the factor of the layer's input (gptqFactor). */
export async function gptqLevelsWithFactor(w: Float32Array, q: QuantizedWeight, factor: GptqFactor, refit?: GroupRefit): Promise<QuantizedWeight> {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const { U, perm, dead } = factor;
  // the weight column-major ([k, n]) in GPTQ's column order: a column is contiguous, the columns left are a tail
  const Wt = new Float64Array(k * n);
  for (let i = 0; i < k; i++) {
    const c = perm[i]!;
    if (dead[c]) continue;
    for (let r = 0; r < n; r++) Wt[i * n + r] = w[r * k + c]!;
  }
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const levels = q.levels.slice();
  const grids = new GroupGrids(q, perm, refit);
  const err = new Float64Array(n);
  // every column's scaled error, row i for column i. Left-looking lazy batches: a block's
  // columns take the updates of all earlier blocks when GPTQ reaches them, one [128, n] product,
  // instead of each block updating the whole tail ([k - i2, n]: 430 MiB of float64 products
  // coming back from onnxruntime per 3072-wide layer, against 18 MiB so); the same sums
  const E = new Float64Array(k * n);
  for (let i1 = 0; i1 < k; i1 += LAZY_BLOCK) {
    const i2 = Math.min(k, i1 + LAZY_BLOCK);
    const b = i2 - i1;
    if (i1 > 0) Wt.set(await trailingUpdate(Wt.subarray(i1 * n, i2 * n), columnsOf(U, k, 0, i1, range(i1, i2)), E.subarray(0, i1 * n), b, i1, n), i1 * n);
    // with refit, the columns past this block of the groups first reached in it, brought up to
    // date with the earlier blocks' errors in one product (rows in the order of `ahead`)
    const ahead = grids.unfittedAhead(i1, i2);
    const aheadAt = new Map(ahead.map((p, a) => [p, a]));
    const aheadRows = ahead.length === 0 ? undefined : i1 > 0 ? await trailingUpdate(gatherRows(Wt, n, ahead), columnsOf(U, k, 0, i1, ahead), E.subarray(0, i1 * n), ahead.length, i1, n) : gatherRows(Wt, n, ahead);
    for (let i = i1; i < i2; i++) {
      const d = U[i * k + i]!;
      const col = perm[i]!;
      const gi = Math.floor(col / blockSize);
      // a column past this lazy block still lacks the updates of this block's columns so far
      grids.reach(gi, (p, out) => {
        if (p < i2) {
          out.set(Wt.subarray(p * n, (p + 1) * n));
          return;
        }
        const a = aheadAt.get(p)!;
        out.set(aheadRows!.subarray(a * n, (a + 1) * n));
        for (let t = i1; t < i; t++) {
          const u = U[t * k + p]!;
          if (u === 0) continue;
          const e = E.subarray(t * n, (t + 1) * n);
          for (let r = 0; r < n; r++) out[r] -= e[r]! * u;
        }
      });
      for (let r = 0; r < n; r++) {
        const s = grids.scales[r * groups + gi]!;
        const z = grids.zeroPoints[r * groups + gi]!;
        const x = Wt[i * n + r]!;
        const level = Math.min(qmax, Math.max(qmin, Math.round(x / s) + z));
        levels[r * padded + col] = level;
        err[r] = (x - (level - z) * s) / d;
      }
      E.set(err, i * n);
      for (let j = i + 1; j < i2; j++) {
        const u = U[i * k + j]!;
        if (u === 0) continue;
        const base = j * n;
        for (let r = 0; r < n; r++) Wt[base + r] -= err[r]! * u;
      }
    }
  }
  return { ...q, levels, scales: grids.scales, zeroPoints: grids.zeroPoints };
}

/** Rows r0..r1 of the row-major k-column matrix `u`, at the given columns: [r1 - r0, columns.length]. */
function columnsOf(u: Float64Array, k: number, r0: number, r1: number, columns: readonly number[]): Float64Array {
  const out = new Float64Array((r1 - r0) * columns.length);
  for (let r = r0; r < r1; r++) for (let j = 0; j < columns.length; j++) out[(r - r0) * columns.length + j] = u[r * k + columns[j]!]!;
  return out;
}

/** The given rows of the row-major n-column matrix `w`, stacked. */
function gatherRows(w: Float64Array, n: number, rows: readonly number[]): Float64Array {
  const out = new Float64Array(rows.length * n);
  rows.forEach((r, i) => out.set(w.subarray(r * n, (r + 1) * n), i * n));
  return out;
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

/** The grids GPTQ quantizes on: those of the round-to-nearest weight, or refitted group by group (GroupRefit). */
class GroupGrids {
  readonly scales: Float32Array;
  readonly zeroPoints: Int32Array;
  private readonly fitted: Uint8Array;
  /** Position of each original column in GPTQ's order. */
  private readonly position: Int32Array;

  constructor(
    private readonly q: QuantizedWeight,
    perm: number[],
    private readonly refit: GroupRefit | undefined,
  ) {
    this.scales = q.scales.slice();
    this.zeroPoints = q.zeroPoints.slice();
    this.fitted = new Uint8Array(q.groups);
    this.position = new Int32Array(q.k);
    perm.forEach((col, i) => (this.position[col] = i));
  }

  /**
   * With `refit`: the positions from `i2` on of the columns of groups not yet fitted that have a
   * column at positions i1..i2 (those groups are fitted in that lazy block, on these columns too).
   */
  unfittedAhead(i1: number, i2: number): number[] {
    if (!this.refit) return [];
    const { k, blockSize } = this.q;
    const groups = new Set<number>();
    for (let c = 0; c < k; c++) {
      const p = this.position[c]!;
      if (p >= i1 && p < i2 && !this.fitted[Math.floor(c / blockSize)]) groups.add(Math.floor(c / blockSize));
    }
    const out: number[] = [];
    for (const gi of groups) for (let c = gi * blockSize; c < Math.min(k, (gi + 1) * blockSize); c++) if (this.position[c]! >= i2) out.push(this.position[c]!);
    return out;
  }

  /**
   * GPTQ reaches a column of group `gi`: the first time, with `refit`, its grids are fitted on
   * the group's columns as they are now (`column(position, out)` writes the n rows of the column
   * at that position in GPTQ's order).
   */
  reach(gi: number, column: (position: number, out: Float64Array) => void): void {
    if (!this.refit || this.fitted[gi]) return;
    this.fitted[gi] = 1;
    const { n, k, groups, blockSize } = this.q;
    const c0 = gi * blockSize;
    const width = Math.min(k, c0 + blockSize) - c0;
    const values = new Float64Array(n * width);
    const col = new Float64Array(n);
    for (let c = 0; c < width; c++) {
      column(this.position[c0 + c]!, col);
      for (let r = 0; r < n; r++) values[r * width + c] = col[r]!;
    }
    const g = fitGroupGrids(values, n, width, { bits: this.q.bits, symmetric: this.q.symmetric, search: this.refit.search });
    for (let r = 0; r < n; r++) {
      this.scales[r * groups + gi] = g.scales[r]!;
      this.zeroPoints[r * groups + gi] = g.zeroPoints[r]!;
    }
  }
}

/**
 * H's diagonal once damped (H = XᵀX + λI, λ = `damp` · mean diag; an input that is always zero
 * gets 1 there and its weights are zeroed: `dead`), and GPTQ's column order. The same numbers
 * as `prepare`'s, without copying the k×k matrix.
 */
function dampedDiagonal(gram: InputMatrix, k: number, damp: number, actOrder: boolean): { diagonal: Float64Array; dead: Uint8Array; perm: number[] } {
  const diagonal = new Float64Array(k);
  const dead = new Uint8Array(k);
  let mean = 0;
  for (let i = 0; i < k; i++) mean += gram[i * k + i]! / k;
  for (let i = 0; i < k; i++) {
    diagonal[i] = gram[i * k + i]!;
    if (diagonal[i] === 0) {
      diagonal[i] = 1;
      dead[i] = 1;
    }
    diagonal[i] += damp * (mean > 0 ? mean : 1);
  }
  const perm = Array.from({ length: k }, (_, i) => i);
  if (actOrder) perm.sort((a, b) => diagonal[b]! - diagonal[a]! || a - b);
  return { diagonal, dead, perm };
}

/**
 * J P H Pᵀ J written over the Gram matrix `a`, in place: element (i, j) becomes H's at columns
 * q[i], q[j] with q[i] = perm[k − 1 − i] (GPTQ's column order, reversed), the diagonal the damped
 * one. Rows are moved along the permutation's cycles, then each row's elements, with one row
 * of scratch. Returns `a`.
 */
function reverseHessianInPlace(a: InputMatrix, k: number, diagonal: Float64Array, perm: readonly number[]): InputMatrix {
  const q = Int32Array.from({ length: k }, (_, i) => perm[k - 1 - i]!);
  const row = new Float64Array(k);
  const moved = new Uint8Array(k);
  for (let start = 0; start < k; start++) {
    if (moved[start]) continue;
    // row i takes row q[i]: follow the cycle from `start`, its first row saved
    row.set(a.subarray(start * k, (start + 1) * k));
    let i = start;
    while (q[i] !== start) {
      a.copyWithin(i * k, q[i]! * k, (q[i]! + 1) * k);
      moved[i] = 1;
      i = q[i]!;
    }
    a.set(row, i * k);
    moved[i] = 1;
  }
  for (let i = 0; i < k; i++) {
    const r = a.subarray(i * k, (i + 1) * k);
    row.set(r);
    for (let j = 0; j < k; j++) r[j] = row[q[j]!]!;
    r[i] = diagonal[q[i]!]!;
  }
  return a;
}

/** Damped Gram matrix and weight, both in the column order GPTQ goes through. */
function prepare(w: Float32Array, q: QuantizedWeight, gram: Float64Array, damp: number, actOrder: boolean): { h: Float64Array; W: Float64Array; perm: number[] } {
  const { n, k } = q;
  const { diagonal, dead, perm } = dampedDiagonal(gram, k, damp, actOrder);
  const h = new Float64Array(k * k);
  const W = new Float64Array(n * k);
  for (let i = 0; i < k; i++) {
    const pi = perm[i]!;
    for (let j = 0; j < k; j++) h[i * k + j] = pi === perm[j] ? diagonal[pi]! : gram[pi * k + perm[j]!]!;
    if (!dead[pi]) for (let r = 0; r < n; r++) W[r * k + i] = w[r * k + pi]!;
  }
  return { h, W, perm };
}

/** GPTQ entirely in JavaScript (see gptqLevelsAsync, which the quantize pass uses). */
export function gptqLevels(w: Float32Array, q: QuantizedWeight, gram: Float64Array, damp = 0.01, actOrder = false, refit?: GroupRefit): QuantizedWeight {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const { h, W, perm } = prepare(w, q, gram, damp, actOrder);
  // upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU): the transpose of the lower factor
  const lower = choleskyJs(spdInverse(h, k), k);
  const U = (i: number, j: number): number => lower[j * k + i]!;
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const levels = q.levels.slice();
  const grids = new GroupGrids(q, perm, refit);
  for (let i = 0; i < k; i++) {
    const d = U(i, i);
    const col = perm[i]!;
    const gi = Math.floor(col / blockSize);
    grids.reach(gi, (p, out) => {
      for (let r = 0; r < n; r++) out[r] = W[r * k + p]!;
    });
    for (let r = 0; r < n; r++) {
      const s = grids.scales[r * groups + gi]!;
      const z = grids.zeroPoints[r * groups + gi]!;
      const x = W[r * k + i]!;
      const level = Math.min(qmax, Math.max(qmin, Math.round(x / s) + z));
      levels[r * padded + col] = level;
      const err = (x - (level - z) * s) / d;
      for (let j = i + 1; j < k; j++) W[r * k + j] -= err * U(i, j);
    }
  }
  return { ...q, levels, scales: grids.scales, zeroPoints: grids.zeroPoints };
}
