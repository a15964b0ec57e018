import { UserError } from '../errors.js';

/**
 * The quantization schemes:
 *  - w8a8:    static INT8. Weights int8 per output channel, symmetric; activations uint8 per
 *             tensor from calibration. Written as QDQ that onnxruntime fuses into integer
 *             MatMul kernels (QLinearMatMul / MatMulIntegerToFloat).
 *  - dynamic: INT8 weights; activations quantized at run time (DynamicQuantizeLinear +
 *             MatMulInteger, which onnxruntime fuses into DynamicQuantizeMatMul).
 *  - w6a6/w4a4: static low-bit (simulated): weights per output channel on a 6/4-bit grid
 *             (stored int8), activations per tensor on a 6/4-bit grid (uint8 storage, a Clip
 *             between QuantizeLinear and DequantizeLinear keeps the codes in [0, 2^b - 1]).
 *             onnxruntime has no 6/4-bit activation kernels: these schemes measure accuracy.
 *  - w8/w4/w3/w2: weight-only, block-wise (MatMulNBits; 3-bit levels are stored in 4-bit
 *             slots, since onnxruntime's kernel takes 2, 4 or 8 bits; 2-bit levels in 2-bit slots).
 *  - fp16:    the whole model in float16 (export/fp16.ts): weights, activations and arithmetic,
 *             with the operators that lose too much or run badly in float16 kept in float32.
 *  - q4f16:   w4 (MatMulNBits) on a float16 graph: float16 scales and activations.
 */
export const SCHEMES = ['w8a8', 'w6a6', 'w4a4', 'dynamic', 'w8', 'w4', 'w3', 'w2', 'fp16', 'q4f16'] as const;
export type Scheme = (typeof SCHEMES)[number];

export const CALIBRATION_METHODS = ['minmax', 'percentile', 'entropy', 'mse'] as const;
export type CalibrationMethod = (typeof CALIBRATION_METHODS)[number];

/**
 * How the model is prepared before rounding (static schemes):
 *  - rtn:         round to nearest, activation ranges per tensor from calibration;
 *  - smoothquant: per-channel factors s = max|x|^α / max|w|^(1-α) moved from the post-LN
 *                 activations into the following weights (LayerNorm-affine fold), then rtn;
 *  - repquant:    post-LN activations calibrated per channel (a searched lower and upper
 *                 bound per channel), reparameterized into the LayerNorm and the following
 *                 weights so one per-tensor scale and integer zero point reproduce the
 *                 per-channel grid exactly; the weight grids are fitted again afterwards.
 *  - gptq:        the rtn grids, levels re-chosen column by column with GPTQ error feedback on
 *                 each layer's calibration Gram matrix (damping, optional activation order);
 *                 any scheme.
 *  - flexround:   the rtn grids as a start, then learned rounding by element-wise division
 *                 (W / (s1 · S2 · s3), all in log space) against each layer's output error on
 *                 calibration inputs (layer-wise) or each block's (block-wise); any scheme.
 */
export const METHODS = ['rtn', 'smoothquant', 'repquant', 'gptq', 'flexround'] as const;
export type Method = (typeof METHODS)[number];

export const SOFTMAX_MODES = ['none', 'uniform', 'log2'] as const;
/**
 * Post-softmax attention probabilities: 'none' leaves them in float; 'uniform' writes 8-bit
 * QDQ (integer runtimes run it); 'log2' writes a simulated log2 quantizer (Log, Round, Clip,
 * Pow: onnxruntime runs it in float, for accuracy validation).
 */
export type SoftmaxMode = (typeof SOFTMAX_MODES)[number];

