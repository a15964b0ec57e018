import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import { evaluate } from '../validate/evaluate.js';
import type { MetricName } from '../validate/metrics.js';
import { type AnalysisResult, type AnalyzeOptions, analyzeModel } from './analyze.js';
import { applyClippedSoftmax } from './forms.js';

export interface WhatIfClipped {
  gamma: number;
  zeta: number;
  /** The Softmax nodes rewritten. */
  rewritten: string[];
  before: AnalysisResult['summary'];
  after: AnalysisResult['summary'];
  /** Metrics on the evaluation data before and after, when evaluation data was given. */
  accuracy: { metric: MetricName; before: number; after: number } | null;
}

/**
 * What would clipped softmax do to this model, without retraining: rewrites every plain
 * attention Softmax into clip((ζ−γ)·softmax + γ, 0, 1) on a copy, analyzes both, and (with
 * evaluation data) compares their accuracy. The model was not trained with clipping, so the
 * accuracy change shows how far the trained heads depend on tiny probabilities.
 */
export async function whatIfClippedSoftmax(model: Model, calibration: Dataset, options: AnalyzeOptions & { gamma: number; zeta?: number; evalData?: Dataset; metric?: MetricName; before?: AnalysisResult }): Promise<WhatIfClipped> {
  const zeta = options.zeta ?? 1;
  const copy = model.clone();
  const rewritten = applyClippedSoftmax(copy, options.gamma, zeta);
  const before = options.before ?? (await analyzeModel(model, calibration, options));
  const after = await analyzeModel(copy, calibration, options);
  let accuracy: WhatIfClipped['accuracy'] = null;
  if (options.evalData) {
    const metric = options.metric ?? 'top1';
    const a = await evaluate(model, options.evalData, { metrics: [metric], threads: options.threads, signal: options.signal });
    const b = await evaluate(copy, options.evalData, { metrics: [metric], threads: options.threads, signal: options.signal });
    accuracy = { metric, before: a.metrics[metric]!, after: b.metrics[metric]! };
  }
  return { gamma: options.gamma, zeta, rewritten, before: before.summary, after: after.summary, accuracy };
}
