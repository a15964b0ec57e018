import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import { Session } from '../runtime/session.js';

/** How a weight is put on an integer grid. */
export interface WeightQuantSpec {
  bits: number;
  symmetric: boolean;
  /** Input features sharing one scale; `0` means one scale per output channel (all inputs). */
  blockSize: number;
  /**
   * 'minmax': the grid spans each group's range (round to nearest). 'mse': the range is shrunk
   * by the factor (1, 0.99, ..., 0.80) that minimises the group's squared rounding error.
   */
  search: 'minmax' | 'mse';
}

/**
 * A quantized weight in output-channel-major layout: `n` rows (output channels), each split
 * into `groups` groups of `blockSize` input features (the last group zero-padded when the
 * input size is not a multiple). Levels are signed for symmetric grids ([-2^(b-1), 2^(b-1)-1])
 * and unsigned ([0, 2^b-1]) with a zero point for asymmetric ones.
 */
export interface QuantizedWeight {
  n: number;
  k: number;
  groups: number;
  blockSize: number;
  bits: number;
  symmetric: boolean;
  /** [n, groups * blockSize] levels: Int8Array for symmetric grids, Uint8Array for asymmetric ones (newLevels). */
  levels: Levels;
  /** [n, groups]. */
  scales: Float32Array;
  /** [n, groups]; all zero for symmetric grids. */
  zeroPoints: Int32Array;
}

/**
 * Integer levels of at most 8 bits, one byte each: signed for symmetric grids ([-2^(b-1),
 * 2^(b-1)-1]), unsigned for asymmetric ones ([0, 2^b-1]). A byte rather than an Int32 per weight
 * keeps the levels of all layers, held until the graph is rewritten, at a quarter of the float
 * model's size instead of all of it.
 */
export type Levels = Int8Array | Uint8Array;

/** Zeroed levels of the kind a grid takes. */
export function newLevels(length: number, symmetric: boolean): Levels {
  return symmetric ? new Int8Array(length) : new Uint8Array(length);
}

/** Range factors the 'mse' search tries, largest first (a tie keeps the larger range). */
export const MSE_RATIOS = Array.from({ length: 21 }, (_, i) => 1 - i * 0.01);
/**
 * Bound on the temporary [ratios, rows, k] tensors onnxruntime allocates for one chunk. The
 * session's arena keeps the largest chunk's temporaries for the whole run: at 2^24 elements
 * that was about 500 MB of resident memory, at 2^22 about 130 MB, and no slower.
 */
const CHUNK_ELEMENTS = 1 << 22;

const sessions = new Map<string, Promise<Session>>();

/** The grid search as an ONNX graph (one per spec), so the arithmetic runs in onnxruntime. */
function quantizerSession(spec: WeightQuantSpec): Promise<Session> {
  const key = `${spec.bits}/${spec.symmetric}/${spec.search}`;
  let s = sessions.get(key);
  if (!s) {
    s = Session.create(quantizerGraph(spec));
    sessions.set(key, s);
  }
  return s;
}