export interface QuantizeOptions {
  scheme: Scheme;
  /** Preparation before rounding (default 'rtn'). */
  method?: Method;
  /** SmoothQuant migration strength α in [0, 1] (default 0.5). */
  alpha?: number;
  /** Observer for RepQuant's per-channel post-LN ranges (default 'mse': searched dual clipping). */
  repquantObserver?: 'minmax' | 'percentile' | 'mse';
  /**
   * Weight reconstruction after the grids are fitted: 'gptq' re-chooses the levels column by
   * column against the Gram matrix of each layer's calibration inputs (default 'none').
   */
  reconstruct?: 'none' | 'gptq';
  /**
   * Bits of the weight grid of a static scheme, when not the scheme's own (2 to 8): w8a8 with
   * weightBits 4 is W4A8 (4-bit weights per output channel stored in int8, 8-bit activations).
   */
  weightBits?: number;
  /** GPTQ (method gptq or --reconstruct gptq): damping as a fraction of the mean Gram diagonal (default 0.01). */
  gptqDamp?: number;
  /** GPTQ: quantize input columns by descending input energy (default true: lower KL to float on 12 of 18 w3/w4 rows of the method table, docs/flexround.md). */
  gptqActOrder?: boolean;
  /** GPTQ: fit each group's grid when GPTQ reaches it, on the error-updated weights, instead of keeping round to nearest's grids (default false: lower KL on 10 of 18 w3/w4 rows, docs/flexround.md). */
  gptqDynamicGroups?: boolean;
  /**
   * GPTQ: each layer fitted on the inputs the already quantized layers before it give, against
   * the outputs the float model gives (default true; false: the float model's inputs and the
   * layer's own float outputs, as before). Median KL to float 0.64 times the float-input one
   * over the 18 w3/w4 rows of docs/flexround.md.
   */
  gptqSequential?: boolean;
  /** FlexRound settings (method flexround). */
  flexround?: FlexRoundSettings;
  /** Post-softmax quantization (default 'none'). */
  softmax?: SoftmaxMode;
  /** How activation ranges are found from calibration data (w8a8 only; default minmax). */
  calibMethod?: CalibrationMethod;
  /** Weight scales per output channel (default) or one per tensor (false). */
  perChannel?: boolean;
  /** Input features sharing a scale for weight-only schemes (default 32); 0: all of them (one scale per output channel). */
  blockSize?: 0 | BlockSize;
  /** Weight range search: full range, or the MSE-minimising shrink (default: mse for 3/4 bits). */
  weightSearch?: 'minmax' | 'mse';
  /**
   * Weight-only schemes: symmetric grids (signed levels, zero point 0) or asymmetric ones
   * (unsigned levels and a zero point per group, so all 2^b levels can be used). Default:
   * symmetric, except at 2 bits, where a symmetric grid [-2, 1] is scaled to max|w| and round to
   * nearest reaches only -1, 0 and 1. Static and dynamic schemes are always symmetric (their
   * integer kernels take int8 weights with zero point 0).
   */
  weightSymmetric?: boolean;
  /** Layers kept in float: globs (`*.attn.*`) or /regex/ matched against layer and node names. */
  exclude?: string[];
  /** Quantize embedding tables (Gather of a constant) too (default true). */
  embeddings?: boolean;
  /**
   * fp16 and q4f16: graph inputs and outputs stay float32, with Casts after and before them
   * (onnxconverter-common's keep_io_types; default true). false: they become float16 too.
   */
  keepIoTypes?: boolean;
  /** fp16 and q4f16: operator types kept in float32 besides the built-in list (export/fp16.ts FLOAT32_OPS). */
  keepFloat32Ops?: string[];
  /** Calibration samples run to check the result (default 16). */
  verifySamples?: number;
  /** Samples per onnxruntime run during calibration. */
  batchSize?: number;
  /** Calibration cache folder (default .slimformer-cache or SLIMFORMER_CACHE_DIR); false: none. */
  cacheDir?: string | false;
}

/** Block sizes MatMulNBits (and GatherBlockQuantized) take for weight-only schemes. */
export const BLOCK_SIZES = [16, 32, 64, 128] as const;
export type BlockSize = (typeof BLOCK_SIZES)[number];

/**
 * How many weights share one scale: 'tensor' (one scale per weight tensor), 'channel' (one per
 * output channel) or 'block:N' (N consecutive input features of one output channel; weight-only
 * schemes, N in BLOCK_SIZES).
 */
export type Granularity = 'tensor' | 'channel' | `block:${number}`;

/**
 * The perChannel / blockSize options a granularity stands for (blockSize 0: one block per
 * output channel). Throws a UserError naming the value when it is not one of the forms, or
 * when block-wise scales are asked of a scheme that quantizes activations (static and
 * dynamic schemes keep one scale per output channel or per tensor).
 */
