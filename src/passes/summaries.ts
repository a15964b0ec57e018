// The summary type of each built-in pass, by the name it records in the report.
import type { CleanupSummary } from './cleanup.js';
import type { PruneSummary } from './prune.js';
import type { QuantizeSummary } from './quantize.js';

/** Report.summaryOf(name) returns PassSummaries[name]. */
export interface PassSummaries {
  cleanup: CleanupSummary;
  quantize: QuantizeSummary;
  flexround: QuantizeSummary;
  gptq: QuantizeSummary;
  prune: PruneSummary;
}

export type PassName = keyof PassSummaries;
