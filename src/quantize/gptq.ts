import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import { defaultSegmentBytes, planSegments, runBlockwise } from '../runtime/block-runner.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { traceMemory } from '../runtime/memory-trace.js';
import { choleskyJs, invertLowerJs, upperCholeskyOfReversed } from './cholesky.js';
import { f64, float64Session, transposed } from './float64-graph.js';
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
  traceMemory(`Gram matrices of ${tensors.length} input(s) accumulated`);
  return out;
}

/**
 * Gram matrices handed out one at a time, computed a segment of the graph at a time
 * (runtime/block-runner.ts): only one segment's weights are in a session, and only the Gram
 * matrices of the inputs of the segment being consumed are held (BERT-base: about 90 MB at a
 * time instead of 1.07 GB for all 48 inputs; a 1B Llama: 0.36 GB a layer instead of 7.8 GB).
 * `take` the matrices in the model's order (the same one again is fine); those of a segment are
 * forgotten once one of a later segment is taken.
 */
export interface GramStream {
  take(name: string): Promise<Float64Array>;
  /** Stops early (the sessions of the segment in progress are released). */
  close(): Promise<void>;
}

/**
 * The same sums as inputGrams (which holds a session over the whole model and all matrices),
 * streamed segment by segment. Graphs the block runner does not cut (with If/Loop subgraphs)
 * fall back to inputGrams.
 */
