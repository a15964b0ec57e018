// The options of each built-in pass: checked when the pass is built (the factories) and when a
// recipe names it (pipeline/registry.ts, which leaves out the library-only ones).
import { CALIBRATION_METHODS, METHODS, SCHEMES, SOFTMAX_MODES } from '../quantize/scheme.js';
import type { OptionSpec, OptionSpecs } from './options.js';

export const PRUNE_METHODS = ['magnitude', 'mlp', 'optin', 'drop-attention', 'drop-mlp'] as const;

/** The values a quantize layerBits entry takes. */
const LAYER_BITS = [8, 7, 6, 5, 4, 3, 2, 'float'] as const;

const isObject = (v: unknown): boolean => typeof v === 'object' && v !== null && !Array.isArray(v);

const cacheDir: OptionSpec = { type: 'custom', want: 'a folder path or false', test: (v) => typeof v === 'string' || v === false, doc: 'calibration cache folder, false for none', recipe: false };

/** How a pass runs on calibration data: every pass that reads it takes these. */
const RUN_OPTIONS: OptionSpecs = {
  batchSize: { type: 'number', integer: true, min: 1, doc: 'samples per onnxruntime run' },
  cacheDir,
};

/** What every pass that writes quantized weights takes: which layers, and how the result is checked. */
const WRITE_OPTIONS: OptionSpecs = {
  exclude: { type: 'string[]', doc: 'layers kept in float (globs or /regex/)' },
  embeddings: { type: 'boolean', doc: 'quantize embedding tables (default true)' },
  verifySamples: { type: 'number', integer: true, min: 1, doc: 'calibration samples run to check the result (default 16)' },
  ...RUN_OPTIONS,
};

export const CLEANUP_OPTIONS: OptionSpecs = {
  identities: { type: 'boolean', doc: 'remove Identity nodes (default true)' },
};

export const QUANTIZE_OPTIONS: OptionSpecs = {
  scheme: { type: 'enum', values: SCHEMES, required: true, doc: `one of ${SCHEMES.join(', ')}` },
  method: { type: 'enum', values: METHODS, doc: 'preparation before rounding (default rtn; static schemes with calibration: repquant when a post-norm activation has outlier channels)' },
  alpha: { type: 'number', min: 0, max: 1, doc: 'SmoothQuant migration strength (default 0.5)' },
  repquantObserver: { type: 'enum', values: ['minmax', 'percentile', 'mse'], doc: 'RepQuant per-channel bounds (default mse)' },
  reconstruct: { type: 'enum', values: ['none', 'gptq'], doc: 'weight reconstruction (default none)' },
  softmax: { type: 'enum', values: SOFTMAX_MODES, doc: 'post-softmax quantization (default none)' },
  calibMethod: { type: 'enum', values: CALIBRATION_METHODS, doc: 'activation ranges (default minmax)' },
  perChannel: { type: 'boolean', doc: 'weight scales per output channel (default true)' },
  // 0: one scale per output channel or tensor (what parseGranularity gives for 'channel' and 'tensor')
  blockSize: { type: 'enum', values: [0, 16, 32, 64, 128], doc: 'block size of weight-only schemes (default 32; 0: per channel or tensor)' },
  weightSearch: { type: 'enum', values: ['minmax', 'mse'], doc: 'weight range search' },
  weightSymmetric: { type: 'boolean', doc: 'weight-only schemes: symmetric grids (default: yes, except at 2 bits)' },
  weightBits: { type: 'number', integer: true, min: 2, max: 8, doc: "bits of a static scheme's weight grid when not the scheme's own (w8a8 + 4: W4A8)" },
  gptqDamp: { type: 'number', min: 0, doc: 'GPTQ damping, a fraction of the mean Gram diagonal (default 0.01)' },
  gptqActOrder: { type: 'boolean', doc: 'GPTQ: columns by descending input energy (default true)' },
  gptqDynamicGroups: { type: 'boolean', doc: "GPTQ: fit each group's grid when GPTQ reaches it, on the updated weights (default false)" },
  gptqSequential: { type: 'boolean', doc: 'GPTQ: each layer on the inputs of the quantized layers before it, against the float outputs (default true)' },
  flexround: { type: 'custom', want: 'an object of FlexRound settings (iters, lr, mode, ...)', test: isObject, doc: 'FlexRound settings for method flexround', recipe: false },
  layerBits: { type: 'pattern-map', values: [...LAYER_BITS], doc: "per-layer weight bits or 'float' ({ 'blocks.3.*': 8, lm_head: float }; first matching pattern wins)" },
  outerBits: { type: 'enum', values: [2, 3, 4, 5, 6, 7, 8, 'scheme'], doc: "bits of the embedding tables and the linears outside the blocks when the scheme has fewer (default 8; 'scheme': the scheme's bits)" },
  decodeSteps: { type: 'boolean', doc: 'a decoder with a key/value cache also calibrates on decode steps through the cache (default false; FlexRound keeps the prompts alone)' },
  keepIoTypes: { type: 'boolean', doc: 'fp16/q4f16: graph inputs and outputs stay float32 (default true)' },
  keepFloat32Ops: { type: 'string[]', doc: 'fp16/q4f16: operator types kept in float32 besides the built-in list' },
  ...WRITE_OPTIONS,
};

