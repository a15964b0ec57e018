import { COMPARISON_METRICS, type ComparisonMetricName } from './comparison.js';
import { LM_METRICS, type LmMetricName } from './lm-metrics.js';
import { METRICS, type MetricName } from './metrics.js';

/** Every metric the gate can check: label metrics, those against the baseline, then the language-model ones. */
export const GATE_METRICS = [...METRICS, ...COMPARISON_METRICS, ...LM_METRICS] as const;
export type GateMetricName = MetricName | ComparisonMetricName | LmMetricName;

export function isGateMetricName(s: string): s is GateMetricName {
  return (GATE_METRICS as readonly string[]).includes(s);
}

export interface GateMetricInfo {
  /** Which way is better: a fall in top1 is a loss, a rise in nll is. */
  direction: 'higher' | 'lower';
  /**
   * 'labels': measured for each model against the dataset's labels.
   * 'baseline': measured for the candidate against the baseline's outputs; the baseline's own
   * value is then the ideal (the baseline compared with itself). A language model's text
   * (stream-nll, stream-perplexity) counts as its labels.
   */
  against: 'labels' | 'baseline';
  /** The baseline's value for a metric against the baseline (gen-divergence's is the number of new tokens, known when it runs). */
  ideal?: number;
  unit?: string;
}

export const GATE_METRIC_INFO: Record<GateMetricName, GateMetricInfo> = {
  top1: { direction: 'higher', against: 'labels' },
  nll: { direction: 'lower', against: 'labels', unit: 'nats' },
  perplexity: { direction: 'lower', against: 'labels' },
  agreement: { direction: 'higher', against: 'baseline', ideal: 1 },
  cosine: { direction: 'higher', against: 'baseline', ideal: 1 },
  sqnr: { direction: 'higher', against: 'baseline', ideal: Infinity, unit: 'dB' },
  kl: { direction: 'lower', against: 'baseline', ideal: 0, unit: 'nats' },
  'stream-nll': { direction: 'lower', against: 'labels', unit: 'nats' },
  'stream-perplexity': { direction: 'lower', against: 'labels' },
  'gen-agreement': { direction: 'higher', against: 'baseline', ideal: 1 },
  'gen-divergence': { direction: 'higher', against: 'baseline', unit: 'tokens' },
  'topk-agreement': { direction: 'higher', against: 'baseline', ideal: 1 },
};
