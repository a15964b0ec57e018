// RepQuant as a pass of its own: per-channel activation grids of the post-norm activations
// folded into the norms and the linears that read them (the float model computes the same
// function), and the per-tensor grids that reproduce them recorded in the quantization plan for
// the pass that writes it:
//   pipeline([repQuant(), flexRound({ bits: 4, aBits: 8 })])
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { QuantizationPlan, modelFingerprint, type ReparamSummary } from '../quantize/plan.js';
import { activationBits, type Scheme } from '../quantize/scheme.js';
import { assertNotQuantized } from '../quantize/select.js';
import { repQuantReparam } from '../reparam/repquant.js';
import { REPQUANT_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass, PassContext } from './pass.js';
import type { QuantizePassOptions } from './quantize.js';
import { recordReparam, refuseAfterDecisions } from './smoothquant.js';

export interface RepQuantPassOptions {
  /** Bits of the activation grid the quantize pass will write (8, 6 or 4; default 8): the scheme's activation bits. */
  aBits?: 8 | 6 | 4;
  /** Per-channel bounds: 'mse' (default, searched dual clipping), 'percentile' or 'minmax'. */
  observer?: 'minmax' | 'percentile' | 'mse';
  /** Samples per onnxruntime run during calibration. */
  batchSize?: number;
  /** Calibration cache folder (default .slimformer-cache or SLIMFORMER_CACHE_DIR); false: none. */
  cacheDir?: string | false;
}

const SCHEME_OF_BITS: Record<number, Scheme> = { 8: 'w8a8', 6: 'w6a6', 4: 'w4a4' };

/** RepQuant's reparameterization; needs calibration data. */
export function repQuant(options: RepQuantPassOptions = {}): Pass<ReparamSummary> {
  checkOptions('repquant', REPQUANT_OPTIONS, options);
  const { aBits = 8, observer, batchSize, cacheDir } = options;
  return {
    name: 'repquant',
    planRole: 'reparameterize',
    async run(model: Model, ctx: PassContext) {
      const summary = await reparamRepQuant(model, ctx, { scheme: SCHEME_OF_BITS[aBits]!, repquantObserver: observer, batchSize, cacheDir }, ctx.plan ?? new QuantizationPlan(), 'repquant');
      return { model, modified: summary.folded.length > 0, summary };
    },
  };
}

/** The step of the quantize chain: folds into `model` in place, records the run and the activation grids in `plan`. */
export async function reparamRepQuant(model: Model, ctx: PassContext, options: Pick<QuantizePassOptions, 'repquantObserver' | 'batchSize' | 'cacheDir' | 'scheme'>, plan: QuantizationPlan, pass: string): Promise<ReparamSummary> {
  if (!ctx.calibration) throw new UserError("method repquant needs calibration data (option 'calibration')");
  assertNotQuantized(model, model.sourcePath ?? 'the model');
  refuseAfterDecisions(plan, 'repquant');
  const r = await repQuantReparam(model, ctx.calibration, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal, cacheDir: options.cacheDir, bits: activationBits(options.scheme), observer: options.repquantObserver });
  const fingerprint = modelFingerprint(model);
  for (const [name, params] of r.activations) plan.activations.set(name, { params, method: 'repquant', pass, fingerprint });
  const summary: ReparamSummary = { method: 'repquant', observer: r.observer, folded: r.folded.map((f) => f.name), skipped: r.skipped };
  return recordReparam(summary, ctx, plan, pass);
}
