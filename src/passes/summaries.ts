// The summary type of each built-in pass, by the name it records in the report.
import type { CleanupSummary } from './cleanup.js';
import type { PruneSummary } from './prune.js';
import type { QuantizeSummary } from './quantize.js';
import type { ReparamSummary } from '../quantize/plan.js';

/** Report.summaryOf(name) returns PassSummaries[name]. */
export interface PassSummaries {
  cleanup: CleanupSummary;
  quantize: QuantizeSummary;
  /** When the pass wrote the model (no later quantization pass); its deferred runs' DecisionSummary is in Report.passes. */
  flexround: QuantizeSummary;
  gptq: QuantizeSummary;
  smoothquant: ReparamSummary;
  repquant: ReparamSummary;
  prune: PruneSummary;
}

export type PassName = keyof PassSummaries;