export function parseGranularity(g: string, scheme: Scheme): { perChannel: boolean; blockSize?: 0 | BlockSize } {
  if (g === 'tensor') return { perChannel: false, ...(isWeightOnly(scheme) ? { blockSize: 0 } : {}) };
  if (g === 'channel') return { perChannel: true, ...(isWeightOnly(scheme) ? { blockSize: 0 } : {}) };
  const m = /^block:(\d+)$/.exec(g);
  if (!m) throw new UserError(`unknown granularity '${g}' (choose from tensor, channel, block:N with N one of ${BLOCK_SIZES.join(', ')})`);
  const n = Number(m[1]);
  if (!(BLOCK_SIZES as readonly number[]).includes(n)) throw new UserError(`granularity block:${m[1]} is not supported: N must be one of ${BLOCK_SIZES.join(', ')} (the block sizes MatMulNBits takes)`);
  if (!isWeightOnly(scheme)) throw new UserError(`granularity block:${n} needs a weight-only scheme (w8, w4, w3, w2 without activation bits); ${scheme} keeps one weight scale per output channel or per tensor`);
  return { perChannel: true, blockSize: n as BlockSize };
}

export function weightBits(scheme: Scheme): number {
  return scheme === 'w4' || scheme === 'q4f16' || scheme === 'w4a4' ? 4 : scheme === 'w3' ? 3 : scheme === 'w2' ? 2 : scheme === 'w6a6' ? 6 : 8;
}

/** Static schemes: activations quantized per tensor with ranges from calibration. */
export function isStatic(scheme: Scheme): boolean {
  return scheme === 'w8a8' || scheme === 'w6a6' || scheme === 'w4a4';
}

/** Bits of the activation grid of a static scheme. */
export function activationBits(scheme: Scheme): number {
  return scheme === 'w6a6' ? 6 : scheme === 'w4a4' ? 4 : 8;
}

export function isWeightOnly(scheme: Scheme): boolean {
  return scheme === 'w8' || scheme === 'w4' || scheme === 'w3' || scheme === 'w2' || scheme === 'q4f16';
}

/** Schemes whose output graph computes in float16 (export/fp16.ts). */
export function isFloat16(scheme: Scheme): boolean {
  return scheme === 'fp16' || scheme === 'q4f16';
}

/** FlexRound's learning settings (see quantize/flexround.ts). */
export interface FlexRoundSettings {
  /** Optimizer steps per layer (layer-wise) or per block (block-wise) (default 500). */
  iters?: number;
  /** Adam learning rate of the log-scales, cosine to 0 (default 3e-3 for both objectives, the reference's W4A16 value, which it runs for 5000 steps; chosen on the method table, docs/flexround.md). */
  lr?: number;
  /** 'layer': each linear against its own output error (fast); 'block': each transformer block against its float output, then the layers outside blocks layer-wise (default 'block'). */
  mode?: 'layer' | 'block';
  /** Rows (tokens) per step in layer-wise mode (default 256); calibration samples per step in block-wise mode (default 4). */
  batch?: number;
  /** Tokens per layer kept from the calibration data in layer-wise mode (default 4096). */
  tokens?: number;
  /** Calibration samples used (default all). */
  samples?: number;
  /** Learn s1 (the common grid size) too (default true). */
  learnGrid?: boolean;
  /** Seed of the mini-batch order (default 0). */
  seed?: number;
  /**
   * Block-wise with quantized activations (static schemes, --a-bits 8): learn the step size of
   * each linear input's activation quantizer with the block, from the calibrated one (default true).
   */
  learnActivations?: boolean;
  /**
   * Where the learned rounding starts when no earlier pass decided the weights: 'gptq' (default:
   * GPTQ's levels, so FlexRound is never worse than GPTQ on calibration data) or 'rtn' (round to
   * nearest, the paper's start). Chosen on the language models' method table (docs/flexround.md).
   */
  start?: 'gptq' | 'rtn';
  /**
   * Calibration tokens per input feature a block (or a layer learned alone) needs before
   * learning moves it away from an earlier decision (GPTQ's levels, the default start), counted
   * against the widest input of its linears (default 8). With fewer, the per-weight scales fit
   * the calibration tokens rather than the model: on the zoo's decoders, 1024 tokens (4-6 per
   * input) left FlexRound's KL above GPTQ's on held-out text, 3072 (12-17) below or equal to it
   * (docs/flexround.md). Such a unit keeps the decision, and the report says so. Learning from
   * round to nearest is not held back (it is far above the start however little data there is).
   */
  minTokensPerInput?: number;
}
