/**
 * The quantization schemes:
 *  - w8a8:    static INT8. Weights int8 per output channel, symmetric; activations uint8 per
 *             tensor from calibration. Written as QDQ that onnxruntime fuses into integer
 *             MatMul kernels (QLinearMatMul / MatMulIntegerToFloat).
 *  - dynamic: INT8 weights; activations quantized at run time (DynamicQuantizeLinear +
 *             MatMulInteger, which onnxruntime fuses into DynamicQuantizeMatMul).
 *  - w8/w4/w3: weight-only, block-wise (MatMulNBits; 3-bit levels are stored in 4-bit slots,
 *             since onnxruntime's kernel takes 2, 4 or 8 bits).
 */
export const SCHEMES = ['w8a8', 'dynamic', 'w8', 'w4', 'w3'] as const;
export type Scheme = (typeof SCHEMES)[number];

export const CALIBRATION_METHODS = ['minmax', 'percentile', 'entropy', 'mse'] as const;
export type CalibrationMethod = (typeof CALIBRATION_METHODS)[number];

export interface QuantizeOptions {
  scheme: Scheme;
  /** Rounding method; 'rtn' (round to nearest) is the baseline. */
  method?: 'rtn';
  /** How activation ranges are found from calibration data (w8a8 only; default minmax). */
  calibMethod?: CalibrationMethod;
  /** Weight scales per output channel (default) or one per tensor (int8 schemes only). */
  perChannel?: boolean;
  /** Input features sharing a scale for weight-only schemes (default 32). */
  blockSize?: 16 | 32 | 64 | 128;
  /** Weight range search: full range, or the MSE-minimising shrink (default: mse for 3/4 bits). */
  weightSearch?: 'minmax' | 'mse';
  /** Layers kept in float: globs (`*.attn.*`) or /regex/ matched against layer and node names. */
  exclude?: string[];
  /** Quantize embedding tables (Gather of a constant) too (default true). */
  embeddings?: boolean;
  /** Calibration samples run to check the result (default 16). */
  verifySamples?: number;
  /** Samples per onnxruntime run during calibration. */
  batchSize?: number;
  /** Calibration cache folder (default .slimformer-cache or SLIMFORMER_CACHE_DIR); false: none. */
  cacheDir?: string | false;
}

export function weightBits(scheme: Scheme): number {
  return scheme === 'w4' ? 4 : scheme === 'w3' ? 3 : 8;
}

export function isWeightOnly(scheme: Scheme): boolean {
  return scheme === 'w8' || scheme === 'w4' || scheme === 'w3';
}
