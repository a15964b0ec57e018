import { describe, expect, it } from 'vitest';
import { Random } from '../../src/autodiff/random.js';
import { choleskyJs, choleskyWithInverse, inverseCholeskyFactor, invertLowerJs, upperCholeskyOfInverse } from '../../src/quantize/cholesky.js';

// A k×k symmetric positive definite matrix like GPTQ's H: the Gram matrix of correlated
// inputs, damped (condition number in the hundreds).
function gram(k: number, seed: number): Float64Array {
  const rng = new Random(seed);
  const m = 2 * k;
  const x = Float64Array.from({ length: m * k }, () => rng.normal());
  for (let a = 0; a < m; a++) for (let i = 1; i < k; i++) x[a * k + i] = 0.6 * x[a * k + i - 1]! + x[a * k + i]!;
  const h = new Float64Array(k * k);
  for (let a = 0; a < m; a++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) h[i * k + j] += (x[a * k + i]! * x[a * k + j]!) / m;
  for (let i = 0; i < k; i++) h[i * k + i] += 0.01;
  return h;
}

/** a · b for k×k row-major matrices, in plain JavaScript (the reference). */
function product(a: Float64Array, b: Float64Array, k: number, transposeA = false): Float64Array {
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let p = 0; p < k; p++) {
    const x = transposeA ? a[p * k + i]! : a[i * k + p]!;
    if (x === 0) continue;
    for (let j = 0; j < k; j++) out[i * k + j] += x * b[p * k + j]!;
  }
  return out;
}

const maxAbs = (a: Float64Array): number => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const maxDiff = (a: Float64Array, b: Float64Array): number => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const identity = (k: number): Float64Array => {
  const e = new Float64Array(k * k);
  for (let i = 0; i < k; i++) e[i * k + i] = 1;
  return e;
};

// Tolerances: float64 on matrices with condition numbers in the hundreds; the recursive and the
// plain JavaScript algorithms round differently, by about 1e-14 relative. 1e-10 leaves margin
// and still fails on any wrong block (errors of order 1).
const TOL = 1e-10;

describe('Cholesky factor and inverse with products in onnxruntime', () => {
  // 333 rows with 64-row JavaScript blocks: three levels of recursion, uneven splits
  const k = 333;
  const a = gram(k, 3);

  it('L is lower triangular, L Lᵀ = A, and L is the factor the plain JavaScript loop computes', async () => {
    const { l, inv } = await choleskyWithInverse(a, k, 64);
    for (let i = 0; i < k; i++) {
      expect(l[i * k + i]).toBeGreaterThan(0);
      for (let j = i + 1; j < k; j++) expect(l[i * k + j]).toBe(0);
    }
    const llt = product(l, transpose(l, k), k);
    expect(maxDiff(llt, a) / maxAbs(a)).toBeLessThan(TOL);
    expect(maxDiff(l, choleskyJs(a, k)) / maxAbs(l)).toBeLessThan(TOL);
    // inv is inv(L): L · inv = I, and lower triangular
    expect(maxDiff(product(l, inv, k), identity(k))).toBeLessThan(TOL);
    for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) expect(inv[i * k + j]).toBe(0);
  });

  it('inverseCholeskyFactor: the inv(L) of choleskyWithInverse, bit for bit, having let go of its input', async () => {
    const input = { a: a.slice() as Float64Array | undefined };
    const inv = await inverseCholeskyFactor(input, k, 64);
    expect(input.a).toBeUndefined();
    expect(inv).toEqual((await choleskyWithInverse(a, k, 64)).inv);
  });

  it('upperCholeskyOfInverse: U upper with inv(H) = Uᵀ U, the factor of inv(H) computed directly', async () => {
    const u = await upperCholeskyOfInverse(a, k, 64);
    for (let i = 0; i < k; i++) {
      expect(u[i * k + i]).toBeGreaterThan(0);
      for (let j = 0; j < i; j++) expect(u[i * k + j]).toBe(0);
    }
    // (Uᵀ U) H = I
    expect(maxDiff(product(product(u, u, k, true), a, k), identity(k))).toBeLessThan(1e-9);
    // reference: inv(H) = inv(L)ᵀ inv(L) from the plain JavaScript factor, then its own factor
    const x = invertLowerJs(choleskyJs(a, k), k);
    const hInv = product(x, x, k, true);
    const reference = transpose(choleskyJs(hInv, k), k);
    expect(maxDiff(u, reference) / maxAbs(reference)).toBeLessThan(TOL);
  });

  it('small matrices stay in JavaScript and agree with the recursive path', async () => {
    const small = gram(100, 5);
    const js = await choleskyWithInverse(small, 100);
    const recursive = await choleskyWithInverse(small, 100, 32);
    expect(maxDiff(js.l, recursive.l) / maxAbs(js.l)).toBeLessThan(TOL);
    expect(maxDiff(js.inv, recursive.inv) / maxAbs(js.inv)).toBeLessThan(TOL);
  });

  it('a matrix that is not positive definite is refused, also when it only shows in a Schur complement', async () => {
    const bad = identity(300);
    bad[299 * 300 + 299] = -1;
    await expect(choleskyWithInverse(bad, 300, 64)).rejects.toThrow('not positive definite');
    await expect(upperCholeskyOfInverse(bad, 300, 64)).rejects.toThrow('not positive definite');
  });
});

function transpose(a: Float64Array, k: number): Float64Array {
  const t = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) t[j * k + i] = a[i * k + j]!;
  return t;
}
