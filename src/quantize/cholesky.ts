// Cholesky factor and its inverse for dense float64 matrices (row-major k×k), for GPTQ's
// inverse Hessian. A recursive 2×2 block algorithm: the two diagonal halves recurse, and the
// O(k³) work of each level (the off-diagonal blocks and the Schur complement) is matrix products
// run by onnxruntime in float64. Blocks of at most `base` rows are done in JavaScript, where
// products are too small to pay for a session run. (As one JavaScript loop, the Cholesky factor
// of a 3072×3072 matrix took 6.6 s, and onnxruntime's general Inverse of it 5.1 s.)
import { collectGarbage } from '../runtime/collect-garbage.js';
import type { Session } from '../runtime/session.js';
import { f64, float64Session, transposed } from './float64-graph.js';

/** From this many rows on, garbage is collected between the steps of inverseCholeskyFactor. */
const COLLECT_K = 2048;

/** Blocks up to this many rows are factored and inverted in JavaScript. */
export const JS_BLOCK = 256;

/** Lower Cholesky factor L (A = L Lᵀ) of a symmetric positive definite k×k matrix, in JavaScript. */
export function choleskyJs(a: InputMatrix, k: number): Float64Array {
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

/** Inverse of a lower triangular k×k matrix (lower triangular too), in JavaScript. */
export function invertLowerJs(l: Float64Array, k: number): Float64Array {
  const x = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    x[i * k + i] = 1 / l[i * k + i]!;
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let p = j; p < i; p++) s -= l[i * k + p]! * x[p * k + j]!;
      x[i * k + j] = s / l[i * k + i]!;
    }
  }
  return x;
}

/** Rows [r0, r1) and columns [c0, c1) of a row-major matrix with `k` columns. */
function block(a: InputMatrix, k: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * k + c0, r * k + c1), (r - r0) * w);
  return out;
}

/** Writes `b` (`rows` rows) into `a` (k columns) from row r0, column c0. */
function place(a: Float64Array, k: number, b: Float64Array, rows: number, r0: number, c0: number): void {
  const w = b.length / rows;
  for (let r = 0; r < rows; r++) a.set(b.subarray(r * w, (r + 1) * w), (r0 + r) * k + c0);
}

let schurSession: Promise<Session> | undefined;
let offDiagonalInverseSession: Promise<Session> | undefined;

/** L21 = A21 · inv(L11)ᵀ and the Schur complement A22 − L21 · L21ᵀ. */
async function schur(a21: Float64Array, x11: Float64Array, a22: Float64Array, m: number, h: number): Promise<{ l21: Float64Array; s: Float64Array }> {
  schurSession ??= float64Session('cholesky_schur', ['A21', 'X11', 'A22'], (g, [a, x, c]) => {
    const l21 = g.addNode('MatMul', [a!, transposed(g, x!)], ['L21']).output(0);
    const s = g.addNode('Sub', [c!, g.addNode('MatMul', [l21, transposed(g, l21)], 1).output(0)], ['S']).output(0);
    return [l21, s];
  });
  const r = await (await schurSession).run({ A21: f64(a21, m, h), X11: f64(x11, h, h), A22: f64(a22, m, m) });
  return { l21: r.L21!.data as Float64Array, s: r.S!.data as Float64Array };
}

/** The lower-left block of inv([L11 0; L21 L22]): −inv(L22) · L21 · inv(L11). */
async function offDiagonalInverse(x22: Float64Array, l21: Float64Array, x11: Float64Array, m: number, h: number): Promise<Float64Array> {
  offDiagonalInverseSession ??= float64Session('cholesky_inverse_block', ['X22', 'L21', 'X11'], (g, [x22v, l, x11v]) => {
    const p = g.addNode('MatMul', [g.addNode('MatMul', [x22v!, l!], 1).output(0), x11v!], 1).output(0);
    return [g.addNode('Neg', [p], ['X21']).output(0)];
  });
  const r = await (await offDiagonalInverseSession).run({ X22: f64(x22, m, m), L21: f64(l21, m, h), X11: f64(x11, h, h) });
  return r.X21!.data as Float64Array;
}

/**
 * Lower Cholesky factor L (A = L Lᵀ) of a symmetric positive definite k×k matrix, and inv(L).
 * Splits at about half the rows: L11 and its inverse recursively, then L21 and the
 * Schur complement in onnxruntime, L22 and its inverse recursively, then the inverse's lower-left
 * block in onnxruntime. Throws 'matrix is not positive definite' like the JavaScript factor.
 */
