import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import type { Progress } from '../progress.js';
import type { QuantizationPlan } from '../quantize/plan.js';
import type { Report } from '../report/report.js';

/** What a pass may use besides the model. Passes read nothing global (no argv, no env). */
export interface PassContext {
  /** Calibration samples, for passes that need activations. */
  calibration: Dataset | undefined;
  /** Threads for onnxruntime sessions the pass creates. */
  threads: number | undefined;
  progress: Progress;
  report: Report;
  /** Aborted on Ctrl-C; long loops check it so work stops cleanly. */
  signal: AbortSignal;
  /**
   * What the quantization passes of this run decided so far (reparameterizations, weight
   * decisions, fixed activation grids), until quantize writes it. A pipeline creates one per run.
   */
  plan?: QuantizationPlan;
  /** The passes that run after this one in the enclosing pipelines (set by the pipeline). */
  later?: readonly Pass[];
}

/**
 * What a pass returns. `S` is the pass's summary type (QuantizeSummary for quantize, gptq and
 * flexround, PruneSummary for prune, CleanupSummary for cleanup): the figures the report keeps.
 */
export interface PassResult<S extends object = object> {
  model: Model;
  modified: boolean;
  /** Figures for the report (counts removed, sizes before/after...). */
  summary?: S;
}

/**
 * A step of a pipeline. `name` is the kebab-case word used in the CLI, recipes and reports.
 * A pass may change the model it is given in place and return it, or return a new one.
 * Its options are checked when it is built (the factory throws a UserError), not when it runs.
 */
export interface Pass<S extends object = object> {
  readonly name: string;
  /**
   * Quantization passes: 'reparameterize' (smoothquant, repquant: change the float model, record
   * in the plan), 'decide' (gptq, flexround: weight decisions into the plan; written by the pass
   * itself when no later pass writes), 'write' (quantize: writes the plan once). Absent for others.
   */
  readonly planRole?: 'reparameterize' | 'decide' | 'write';
  run(model: Model, ctx: PassContext): Promise<PassResult<S>> | PassResult<S>;
}

/** A failure inside a pass, naming the pass. */
export class PassError extends Error {
  constructor(
    readonly pass: string,
    readonly inner: unknown,
  ) {
    super(`pass '${pass}' failed: ${inner instanceof Error ? inner.message : String(inner)}`, { cause: inner });
    this.name = 'PassError';
  }
}
