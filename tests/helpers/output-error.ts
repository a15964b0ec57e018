/** Reference for GPTQ tests: ‖X Wᵀ − X Ŵᵀ‖² for W, Ŵ in [n, k] and X in [m, k], in float64. */
export function outputError(x: Float64Array, m: number, k: number, w: Float32Array, wq: Float32Array, n: number): number {
  let e = 0;
  for (let a = 0; a < m; a++) {
    for (let r = 0; r < n; r++) {
      let d = 0;
      for (let i = 0; i < k; i++) d += x[a * k + i]! * (w[r * k + i]! - wq[r * k + i]!);
      e += d * d;
    }
  }
  return e;
}
