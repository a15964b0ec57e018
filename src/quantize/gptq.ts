import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import type { QuantizedWeight } from './weight-quantizer.js';

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
        const r = await gram.run({ X: { dtype: DataType.FLOAT, dims: [x.length / t.k, t.k], data: x } });
        const g = r.G!.data as Float32Array;
        const acc = out.get(t.name)!;
        for (let i = 0; i < g.length; i++) acc[i] += g[i]!;
      }
      seen += batch.count;
    }
  } finally {
    await session.release();
    await gram.release();
  }
  return out;
}

function gramGraph(): Model {
  const g = new Graph('gram');
  const x = g.addInput('X', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', 'k'] });
  const xt = g.addNode('Transpose', [x], 1, { attributes: { perm: { type: 'ints', value: [1, 0] } } }).output(0);
  const y = g.addNode('MatMul', [xt, x], ['G']).output(0);
  g.outputs.push(y);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/** Lower Cholesky factor of a symmetric positive definite k×k matrix (row-major), in place copy. */
function cholesky(a: Float64Array, k: number): Float64Array {
  const l = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * k + j]!;
      for (let p = 0; p < j; p++) s -= l[i * k + p]! * l[j * k + p]!;
      if (i === j) {
        if (!(s > 0)) throw new Error('matrix is not positive definite');
        l[i * k + i] = Math.sqrt(s);
      } else l[i * k + j] = s / l[j * k + j]!;
    }
  }
  return l;
}

/** Inverse of a symmetric positive definite matrix from its Cholesky factor. */
function spdInverse(a: Float64Array, k: number): Float64Array {
  const l = cholesky(a, k);
  // inv(L) (lower), then inv(A) = inv(L)ᵀ inv(L)
  const li = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    li[i * k + i] = 1 / l[i * k + i]!;
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let p = j; p < i; p++) s -= l[i * k + p]! * li[p * k + j]!;
      li[i * k + j] = s / l[i * k + i]!;
    }
  }
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
 * GPTQ (Frantar et al. 2023) on fixed grids: the weight's scales and zero points stay those of
 * `q` (fitted on this weight), the levels are chosen one input column at a time, each
 * column's rounding error being spread over the columns not yet quantized through the inverse
 * Gram matrix of the layer's inputs (H = XᵀX + λI, λ = `damp` · mean diag). `w` is [n, k] (rows
 * = output channels). Returns a weight with the same grids and new levels.
 */
export function gptqLevels(w: Float32Array, q: QuantizedWeight, gram: Float64Array, damp = 0.01): QuantizedWeight {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const h = Float64Array.from(gram);
  const W = Float64Array.from(w);
  let mean = 0;
  for (let i = 0; i < k; i++) mean += h[i * k + i]! / k;
  for (let i = 0; i < k; i++) {
    if (h[i * k + i] === 0) {
      // an input that is always zero: its weights do not matter
      h[i * k + i] = 1;
      for (let r = 0; r < n; r++) W[r * k + i] = 0;
    }
    h[i * k + i] += damp * (mean > 0 ? mean : 1);
  }
  // upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU): the transpose of the lower factor
  const lower = cholesky(spdInverse(h, k), k);
  const U = (i: number, j: number): number => lower[j * k + i]!;
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const levels = Int32Array.from(q.levels);
  for (let i = 0; i < k; i++) {
    const d = U(i, i);
    const gi = Math.floor(i / blockSize);
    for (let r = 0; r < n; r++) {
      const s = q.scales[r * groups + gi]!;
      const z = q.zeroPoints[r * groups + gi]!;
      const x = W[r * k + i]!;
      const level = Math.min(qmax, Math.max(qmin, Math.round(x / s) + z));
      levels[r * padded + i] = level;
      const err = (x - (level - z) * s) / d;
      for (let j = i + 1; j < k; j++) W[r * k + j] -= err * U(i, j);
    }
  }
  return { ...q, levels };
}