export async function inputGramsBlockwise(model: Model, data: Dataset, tensors: { name: string; k: number }[], options: { batchSize?: number; threads?: number; signal?: AbortSignal; samples?: number; maxSegmentBytes?: number } = {}): Promise<GramStream> {
  const plan = planSegments(model, tensors.map((t) => t.name), options.maxSegmentBytes ?? defaultSegmentBytes(model));
  if (!plan) {
    const all = await inputGrams(model, data, tensors, options);
    return { take: async (name) => all.get(name) ?? Promise.reject(new Error(`no Gram matrix for '${name}'`)), close: async () => {} };
  }
  const feeds: Record<string, ArrayTensor>[] = [];
  let seen = 0;
  for (const batch of batches(bindDataset(data, model), options.batchSize ?? 8)) {
    if (options.samples !== undefined && seen >= options.samples) break;
    feeds.push(batch.feeds);
    seen += batch.count;
  }
  const k = new Map(tensors.map((t) => [t.name, t.k]));
  const ready = new Map<string, Float64Array>();
  const partial = new Map<string, Float64Array>();
  const runs = runBlockwise(model, feeds, tensors.map((t) => t.name), { maxSegmentBytes: options.maxSegmentBytes, threads: options.threads, signal: options.signal });
  const gram = await Session.create(gramGraph());
  let done = false;
  const finish = async (): Promise<void> => {
    if (done) return;
    done = true;
    await runs.return(undefined);
    await gram.release();
  };
  return {
    async take(name) {
      // asked in the model's order: a name not ready is in a later segment, and the matrices
      // of the earlier one are done with before the next segment's are summed (BERT-base: the
      // ~230 MiB of one segment's were held while the next segment's were accumulated)
      if (!ready.has(name)) ready.clear();
      while (!ready.has(name)) {
        const next = done ? undefined : await runs.next();
        if (!next || next.done) {
          await finish();
          throw new Error(`Gram matrix of '${name}' was asked for after a later segment's (take them in the model's order), or it is not one of the tensors given`);
        }
        const r = next.value;
        for (const [n, a] of Object.entries(r.tensors)) {
          const kk = k.get(n)!;
          const x = a.data as Float32Array;
          const g = (await gram.run({ X: { dtype: DataType.FLOAT, dims: [x.length / kk, kk], data: x } })).G!.data as Float32Array;
          let acc = partial.get(n);
          if (!acc) partial.set(n, (acc = new Float64Array(kk * kk)));
          for (let i = 0; i < g.length; i++) acc[i] += g[i]!;
        }
        if (r.lastOfSegment) {
          for (const n of Object.keys(r.tensors)) {
            ready.set(n, partial.get(n)!);
            partial.delete(n);
          }
          traceMemory(`Gram matrices of segment ${r.segment + 1}/${r.segments} accumulated`);
        }
      }
      return ready.get(name)!;
    },
    close: finish,
  };
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

/** Columns quantized together before the rest of the weight is updated in one product. */
const LAZY_BLOCK = 128;
/** Below this many inputs the whole algorithm stays in JavaScript (no session overhead). */
const SMALL_K = 256;

let updateSession: Promise<Session> | undefined;

/** Wtail − Aᵀ·E in onnxruntime (float64): the lazy-batch update of the columns not yet quantized. */
async function trailingUpdate(wTail: Float64Array, a: Float64Array, e: Float64Array, m: number, b: number, n: number): Promise<Float64Array> {
  updateSession ??= float64Session('gptq_update', ['W', 'A', 'E'], (g, [w, at, e]) => [g.addNode('Sub', [w!, g.addNode('MatMul', [transposed(g, at!), e!], 1).output(0)], ['Wout']).output(0)]);
  const r = await (await updateSession).run({ W: f64(wTail, m, n), A: f64(a, b, m), E: f64(e, b, n) });
  return r.Wout!.data as Float64Array;
}

/**
 * GPTQ (Frantar et al. 2023) on fixed grids: the weight's scales and zero points stay those of
 * `q` (fitted on this weight), the levels are chosen one input column at a time, each
 * column's rounding error being spread over the columns not yet quantized through the inverse
 * Gram matrix of the layer's inputs (H = XᵀX + λI, λ = `damp` · mean diag). `w` is [n, k] (rows
 * = output channels). With `actOrder`, columns go by descending diag(H) (the grids stay those
 * fitted in the original order: "static groups"). Returns a weight with the same grids and new
 * levels. For wide layers the factor of H⁻¹ (`upperCholeskyOfInverse`) and the lazy-batch updates
 * (blocks of 128 columns) run their products in onnxruntime in float64; small layers stay in
 * JavaScript.
 */
export async function gptqLevelsAsync(w: Float32Array, q: QuantizedWeight, gram: Float64Array, damp = 0.01, actOrder = false): Promise<QuantizedWeight> {
  if (q.k <= SMALL_K) return gptqLevels(w, q, gram, damp, actOrder);
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const { diagonal, dead, perm } = dampedDiagonal(gram, k, damp, actOrder);
  // U: upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), row-major, from J H J (H damped and in GPTQ's
  // column order, its elements reversed) built straight from the Gram matrix: the only k×k
  // matrices made are that one and U (prepare's copies, kept for the JavaScript path, were three
  // more, 72 MiB each for a 3072-wide layer)
  const U = await upperCholeskyOfReversed({ a: reversedHessian(gram, k, diagonal, perm) }, k);
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
  const err = new Float64Array(n);
  for (let i1 = 0; i1 < k; i1 += LAZY_BLOCK) {
    const i2 = Math.min(k, i1 + LAZY_BLOCK);
    const b = i2 - i1;
    const E = new Float64Array(b * n);
    for (let i = i1; i < i2; i++) {
      const d = U[i * k + i]!;
      const col = perm[i]!;
      const gi = Math.floor(col / blockSize);
      for (let r = 0; r < n; r++) {
        const s = q.scales[r * groups + gi]!;
        const z = q.zeroPoints[r * groups + gi]!;
        const x = Wt[i * n + r]!;
        const level = Math.min(qmax, Math.max(qmin, Math.round(x / s) + z));
        levels[r * padded + col] = level;
        err[r] = (x - (level - z) * s) / d;
      }
      E.set(err, (i - i1) * n);
      for (let j = i + 1; j < i2; j++) {
        const u = U[i * k + j]!;
        if (u === 0) continue;
        const base = j * n;
        for (let r = 0; r < n; r++) Wt[base + r] -= err[r]! * u;
      }
    }
    if (i2 < k) {
      const m = k - i2;
      const A = new Float64Array(b * m);
      for (let i = i1; i < i2; i++) A.set(U.subarray(i * k + i2, (i + 1) * k), (i - i1) * m);
      // in place: a fresh k x n copy per block of 128 columns was ~450 MB of garbage for a 3072-wide layer
      Wt.set(await trailingUpdate(Wt.subarray(i2 * n), A, E, m, b, n), i2 * n);
    }
  }
  return { ...q, levels };
}

/**
 * H's diagonal once damped (H = XᵀX + λI, λ = `damp` · mean diag; an input that is always zero
 * gets 1 there and its weights are zeroed: `dead`), and GPTQ's column order. The same numbers
 * as `prepare`'s, without copying the k×k matrix.
 */
function dampedDiagonal(gram: Float64Array, k: number, damp: number, actOrder: boolean): { diagonal: Float64Array; dead: Uint8Array; perm: number[] } {
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

/** J H J: the damped H in GPTQ's column order (`perm`), its row-major elements reversed. */
function reversedHessian(gram: Float64Array, k: number, diagonal: Float64Array, perm: readonly number[]): Float64Array {
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    const pi = perm[k - 1 - i]!;
    for (let j = 0; j < k; j++) {
      const pj = perm[k - 1 - j]!;
      out[i * k + j] = pi === pj ? diagonal[pi]! : gram[pi * k + pj]!;
    }
  }
  return out;
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
export function gptqLevels(w: Float32Array, q: QuantizedWeight, gram: Float64Array, damp = 0.01, actOrder = false): QuantizedWeight {
  const { n, k, groups, blockSize } = q;
  const padded = groups * blockSize;
  const { h, W, perm } = prepare(w, q, gram, damp, actOrder);
  // upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU): the transpose of the lower factor
  const lower = choleskyJs(spdInverse(h, k), k);
  const U = (i: number, j: number): number => lower[j * k + i]!;
  const qmin = q.symmetric ? -(2 ** (q.bits - 1)) : 0;
  const qmax = q.symmetric ? 2 ** (q.bits - 1) - 1 : 2 ** q.bits - 1;
  const levels = q.levels.slice();
  for (let i = 0; i < k; i++) {
    const d = U(i, i);
    const col = perm[i]!;
    const gi = Math.floor(col / blockSize);
    for (let r = 0; r < n; r++) {
      const s = q.scales[r * groups + gi]!;
      const z = q.zeroPoints[r * groups + gi]!;
      const x = W[r * k + i]!;
      const level = Math.min(qmax, Math.max(qmin, Math.round(x / s) + z));
      levels[r * padded + col] = level;
      const err = (x - (level - z) * s) / d;
      for (let j = i + 1; j < k; j++) W[r * k + j] -= err * U(i, j);
    }
  }
  return { ...q, levels };
}
