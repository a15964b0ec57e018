// The summary type of each built-in pass, by the name it records in the report.
import type { CleanupSummary } from './cleanup.js';
import type { PruneSummary } from './prune.js';
import type { QuantizeSummary } from './quantize.js';
import type { DecisionSummary, ReparamSummary } from '../quantize/plan.js';

/** Report.summaryOf(name) returns PassSummaries[name]. */
export interface PassSummaries {
  cleanup: CleanupSummary;
  quantize: QuantizeSummary;
  /** A decision pass writes the plan when it is the last quantization pass (QuantizeSummary), else leaves its decisions in it (DecisionSummary, `deferred: true`). */
  flexround: QuantizeSummary | DecisionSummary;
  gptq: QuantizeSummary | DecisionSummary;
  smoothquant: ReparamSummary;
  repquant: ReparamSummary;
  prune: PruneSummary;
}

export type PassName = keyof PassSummaries;