export const PRUNE_OPTIONS: OptionSpecs = {
  method: { type: 'enum', values: PRUNE_METHODS, required: true, doc: `one of ${PRUNE_METHODS.join(', ')}` },
  ratio: { type: 'number', min: 0, max: 1, doc: 'share of MLP neurons to remove' },
  flops: { type: 'number', min: 0, max: 1, doc: 'FLOP budget as a fraction of the original' },
  headRatio: { type: 'number', min: 0, max: 1, doc: 'optin: share of attention heads to remove' },
  maxIncrease: { type: 'number', min: 0, doc: 'AMP: largest entropy rise per MLP (nats)' },
  count: { type: 'number', integer: true, min: 1, doc: 'drop-attention / drop-mlp: sublayers to drop' },
  samples: { type: 'number', integer: true, min: 1, doc: 'calibration samples for scoring' },
  plan: { type: 'custom', want: 'a PrunePlan object', test: isObject, doc: 'apply this plan instead of choosing one', recipe: false },
};

export const SMOOTHQUANT_OPTIONS: OptionSpecs = {
  alpha: { type: 'number', min: 0, max: 1, doc: 'migration strength (default 0.5)' },
  ...RUN_OPTIONS,
};

export const REPQUANT_OPTIONS: OptionSpecs = {
  aBits: { type: 'enum', values: [8, 6, 4], doc: "activation bits of the scheme that writes the plan (default 8; w6a6: 6, w4a4: 4)" },
  observer: { type: 'enum', values: ['minmax', 'percentile', 'mse'], doc: 'per-channel bounds (default mse)' },
  ...RUN_OPTIONS,
};

/** Options the flexround and gptq passes share (see src/passes/flexround.ts). */
const WEIGHT_PASS_OPTIONS: OptionSpecs = {
  bits: { type: 'enum', values: [8, 4, 3, 2], doc: 'weight bits (default 4)' },
  aBits: { type: 'enum', values: [8], doc: 'activation bits: absent for weight-only, 8 for static W·A8' },
  blockSize: { type: 'enum', values: [16, 32, 64, 128], doc: 'input features per weight scale (default 32)' },
  granularity: { type: 'string', doc: "weights per scale: 'tensor', 'channel' or 'block:N' (N = 16, 32, 64, 128; weight-only); overrides blockSize" },
  weightSymmetric: { type: 'boolean', doc: 'weight-only: symmetric grids (default: yes, except at 2 bits)' },
  ...WRITE_OPTIONS,
};

export const FLEXROUND_OPTIONS: OptionSpecs = {
  ...WEIGHT_PASS_OPTIONS,
  iters: { type: 'number', integer: true, min: 0, doc: 'optimizer steps per block or layer (default 500)' },
  lr: { type: 'number', min: 0, doc: 'Adam learning rate of the log-scales' },
  mode: { type: 'enum', values: ['layer', 'block'], doc: "'block' (default) or 'layer'" },
  batch: { type: 'number', integer: true, min: 1, doc: 'samples per optimizer step', recipe: false },
  tokens: { type: 'number', integer: true, min: 1, doc: 'token positions sampled per step', recipe: false },
  samples: { type: 'number', integer: true, min: 1, doc: 'calibration samples used', recipe: false },
  learnGrid: { type: 'boolean', doc: 'also learn the grid scale', recipe: false },
  seed: { type: 'number', integer: true, doc: 'random seed', recipe: false },
  learnActivations: { type: 'boolean', doc: 'W·A8: learn the activation steps', recipe: false },
  start: { type: 'enum', values: ['gptq', 'rtn'], doc: "where learning starts when no earlier pass decided the weights: 'gptq' (default) or 'rtn'" },
  minTokensPerInput: { type: 'number', min: 0, doc: 'calibration tokens per input feature a block or layer needs before learning moves it from an earlier decision (default 8)' },
};

export const GPTQ_OPTIONS: OptionSpecs = {
  ...WEIGHT_PASS_OPTIONS,
  damp: { type: 'number', min: 0, doc: 'damping, a fraction of the mean Gram diagonal (default 0.01)' },
  actOrder: { type: 'boolean', doc: 'columns by descending input energy (default true)' },
  sequential: { type: 'boolean', doc: 'each layer fitted on the inputs the quantized layers before it give, against the float model\'s outputs (default true)' },
  dynamicGroups: { type: 'boolean', doc: "fit each group's grid when GPTQ reaches it, on the error-updated weights, instead of round to nearest's (default false)" },
};
