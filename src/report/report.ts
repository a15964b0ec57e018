import type { PassSummaries } from '../passes/summaries.js';
import type { QualityCheck } from '../validate/quality-floor.js';

/** What a pass did, one entry per fact worth telling the user. */
export interface ReportEntry {
  pass: string;
  level: 'info' | 'warning' | 'skipped';
  message: string;
  /** The node or tensor the entry is about, when there is one. */
  target?: string;
  data?: Record<string, unknown>;
}

export interface PassRecord {
  pass: string;
  seconds: number;
  modified: boolean;
  /** The pass's summary (typed through Report.summaryOf for the built-in passes). */
  summary: object;
}

/**
 * The one report of a run. Passes add entries; renderers (JSON now, Markdown/HTML/JUnit later)
 * read it. Skips always carry a reason, so nothing is changed or left alone silently.
 */
export class Report {
  readonly entries: ReportEntry[] = [];
  readonly passes: PassRecord[] = [];
  /** The result against the input model and the quality floor (null: not measured, e.g. no calibration data). */
  quality: QualityCheck | null = null;

  /**
   * The summary of the last run of a built-in pass, typed by its name
   * (`report.summaryOf('quantize')?.layers`); undefined when no such pass ran. A gptq or
   * flexround pass that left its decisions to a later pass (its DecisionSummary, `deferred: true`,
   * is in `passes`) is not such a run: the pass that wrote the model has the figures.
   */
  summaryOf<K extends keyof PassSummaries>(pass: K): PassSummaries[K] | undefined {
    const record = [...this.passes].reverse().find((p) => p.pass === pass && !('deferred' in p.summary && p.summary.deferred === true));
    return record?.summary as PassSummaries[K] | undefined;
  }

  info(pass: string, message: string, extra: Partial<Pick<ReportEntry, 'target' | 'data'>> = {}): void {
    this.entries.push({ pass, level: 'info', message, ...extra });
  }

  warn(pass: string, message: string, extra: Partial<Pick<ReportEntry, 'target' | 'data'>> = {}): void {
    this.entries.push({ pass, level: 'warning', message, ...extra });
  }

  skip(pass: string, target: string, reason: string): void {
    this.entries.push({ pass, level: 'skipped', message: reason, target });
  }

  toJSON(): { passes: PassRecord[]; entries: ReportEntry[]; quality: QualityCheck | null } {
    return { passes: this.passes, entries: this.entries, quality: this.quality };
  }
}
