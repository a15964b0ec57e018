// FlexRound (Lee et al., ICML 2023): learnable rounding by element-wise division.
//
//   Ŵ = s1 · (clamp(⌊W ⊘ (s1 ⊙ S2 ⊙ s3)⌉ + z, qmin, qmax) − z)
//
// s1 is the common grid size (one per output channel and group, started at the grid the range
// search found), S2 one scale per weight, s3 one per output channel. All three are learned in
// log space as offsets from the start: the divisor is s1·exp(δ1 + δ2 + δ3) and the
// dequantization multiplies by s1·exp(δ1), with δ = 0 at the start, so that step 0 is exactly
// round-to-nearest on the starting grid. Rounding passes gradients straight through (STE).
//
// The objective graphs run in onnxruntime through the gradient engine (src/autodiff); the
// result is an ordinary QuantizedWeight (levels, scales, zero points): nothing FlexRound-specific
// reaches the exported model.
import { trainInChunks } from '../autodiff/chunked-steps.js';
import { Trainer, type OptimizerOptions } from '../autodiff/optimizer.js';
import { Random } from '../autodiff/random.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import { Session } from '../runtime/session.js';
import { newLevels, type QuantizedWeight } from './weight-quantizer.js';

/** The learned log-offsets of one weight: δ1 [n, groups], δ2 [n, groups·blockSize], δ3 [n]. */
export interface FlexRoundDeltas {
  d1: Float32Array;
  d2: Float32Array;
  d3: Float32Array;
}

export interface FlexRoundLayerOptions {
  /** Optimizer steps (default 500). */
  iters?: number;
  /** Adam learning rate (default 3e-3), cosine schedule to 0. */
  lr?: number;
  /** Rows per step (default 256). */
  batch?: number;
  /** Learn δ1 (the grid size) too (default true); false keeps the starting grid. */
  learnGrid?: boolean;
  seed?: number;
  threads?: number;
  signal?: AbortSignal;
  /**
   * The weight ([n, k]) that is divided and rounded, when not `w`: one that rounds to an earlier
   * decision's levels at δ = 0 (weightRoundingTo), so learning starts from that decision. The
   * objective's target stays the float `w`.
   */
  from?: Float32Array;
  /**
   * The float model's rows of this layer's input ([rows, k], the same rows as `x`): the target
   * becomes their float output, while `x` holds the inputs the quantized layers before this one
   * give (AdaRound's asymmetric reconstruction, the target sequential GPTQ fits). Default: `x`.
   */
  floatInputs?: Float32Array;
  /** The learned values are kept only when they lower the output error by at least this fraction of it (default 0). */
  minGain?: number;
}

export interface FlexRoundLayerResult {
  weight: QuantizedWeight;
  /** Mean squared output error over all rows with the start (RTN) and with the learned values. */
  lossBefore: number;
  lossAfter: number;
  kept: 'learned' | 'initial';
  seconds: number;
  /** Of `seconds`: building the objective and its sessions, and the optimizer steps alone. */
  setupSeconds: number;
  stepSeconds: number;
}

const X = 'flexround_x';
/** The float layer's output on the same rows (x·Wᵀ, [rows, n]), computed once per layer rather than at every step. */
const TARGET = 'flexround_target';
const LOSS = 'flexround_loss';

/** Names of the learnable inputs of a weight's fake-quantizer, by a prefix. */
export function deltaNames(prefix: string): { d1: string; d2: string; d3: string } {
  return { d1: `${prefix}__flexround_d1`, d2: `${prefix}__flexround_d2`, d3: `${prefix}__flexround_d3` };
}

/**
 * Adds the fake-quantized weight Ŵ (in [n, k], output-channel-major) to `g`, computed from the
 * float weight `w` ([n, k]), the starting grid `q` and the three δ inputs. Returns Ŵ.
 */
