import { UserError } from '../errors.js';
import type { BatchSamples } from '../data/bind.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { isFloatType } from '../ir/dtype.js';

/** A batch's shape as one sample's: the first axis divided among the batch's samples. */
function perSample(dims: readonly number[], count: number): number[] {
  return dims.length > 0 && dims[0]! % count === 0 ? [dims[0]! / count, ...dims.slice(1)] : [...dims];
}

export const METRICS = ['top1', 'nll', 'perplexity'] as const;
export type MetricName = (typeof METRICS)[number];

export function isMetricName(s: string): s is MetricName {
  return (METRICS as readonly string[]).includes(s);
}

/**
 * Streams predictions against labels. The prediction is a tensor of scores over its last axis
 * (logits); the label holds one class index per position (the prediction's shape without the
 * last axis), so a classifier has one position per sample and a language model one per token.
 * Labels below zero are ignored (the -100 convention). Sums are kept in float64.
 *  top1:        share of positions whose argmax equals the label
 *  nll:         mean of logsumexp(scores) - scores[label], in nats
 *  perplexity:  exp(nll)
 */
export class MetricAccumulator {
  private positions = 0;
  private correct = 0;
  private nllSum = 0;

  /** `samples` names the batch's samples in messages (a label error names the dataset and sample). */
  add(scores: ArrayTensor, labels: ArrayTensor, outputName: string, samples?: BatchSamples): void {
    const classes = scores.dims[scores.dims.length - 1] ?? 0;
    const lead = scores.dims.slice(0, -1);
    const fits = labels.dims.length === lead.length ? labels.dims.every((d, i) => d === lead[i]) : labels.dims.length === lead.length + 1 && labels.dims[labels.dims.length - 1] === 1 && lead.every((d, i) => d === labels.dims[i]);
    if (!fits) {
      const one = (dims: readonly number[]): string => `[${(samples ? perSample(dims, samples.count) : dims).join(',')}]`;
      throw new UserError(`${samples ? `${samples.where(0)}: the label` : 'labels'} of shape ${one(labels.dims)} do${samples ? 'es' : ''} not fit output '${outputName}' of shape ${one(scores.dims)} (expected ${one(lead)})`);
    }
    if (!isFloatType(scores.dtype)) throw new UserError(`output '${outputName}' is not a floating-point tensor of scores`);
    const s = scores.data as Float32Array;
    const l = labels.data;
    const n = s.length / classes;
    for (let p = 0; p < n; p++) {
      const label = Number(l[p]);
      if (label < 0) continue;
      if (label >= classes) {
        const at = samples ? `${samples.where(Math.floor((p * samples.count) / n))}: ` : '';
        throw new UserError(`${at}label ${label} is out of range for output '${outputName}' with ${classes} classes (0 to ${classes - 1})`);
      }
      const base = p * classes;
      let best = 0;
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        const v = s[base + c]!;
        if (v > max) {
          max = v;
          best = c;
        }
      }
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += Math.exp(s[base + c]! - max);
      this.nllSum += Math.log(sum) + max - s[base + label]!;
      if (best === label) this.correct++;
      this.positions++;
    }
  }

  get count(): number {
    return this.positions;
  }

  result(names: readonly MetricName[]): Record<string, number> {
    const nll = this.nllSum / this.positions;
    const all: Record<MetricName, number> = { top1: this.correct / this.positions, nll, perplexity: Math.exp(nll) };
    return Object.fromEntries(names.map((n) => [n, all[n]]));
  }
}