export async function choleskyWithInverse(a: Float64Array, k: number, base = JS_BLOCK): Promise<{ l: Float64Array; inv: Float64Array }> {
  if (k <= base) {
    const l = choleskyJs(a, k);
    return { l, inv: invertLowerJs(l, k) };
  }
  // about half, a multiple of 64 where that is possible, so the products stay GEMM-friendly
  const h = k >= 128 ? Math.round(k / 128) * 64 : Math.ceil(k / 2);
  const m = k - h;
  const top = await choleskyWithInverse(block(a, k, 0, h, 0, h), h, base);
  const { l21, s } = await schur(block(a, k, h, k, 0, h), top.inv, block(a, k, h, k, h, k), m, h);
  const bottom = await choleskyWithInverse(s, m, base);
  const l = new Float64Array(k * k);
  place(l, k, top.l, h, 0, 0);
  place(l, k, l21, m, h, 0);
  place(l, k, bottom.l, m, h, h);
  const inv = new Float64Array(k * k);
  place(inv, k, top.inv, h, 0, 0);
  place(inv, k, await offDiagonalInverse(bottom.inv, l21, top.inv, m, h), m, h, 0);
  place(inv, k, bottom.inv, m, h, h);
  return { l, inv };
}

/**
 * A symmetric matrix given to the factor: float64, or float32 where it is a wide input's Gram
 * matrix summed in float32 (gptq.ts, WIDE_INPUT); its blocks are copied out in float64.
 */
export type InputMatrix = Float64Array | Float32Array;

/** A matrix handed over: the callee clears `a` once it has read it (see inverseCholeskyFactor). */
export interface Handed {
  a: InputMatrix | undefined;
}

function take<T extends InputMatrix>(h: { a: T | undefined }): T {
  const a = h.a!;
  h.a = undefined;
  return a;
}

/**
 * inv(L) for the lower Cholesky factor L of `input.a`: the same operations as
 * choleskyWithInverse's `inv`, without assembling L (GPTQ needs only the inverse). Memory: the
 * input is let go once its blocks are copied out, and each block once used, so a k×k input and
 * the k×k result are not held together with the intermediate blocks (a 3072-wide layer: 72 MiB
 * per k×k matrix). An async function keeps its locals while it awaits, used or not, hence the
 * holders cleared by hand.
 */
export async function inverseCholeskyFactor(input: Handed, k: number, base = JS_BLOCK): Promise<Float64Array> {
  if (k <= base) return invertLowerJs(choleskyJs(take(input), k), k);
  const h = k >= 128 ? Math.round(k / 128) * 64 : Math.ceil(k / 2);
  const m = k - h;
  const a11: Handed = { a: block(input.a!, k, 0, h, 0, h) };
  const a21: { a: Float64Array | undefined } = { a: block(input.a!, k, h, k, 0, h) };
  const a22: { a: Float64Array | undefined } = { a: block(input.a!, k, h, k, h, k) };
  input.a = undefined;
  // for wide matrices, what was let go is collected before more is made: V8 runs its collector
  // when external memory grows by its own measure, and the input (72 MiB for k = 3072) and each
  // level's blocks and products otherwise piled up as garbage until the factor was done
  const collect = k >= COLLECT_K ? collectGarbage : () => {};
  collect();
  const topInv = await inverseCholeskyFactor(a11, h, base);
  let schurred: { l21: Float64Array; s: Float64Array } | undefined = await schur(take(a21), topInv, take(a22), m, h);
  let l21: Float64Array | undefined = schurred.l21;
  const complement: Handed = { a: schurred.s };
  schurred = undefined;
  collect();
  const bottomInv = await inverseCholeskyFactor(complement, m, base);
  // the lower-left block before the result is made: L21 is not alive beside it (a 3072-wide
  // layer's peak here: the result and four 1536-square blocks, 144 MiB, now three)
  const lowerLeft = await offDiagonalInverse(bottomInv, l21, topInv, m, h);
  l21 = undefined;
  collect();
  const inv = new Float64Array(k * k);
  place(inv, k, topInv, h, 0, 0);
  place(inv, k, lowerLeft, m, h, 0);
  place(inv, k, bottomInv, m, h, h);
  return inv;
}

/**
 * The upper triangular U with inv(H) = Uᵀ U (the factor GPTQ walks), for a symmetric positive
 * definite H, without forming inv(H): with J the order-reversing permutation and M the lower
 * Cholesky factor of J H J, H = (J M J)(J M J)ᵀ with J M J upper, so inv(H) = Uᵀ U for
 * U = inv(J M J) = J inv(M) J, which is upper with a positive diagonal (the unique such factor).
 */
export async function upperCholeskyOfInverse(h: Float64Array, k: number, base = JS_BLOCK): Promise<Float64Array> {
  // J H J is H with its row-major elements in reverse order
  return upperCholeskyOfReversed({ a: h.slice().reverse() }, k, base);
}

/**
 * upperCholeskyOfInverse given J H J (`reversed.a`, taken over: see inverseCholeskyFactor).
 * J inv(M) J is inv(M) with its elements in reverse order, reversed in place: the only k×k
 * matrices alive at once are the input until its blocks are copied, and the result.
 */
export async function upperCholeskyOfReversed(reversed: Handed, k: number, base = JS_BLOCK): Promise<Float64Array> {
  return (await inverseCholeskyFactor(reversed, k, base)).reverse();
}