export function fakeQuantWeight(g: Graph, prefix: string, w: Float32Array, q: QuantizedWeight, deltas: { d1: Value; d2: Value; d3: Value }): Value {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const wp = new Float32Array(n * padded);
  for (let r = 0; r < n; r++) wp.set(w.subarray(r * k, (r + 1) * k), r * padded);
  const c = (name: string, dims: number[], values: ArrayLike<number>, dtype = DataType.FLOAT): Value => g.addInitializer(Tensor.from(`${prefix}__flexround_${name}`, dtype, dims, values));
  const op = (type: string, inputs: Value[], attrs: Record<string, number | number[]> = {}): Value => {
    const attributes = Object.fromEntries(Object.entries(attrs).map(([key, v]) => [key, Array.isArray(v) ? { type: 'ints' as const, value: v } : { type: 'int' as const, value: v }]));
    return g.addNode(type, inputs, 1, { attributes }).output(0);
  };
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const W = c('w', [n, groups, blockSize], wp);
  const s1 = c('s1', [n, groups, 1], q.scales);
  const d1 = op('Reshape', [deltas.d1, c('shape_d1', [3], [n, groups, 1], DataType.INT64)]);
  const d2 = op('Reshape', [deltas.d2, c('shape_d2', [3], [n, groups, blockSize], DataType.INT64)]);
  const d3 = op('Reshape', [deltas.d3, c('shape_d3', [3], [n, 1, 1], DataType.INT64)]);
  const divisor = op('Mul', [s1, op('Exp', [op('Add', [op('Add', [d1, d3]), d2])])]);
  // a symmetric grid's zero points are all 0: adding and subtracting them would be two passes
  // over the weight (and its gradient) that change nothing
  const centered = q.zeroPoints.every((v) => v === 0);
  const rounded = op('Round', [op('Div', [W, divisor])]);
  const z = centered ? undefined : c('z', [n, groups, 1], Float32Array.from(q.zeroPoints));
  const codes = op('Clip', [z ? op('Add', [rounded, z]) : rounded, c('qmin', [], [qmin]), c('qmax', [], [qmax])]);
  const deq = op('Mul', [z ? op('Sub', [codes, z]) : codes, op('Mul', [s1, op('Exp', [d1])])]);
  let flat = op('Reshape', [deq, c('shape_flat', [2], [n, padded], DataType.INT64)]);
  if (padded !== k) flat = op('Slice', [flat, c('starts', [1], [0], DataType.INT64), c('ends', [1], [k], DataType.INT64), c('axes', [1], [1], DataType.INT64)]);
  return flat;
}

/** Zero δ's for a grid (the start: round to nearest). */
export function zeroDeltas(q: QuantizedWeight): FlexRoundDeltas {
  return { d1: new Float32Array(q.n * q.groups), d2: new Float32Array(q.n * q.groups * q.blockSize), d3: new Float32Array(q.n) };
}

/**
 * A weight that FlexRound's start (δ = 0) rounds to the levels of `q` (an earlier decision, such
 * as GPTQ's, on the same grid): each element of `w` ([n, k]) moved into the bin of its decided
 * level, to just inside the bin's edge when it lay outside (ELEMENTS_INSIDE of a step), so that
 * learning starts from the decision with every element as near its rounding boundary as `w` allows.
 */
export function weightRoundingTo(w: Float32Array, q: QuantizedWeight): Float32Array {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < k; i++) {
      const gi = r * groups + Math.floor(i / blockSize);
      const s = q.scales[gi]!;
      const z = q.zeroPoints[gi]!;
      const level = q.levels[r * padded + i]!;
      const m = level - z;
      // the ends of the grid are open: the clip of the code makes every value beyond them round to them
      const lo = level === qmin ? -Infinity : m - 0.5 + INSIDE;
      const hi = level === qmax ? Infinity : m + 0.5 - INSIDE;
      out[r * k + i] = Math.min(hi, Math.max(lo, w[r * k + i]! / s)) * s;
    }
  }
  return out;
}

/** How far inside its bin (in steps) weightRoundingTo puts an element it moves: float32 division cannot carry it over the edge. */
const INSIDE = 0.01;

/** Rounds half to even, as onnxruntime's Round does. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The deployable weight: integer levels ⌊W ⊘ (s1·exp(δ1+δ2+δ3))⌉ on the grid s1·exp(δ1) with the
 * starting zero points. With all δ = 0 the levels and scales are those of `q`, bit for bit.
 */