function quantizerGraph(spec: WeightQuantSpec): Model {
  const g = new Graph('weight_quantizer');
  const W = g.addInput('W', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'g', 'b'] });
  const ratios = spec.search === 'mse' ? MSE_RATIOS : [1];
  const c = (name: string, dims: number[], values: number[], dtype = DataType.FLOAT): Value => g.addInitializer(Tensor.from(name, dtype, dims, values));
  const op = (type: string, inputs: Value[], attrs: Record<string, number | number[]> = {}): Value => {
    const attributes = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, Array.isArray(v) ? { type: 'ints' as const, value: v } : { type: 'int' as const, value: v }]));
    return g.addNode(type, inputs, 1, { attributes }).output(0);
  };
  const levels = 2 ** spec.bits;
  const qmin = spec.symmetric ? -(levels / 2) : 0;
  const qmax = spec.symmetric ? levels / 2 - 1 : levels - 1;
  const R = c('ratios', [ratios.length, 1, 1, 1], ratios);
  const eps = c('eps', [], [1e-12]);
  const lo = c('qmin', [], [qmin]);
  const hi = c('qmax', [], [qmax]);
  const lastAxis = c('axes_b', [1], [3], DataType.INT64);
  let scale: Value; // [R, n, g, 1]
  let zp: Value; // [R, n, g, 1] (float, integral)
  if (spec.symmetric) {
    const absmax = op('ReduceMax', [op('Abs', [W])], { axes: [2], keepdims: 1 });
    scale = op('Max', [op('Div', [op('Mul', [absmax, R]), c('qmax_f', [], [qmax])]), eps]);
    zp = c('zero', [], [0]);
  } else {
    // the grid must hold 0 exactly, so the range always includes it
    const zero = c('zero', [], [0]);
    const mn = op('Mul', [op('Min', [op('ReduceMin', [W], { axes: [2], keepdims: 1 }), zero]), R]);
    const mx = op('Mul', [op('Max', [op('ReduceMax', [W], { axes: [2], keepdims: 1 }), zero]), R]);
    scale = op('Max', [op('Div', [op('Sub', [mx, mn]), c('steps', [], [levels - 1])]), eps]);
    zp = op('Clip', [op('Round', [op('Neg', [op('Div', [mn, scale])])]), lo, hi]);
  }
  const q = op('Clip', [op('Add', [op('Round', [op('Div', [W, scale])]), zp]), lo, hi]); // [R,n,g,b]
  const err = op('ReduceSum', [op('Pow', [op('Sub', [op('Mul', [op('Sub', [q, zp]), scale]), W]), c('two', [], [2])]), lastAxis], { keepdims: 0 }); // [R,n,g]
  const best = op('ArgMin', [err], { axis: 0, keepdims: 1 }); // [1,n,g]
  const pick = (v: Value): Value => {
    // v is [R,n,g] (or broadcastable to it): take the best ratio of each group
    const full = op('Expand', [v, op('Shape', [err])]);
    return op('GatherElements', [full, best], { axis: 0 }); // [1,n,g]
  };
  const scaleBest = pick(op('Squeeze', [scale, c('axes_s', [1], [3], DataType.INT64)]));
  const zpBest = spec.symmetric ? c('zp0', [1, 1, 1], [0]) : pick(op('Squeeze', [zp, c('axes_z', [1], [3], DataType.INT64)]));
  const s4 = op('Unsqueeze', [op('Squeeze', [scaleBest, c('axes_0', [1], [0], DataType.INT64)]), c('axes_u', [1], [2], DataType.INT64)]); // [n,g,1]
  const z4 = op('Unsqueeze', [op('Squeeze', [op('Expand', [zpBest, op('Shape', [scaleBest])]), c('axes_0b', [1], [0], DataType.INT64)]), c('axes_ub', [1], [2], DataType.INT64)]);
  const qBest = op('Cast', [op('Clip', [op('Add', [op('Round', [op('Div', [W, s4])]), z4]), lo, hi])], { to: DataType.INT32 });
  g.outputs.push(qBest, op('Squeeze', [s4, c('axes_2', [1], [2], DataType.INT64)]), op('Cast', [op('Squeeze', [z4, c('axes_2b', [1], [2], DataType.INT64)])], { to: DataType.INT32 }));
  g.renameValue(g.outputs[0]!, 'levels');
  g.renameValue(g.outputs[1]!, 'scales');
  g.renameValue(g.outputs[2]!, 'zero_points');
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/**
 * Quantizes a weight given in [out, in] layout (`wT`, row-major, `n` x `k`). The grid search
 * runs in onnxruntime, a chunk of output channels at a time so memory stays bounded.
 */
export async function quantizeWeight(wT: Float32Array, n: number, k: number, spec: WeightQuantSpec): Promise<QuantizedWeight> {
  const blockSize = spec.blockSize > 0 ? spec.blockSize : k;
  const groups = Math.ceil(k / blockSize);
  const padded = groups * blockSize;
  const session = await quantizerSession(spec);
  const ratios = spec.search === 'mse' ? MSE_RATIOS.length : 1;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / (ratios * padded)));
  const levels = newLevels(n * padded, spec.symmetric);
  const scales = new Float32Array(n * groups);
  const zeroPoints = new Int32Array(n * groups);
  for (let r0 = 0; r0 < n; r0 += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, n - r0);
    let data: Float32Array;
    if (padded === k) {
      data = wT.subarray(r0 * k, (r0 + rows) * k);
    } else {
      data = new Float32Array(rows * padded);
      for (let r = 0; r < rows; r++) data.set(wT.subarray((r0 + r) * k, (r0 + r + 1) * k), r * padded);
    }
    const out = await session.run({ W: { dtype: DataType.FLOAT, dims: [rows, groups, blockSize], data: Float32Array.from(data) } });
    levels.set(out.levels!.data as Int32Array, r0 * padded);
    scales.set(out.scales!.data as Float32Array, r0 * groups);
    zeroPoints.set(out.zero_points!.data as Int32Array, r0 * groups);
  }
  return { n, k, groups, blockSize, bits: spec.bits, symmetric: spec.symmetric, levels, scales, zeroPoints };
}

/** The weight the quantized one stands for, in [out, in] layout (for checks and error figures). */
export function dequantizeWeight(q: QuantizedWeight): Float32Array {
  const out = new Float32Array(q.n * q.k);
  const padded = q.groups * q.blockSize;
  for (let r = 0; r < q.n; r++) {
    for (let i = 0; i < q.k; i++) {
      const gi = r * q.groups + Math.floor(i / q.blockSize);
      out[r * q.k + i] = (q.levels[r * padded + i]! - q.zeroPoints[gi]!) * q.scales[gi]!;
    }
  }
  return out;
}
