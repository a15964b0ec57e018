/**
 * Affine quantization parameters: q = clamp(round(x / scale) + zeroPoint, qmin, qmax) and
 * x ~ (q - zeroPoint) * scale. The convention of onnxruntime's quantizer (compute_scale_zp),
 * which the mse observer's search assumes:
 * - symmetric: signed, restricted range [-(2^(b-1) - 1), 2^(b-1) - 1], zero point 0,
 *   scale = max(|min|, |max|) / (2^(b-1) - 1);
 * - asymmetric: the range is widened to include 0, scale = (max - min) / (qmax - qmin) and the
 *   zero point is rounded half to even (unsigned [0, 2^b - 1] by default).
 */
export interface QuantParams {
  scale: number;
  zeroPoint: number;
  qmin: number;
  qmax: number;
}

export function quantParams(min: number, max: number, options: { bits?: number; symmetric: boolean; signed?: boolean }): QuantParams {
  const bits = options.bits ?? 8;
  if (options.symmetric) {
    const qmax = 2 ** (bits - 1) - 1;
    const t = Math.max(Math.abs(min), Math.abs(max));
    return { scale: t > 0 ? t / qmax : 1, zeroPoint: 0, qmin: -qmax, qmax };
  }
  const signed = options.signed ?? false;
  const qmin = signed ? -(2 ** (bits - 1)) : 0;
  const qmax = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  if (hi === lo) return { scale: 1, zeroPoint: signed ? 0 : qmin, qmin, qmax };
  const scale = (hi - lo) / (qmax - qmin);
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfEven(qmin - lo / scale)));
  return { scale, zeroPoint, qmin, qmax };
}

/** Rounds to the nearest integer, ties to even (numpy's and onnxruntime's rounding). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
