// FlexRound and GPTQ as passes of their own, for pipelines built in code:
//   pipeline([flexRound({ bits: 4, iters: 500 })]).apply(model, { calibration })
// Both are the quantize pass with a method: the same grids, the same export (MatMulNBits for
// weight-only, QDQ when activations are quantized), the same check against the float model.
import { parseGranularity, type BlockSize, type FlexRoundSettings, type Granularity, type QuantizeOptions, type Scheme } from '../quantize/scheme.js';
import { FLEXROUND_OPTIONS, GPTQ_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass } from './pass.js';
import { quantize, type QuantizeSummary } from './quantize.js';

/** Quantize options the flexround and gptq passes pass through unchanged (documented on QuantizeOptions). */
const PASSED = ['weightSymmetric', 'exclude', 'embeddings', 'verifySamples', 'batchSize', 'cacheDir'] as const;

interface CommonOptions extends Pick<QuantizeOptions, (typeof PASSED)[number]> {
  /** Weight bits (default 4). */
  bits?: 8 | 4 | 3 | 2;
  /** Activation bits: absent for weight-only (MatMulNBits); 8 for static W·A8 (QDQ, weights per output channel). */
  aBits?: 8;
  /** Input features per weight scale for weight-only schemes (default 32). */
  blockSize?: BlockSize;
  /** Weights per scale: 'tensor', 'channel' or 'block:N' (weight-only); overrides blockSize. */
  granularity?: Granularity;
}

export interface FlexRoundOptions extends CommonOptions, FlexRoundSettings {}

export interface GptqOptions extends CommonOptions {
  /** Damping as a fraction of the mean Gram diagonal (default 0.01). */
  damp?: number;
  /** Quantize input columns by descending input energy (default true; false: in their order). */
  actOrder?: boolean;
}

function base(o: CommonOptions): QuantizeOptions {
  const bits = o.bits ?? 4;
  const scheme: Scheme = o.aBits === 8 ? 'w8a8' : (`w${bits}` as Scheme);
  return {
    scheme,
    ...(o.aBits === 8 && bits !== 8 ? { weightBits: bits } : {}),
    blockSize: o.blockSize,
    ...(o.granularity !== undefined ? parseGranularity(o.granularity, scheme) : {}),
    ...Object.fromEntries(PASSED.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])),
  };
}

function named(name: string, inner: Pass<QuantizeSummary>): Pass<QuantizeSummary> {
  return { name, run: (model, ctx) => inner.run(model, ctx) };
}

/** FlexRound quantization (learned rounding by element-wise division); needs calibration data. */
export function flexRound(options: FlexRoundOptions = {}): Pass<QuantizeSummary> {
  checkOptions('flexround', FLEXROUND_OPTIONS, options);
  const { iters, lr, mode, batch, tokens, samples, learnGrid, seed, learnActivations } = options;
  return named('flexround', quantize({ ...base(options), method: 'flexround', flexround: { iters, lr, mode, batch, tokens, samples, learnGrid, seed, learnActivations } }));
}

/** GPTQ quantization (column-wise error feedback on calibration Gram matrices); needs calibration data. */
export function gptq(options: GptqOptions = {}): Pass<QuantizeSummary> {
  checkOptions('gptq', GPTQ_OPTIONS, options);
  return named('gptq', quantize({ ...base(options), method: 'gptq', gptqDamp: options.damp, gptqActOrder: options.actOrder }));
}