export function bakeFlexRound(w: Float32Array, q: QuantizedWeight, d: FlexRoundDeltas): QuantizedWeight {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const levels = newLevels(n * padded, q.symmetric);
  const scales = new Float32Array(n * groups);
  for (let r = 0; r < n; r++) {
    const e3 = d.d3[r]!;
    for (let gi = 0; gi < groups; gi++) {
      const s1 = q.scales[r * groups + gi]!;
      const e1 = d.d1[r * groups + gi]!;
      const z = q.zeroPoints[r * groups + gi]!;
      scales[r * groups + gi] = Math.fround(s1 * Math.fround(Math.exp(e1)));
      const e13 = Math.fround(e1 + e3);
      for (let j = 0; j < blockSize; j++) {
        const i = gi * blockSize + j;
        if (i >= k) break;
        const div = Math.fround(s1 * Math.fround(Math.exp(Math.fround(e13 + d.d2[r * padded + i]!))));
        const level = roundHalfEven(Math.fround(w[r * k + i]! / div)) + z;
        levels[r * padded + i] = Math.min(qmax, Math.max(qmin, level));
      }
    }
  }
  return { ...q, levels, scales };
}

/**
 * The layer-wise objective: the mean squared difference of x·Ŵᵀ and the float output x·Wᵀ over
 * the rows of inputs `flexround_x` and `flexround_target` (floatOutputs gives the latter).
 */
export function flexRoundObjective(q: QuantizedWeight, learnGrid: boolean, from: Float32Array): { model: Model; names: { d1: string; d2: string; d3: string } } {
  const g = new Graph('flexround_layer');
  const names = deltaNames('w');
  const x = g.addInput(X, { kind: 'tensor', dtype: DataType.FLOAT, shape: ['rows', q.k] });
  const target = g.addInput(TARGET, { kind: 'tensor', dtype: DataType.FLOAT, shape: ['rows', q.n] });
  const d1 = learnGrid ? g.addInput(names.d1, { kind: 'tensor', dtype: DataType.FLOAT, shape: [q.n, q.groups] }) : g.addInitializer(Tensor.from(names.d1, DataType.FLOAT, [q.n, q.groups], new Float32Array(q.n * q.groups)));
  const d2 = g.addInput(names.d2, { kind: 'tensor', dtype: DataType.FLOAT, shape: [q.n, q.groups * q.blockSize] });
  const d3 = g.addInput(names.d3, { kind: 'tensor', dtype: DataType.FLOAT, shape: [q.n] });
  const wq = fakeQuantWeight(g, 'w', from, q, { d1, d2, d3 });
  const perm = { attributes: { perm: { type: 'ints' as const, value: [1, 0] } } };
  const y = g.addNode('MatMul', [x, g.addNode('Transpose', [wq], 1, perm).output(0)], 1).output(0);
  const diff = g.addNode('Sub', [y, target], 1).output(0);
  const loss = g.addNode('ReduceMean', [g.addNode('Mul', [diff, diff], 1).output(0)], [LOSS], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0);
  g.outputs.push(loss);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return { model: m, names };
}

