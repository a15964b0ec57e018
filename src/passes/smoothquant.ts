// SmoothQuant as a pass of its own: moves activation outliers into the following weights
// (the float model computes the same function) and records that it ran in the quantization
// plan; a later gptq/flexround/quantize pass quantizes the result:
//   pipeline([smoothQuant({ alpha: 0.5 }), gptq({ bits: 4, aBits: 8 })])
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { QuantizationPlan, type ReparamSummary } from '../quantize/plan.js';
import { assertNotQuantized } from '../quantize/select.js';
import { smoothQuant as smoothQuantFold } from '../reparam/smoothquant.js';
import { SMOOTHQUANT_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass, PassContext } from './pass.js';
import type { QuantizePassOptions } from './quantize.js';

export interface SmoothQuantPassOptions {
  /** Migration strength α in [0, 1] (default 0.5). */
  alpha?: number;
  /** Samples per onnxruntime run during calibration. */
  batchSize?: number;
  /** Calibration cache folder (default .slimformer-cache or SLIMFORMER_CACHE_DIR); false: none. */
  cacheDir?: string | false;
}

/** SmoothQuant (per-channel factors folded into the norms and the linears that read them); needs calibration data. */
export function smoothQuant(options: SmoothQuantPassOptions = {}): Pass<ReparamSummary> {
  checkOptions('smoothquant', SMOOTHQUANT_OPTIONS, options);
  return {
    name: 'smoothquant',
    planRole: 'reparameterize',
    async run(model: Model, ctx: PassContext) {
      const summary = await reparamSmoothQuant(model, ctx, { scheme: 'w8a8', ...options }, ctx.plan ?? new QuantizationPlan(), 'smoothquant');
      return { model, modified: summary.folded.length > 0, summary };
    },
  };
}

/** The step of the quantize chain: folds into `model` in place and records the run in `plan`. */
export async function reparamSmoothQuant(model: Model, ctx: PassContext, options: Pick<QuantizePassOptions, 'alpha' | 'batchSize' | 'cacheDir' | 'scheme'>, plan: QuantizationPlan, pass: string): Promise<ReparamSummary> {
  if (!ctx.calibration) throw new UserError("method smoothquant needs calibration data (option 'calibration')");
  assertNotQuantized(model, model.sourcePath ?? 'the model');
  refuseAfterDecisions(plan, 'smoothquant');
  const r = await smoothQuantFold(model, ctx.calibration, options.alpha ?? 0.5, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal, cacheDir: options.cacheDir });
  const summary: ReparamSummary = { method: 'smoothquant', alpha: r.alpha, folded: r.folded.map((f) => f.name), skipped: r.skipped };
  return recordReparam(summary, ctx, plan, pass);
}

/** Reports a reparameterization (what it folded and skipped) and records it in the plan. */
export function recordReparam(summary: ReparamSummary, ctx: PassContext, plan: QuantizationPlan, pass: string): ReparamSummary {
  for (const s of summary.skipped) ctx.report.skip(pass, s.name, `${summary.method}: ${s.reason}`);
  ctx.report.info(pass, `${summary.method} folded per-channel factors at ${summary.folded.length} norm output(s)`);
  plan.reparams.push(summary);
  plan.chain.push(summary.method);
  return summary;
}

/** A reparameterization changes weights: decisions already in the plan would no longer stand for them. */
export function refuseAfterDecisions(plan: QuantizationPlan, method: string): void {
  const d = plan.weights.values().next().value;
  if (d) throw new UserError(`${method} changes the weights that pass '${d.pass}' already decided (${plan.weights.size} layer(s), '${d.layer}' first); run ${method} before ${d.method}`);
}
