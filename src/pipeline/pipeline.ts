import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { PassError, type Pass, type PassContext, type PassResult } from '../passes/pass.js';
import { silentProgress } from '../progress.js';
import { Report } from '../report/report.js';
import { openDataset, type Dataset } from '../data/dataset.js';
import { QuantizationPlan } from '../quantize/plan.js';
import { QualityFloorError, checkQuality, floorFor, qualityWarning, type QualityFloor } from '../validate/quality-floor.js';

/** Options of Pipeline.apply: any part of the context; calibration may be a path or a Dataset. */
export type ApplyOptions = Partial<Omit<PassContext, 'calibration'>> & {
  /** Calibration samples: a dataset folder or .npz path (opened with openDataset), or a Dataset. */
  calibration?: Dataset | string;
  /**
   * The quality floor the result is held to (default QUALITY_FLOOR, PRUNING_FLOOR when a
   * prune pass changed the model): with calibration data, a
   * changed model is compared with the input on the first calibration samples, and one below
   * the floor is refused (QualityFloorError). false: not measured (report.quality stays null).
   */
  floor?: QualityFloor | false;
  /** Return a result measured below the floor instead of throwing (recorded as a warning). */
  force?: boolean;
};

/**
 * A sequence of passes; itself a Pass, so pipelines nest. A program runs it with apply();
 * run() is the Pass interface an enclosing pipeline calls with its full context.
 */
export interface Pipeline extends Pass {
  readonly passes: readonly Pass[];
  /**
   * Runs on a copy of `model` (the caller's model is never changed) with a context built from
   * `options`; returns the result and the report (`report.summaryOf('quantize')` for a pass's
   * typed summary).
   */
  apply(model: Model, options?: ApplyOptions): Promise<PassResult & { report: Report }>;
  /** As a step of an enclosing pipeline: runs in place in that pipeline's context. */
  run(model: Model, ctx: PassContext): Promise<PassResult>;
}

export function pipeline(passes: Pass[], name = 'pipeline'): Pipeline {
  const runIn = async (model: Model, ctx: PassContext): Promise<PassResult> => {
    if (!ctx?.report || !ctx.progress || !ctx.signal || typeof ctx.calibration === 'string') throw new TypeError(`pipeline '${name}'.run takes a pass context (from an enclosing pipeline); a program calls apply(model, options)`);
    let current = model;
    let modified = false;
    // one quantization plan for the run, shared with nested pipelines; each pass learns what runs after it
    const plan = ctx.plan ?? new QuantizationPlan();
    for (const [i, pass] of passes.entries()) {
      ctx.signal.throwIfAborted();
      const started = performance.now();
      let result: PassResult;
      try {
        result = await pass.run(current, { ...ctx, plan, later: [...passes.slice(i + 1), ...(ctx.later ?? [])] });
      } catch (e) {
        // user errors keep their one-sentence form, prefixed by the pass; nested pipelines
        // already named the innermost pass
        if (e instanceof PassError || (e instanceof Error && e.name === 'AbortError')) throw e;
        if (e instanceof UserError) throw new UserError(`pass '${pass.name}': ${e.message}`, { cause: e });
        throw new PassError(pass.name, e);
      }
      ctx.report.passes.push({
        pass: pass.name,
        seconds: (performance.now() - started) / 1000,
        modified: result.modified,
        summary: result.summary ?? {},
      });
      current = result.model;
      modified ||= result.modified;
    }
    return { model: current, modified };
  };
  const apply = async (model: Model, options: ApplyOptions = {}): Promise<PassResult & { report: Report }> => {
    const report = options.report ?? new Report();
    const ctx: PassContext = {
      calibration: typeof options.calibration === 'string' ? openDataset(options.calibration) : options.calibration,
      threads: options.threads,
      progress: options.progress ?? silentProgress,
      report,
      signal: options.signal ?? new AbortController().signal,
      plan: options.plan,
    };
    const result = await runIn(model.clone(), ctx);
    if (result.modified && ctx.calibration && options.floor !== false) {
      const check = await checkQuality(model, result.model, ctx.calibration, { threads: ctx.threads, signal: ctx.signal, floor: options.floor ?? floorFor(report.passes), force: options.force });
      report.quality = check;
      if (check.verdict === 'below-floor' && !check.forced) throw new QualityFloorError(check);
      const warning = qualityWarning(check);
      if (warning) report.warn('quality', warning);
    }
    return { ...result, report };
  };
  return {
    name,
    passes,
    apply,
    run: runIn,
  };
}