/** x·Wᵀ ([rows, n]) for `x` ([rows, k]) and the float weight `w` ([n, k]), in onnxruntime. */
export async function floatOutputs(w: Float32Array, n: number, k: number, x: Float32Array, threads?: number): Promise<Float32Array> {
  const g = new Graph('flexround_target');
  const input = g.addInput(X, { kind: 'tensor', dtype: DataType.FLOAT, shape: ['rows', k] });
  const wT = g.addInitializer(Tensor.from('w_float_t', DataType.FLOAT, [k, n], transposeNK(w, n, k)));
  g.outputs.push(g.addNode('MatMul', [input, wT], [TARGET]).output(0));
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  const session = await Session.create(m, { threads });
  try {
    return (await session.run({ [X]: { dtype: DataType.FLOAT, dims: [x.length / k, k], data: x } }, [TARGET]))[TARGET]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function transposeNK(w: Float32Array, n: number, k: number): Float32Array {
  const t = new Float32Array(n * k);
  for (let r = 0; r < n; r++) for (let i = 0; i < k; i++) t[i * n + r] = w[r * k + i]!;
  return t;
}

/**
 * Layer-wise FlexRound: learns δ1, δ2, δ3 of one weight (`w` in [n, k]) so that the layer's
 * output on the calibration inputs `x` ([rows, k]) stays close to the float one (the float
 * layer's on `floatInputs` when given), starting at the grid `q`. Keeps the start when learning
 * does not lower the output error.
 */
export async function flexRoundLayer(w: Float32Array, q: QuantizedWeight, x: Float32Array, options: FlexRoundLayerOptions = {}): Promise<FlexRoundLayerResult> {
  const started = performance.now();
  const iters = options.iters ?? 500;
  const rows = x.length / q.k;
  const zero = zeroDeltas(q);
  const from = options.from ?? w;
  if (iters <= 0 || rows === 0) return { weight: bakeFlexRound(from, q, zero), lossBefore: NaN, lossAfter: NaN, kept: 'initial', seconds: (performance.now() - started) / 1000, setupSeconds: 0, stepSeconds: 0 };
  const learnGrid = options.learnGrid ?? true;
  const { model, names } = flexRoundObjective(q, learnGrid, from);
  const params = [
    ...(learnGrid ? [{ name: names.d1, dims: [q.n, q.groups], init: zero.d1 }] : []),
    { name: names.d2, dims: [q.n, q.groups * q.blockSize], init: zero.d2 },
    { name: names.d3, dims: [q.n], init: zero.d3 },
  ];
  const optimizer: OptimizerOptions = { kind: 'adam', lr: options.lr ?? 3e-3, schedule: 'cosine' };
  if (options.floatInputs && options.floatInputs.length !== x.length) throw new Error(`flexRoundLayer: ${options.floatInputs.length / q.k} float input rows for ${rows} quantized ones`);
  const target = await floatOutputs(w, q.n, q.k, options.floatInputs ?? x, options.threads);
  const trainer = await Trainer.create({ model, loss: LOSS, params, optimizer, steps: iters, threads: options.threads });
  const setupSeconds = (performance.now() - started) / 1000;
  try {
    const batch = Math.min(options.batch ?? 256, rows);
    const rowsOf = (idx: number[]): Record<string, ArrayTensor> => {
      const data = new Float32Array(idx.length * q.k);
      const t = new Float32Array(idx.length * q.n);
      idx.forEach((r, i) => {
        data.set(x.subarray(r * q.k, (r + 1) * q.k), i * q.k);
        t.set(target.subarray(r * q.n, (r + 1) * q.n), i * q.n);
      });
      return { [X]: { dtype: DataType.FLOAT, dims: [idx.length, q.k], data }, [TARGET]: { dtype: DataType.FLOAT, dims: [idx.length, q.n], data: t } };
    };
    const all: Record<string, ArrayTensor> = { [X]: { dtype: DataType.FLOAT, dims: [rows, q.k], data: x }, [TARGET]: { dtype: DataType.FLOAT, dims: [rows, q.n], data: target } };
    const initial = new Map(params.map((p) => [p.name, p.init]));
    const lossBefore = await trainer.evaluate(all, initial);
    const rng = new Random(options.seed ?? 0);
    let order: number[] = [];
    let at = 0;
    const next = (): Record<string, ArrayTensor> => {
      if (at + batch > order.length) {
        order = rng.shuffle(Array.from({ length: rows }, (_, r) => r));
        at = 0;
      }
      at += batch;
      return rowsOf(order.slice(at - batch, at));
    };
    const stepsStarted = performance.now();
    await trainInChunks(trainer, iters, next, () => {}, options.signal);
    const stepSeconds = (performance.now() - stepsStarted) / 1000;
    const learned = trainer.parameters();
    const lossAfter = await trainer.evaluate(all, learned);
    const better = lossAfter < lossBefore * (1 - (options.minGain ?? 0));
    const d: FlexRoundDeltas = better ? { d1: learned.get(names.d1) ?? zero.d1, d2: learned.get(names.d2)!, d3: learned.get(names.d3)! } : zero;
    return { weight: bakeFlexRound(from, q, d), lossBefore, lossAfter, kept: better ? 'learned' : 'initial', seconds: (performance.now() - started) / 1000, setupSeconds, stepSeconds };
  } finally {
    await trainer.release();
  }
}
