// The range search of weight-quantizer.ts for one group of input columns, in JavaScript: GPTQ
// with dynamic groups fits a group's grid when it reaches the group's first column, on the
// weights as its error feedback has left them (the float64 working copy), many times per layer,
// so a session run per group is not worth it. Same candidates and tie rule as the onnxruntime
// graph (MSE_RATIOS, the first minimum); the arithmetic is float64 with the scale rounded to
// float32 as it is stored.
import { MSE_RATIOS, type WeightQuantSpec } from './weight-quantizer.js';

/**
 * Scales and zero points of `n` rows of one group: `values` holds `width` columns of each row
 * (row-major, [n, width]). Columns padded past the weight's end are left out: they are zeros,
 * which every grid holds exactly, so they add no error and do not change the range.
 */
export function fitGroupGrids(values: Float64Array, n: number, width: number, spec: Pick<WeightQuantSpec, 'bits' | 'symmetric' | 'search'>): { scales: Float32Array; zeroPoints: Int32Array } {
  const levels = 2 ** spec.bits;
  const qmin = spec.symmetric ? -(levels / 2) : 0;
  const qmax = spec.symmetric ? levels / 2 - 1 : levels - 1;
  const ratios = spec.search === 'mse' ? MSE_RATIOS : [1];
  const scales = new Float32Array(n);
  const zeroPoints = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const row = values.subarray(r * width, (r + 1) * width);
    let lo = 0;
    let hi = 0;
    for (const v of row) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    let bestErr = Infinity;
    for (const ratio of ratios) {
      let s: number;
      let z = 0;
      if (spec.symmetric) {
        s = Math.fround(Math.max((Math.max(-lo, hi) * ratio) / qmax, 1e-12));
      } else {
        const mn = lo * ratio;
        s = Math.fround(Math.max((hi * ratio - mn) / (levels - 1), 1e-12));
        z = Math.min(qmax, Math.max(qmin, Math.round(-mn / s)));
      }
      let err = 0;
      for (const v of row) {
        const d = (Math.min(qmax, Math.max(qmin, Math.round(v / s) + z)) - z) * s - v;
        err += d * d;
      }
      if (err < bestErr) {
        bestErr = err;
        scales[r] = s;
        zeroPoints[r] = z;
      }
    }
  }
  return { scales, zeroPoints };
}
