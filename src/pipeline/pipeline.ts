import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { PassError, type Pass, type PassContext, type PassResult } from '../passes/pass.js';
import { silentProgress } from '../progress.js';
import { Report } from '../report/report.js';

/** A sequence of passes; itself a Pass, so pipelines nest. */
export interface Pipeline extends Pass {
  readonly passes: readonly Pass[];
  /**
   * Runs on a copy of `model` (the caller's model is never changed) with a context built from
   * `options`; returns the result and the report.
   */
  apply(model: Model, options?: Partial<PassContext>): Promise<PassResult & { report: Report }>;
}

export function pipeline(passes: Pass[], name = 'pipeline'): Pipeline {
  const run = async (model: Model, ctx: PassContext): Promise<PassResult> => {
    let current = model;
    let modified = false;
    for (const pass of passes) {
      ctx.signal.throwIfAborted();
      const started = performance.now();
      let result: PassResult;
      try {
        result = await pass.run(current, ctx);
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
  return {
    name,
    passes,
    run,
    async apply(model, options = {}) {
      const report = options.report ?? new Report();
      const ctx: PassContext = {
        calibration: options.calibration,
        threads: options.threads,
        progress: options.progress ?? silentProgress,
        report,
        signal: options.signal ?? new AbortController().signal,
      };
      const result = await run(model.clone(), ctx);
      return { ...result, report };
    },
  };
}
