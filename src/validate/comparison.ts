import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import { bfloat16BitsToFloat, float16BitsToFloat } from '../ir/float-bits.js';

/** Metrics that compare a candidate's outputs with the baseline's on the same batch (no labels). */
export const COMPARISON_METRICS = ['agreement', 'cosine', 'sqnr', 'kl'] as const;
export type ComparisonMetricName = (typeof COMPARISON_METRICS)[number];

export function isComparisonMetricName(s: string): s is ComparisonMetricName {
  return (COMPARISON_METRICS as readonly string[]).includes(s);
}

/**
 * Streams a candidate's outputs against the baseline's outputs for the same inputs. A
 * "position" is one vector along the output's last axis (one per sample for a classifier, one
 * per token for a language model), as in MetricAccumulator. Sums are kept in float64, so memory
 * does not grow with the number of samples.
 *  agreement: share of positions whose argmax (first maximum) equals the baseline's argmax
 *  cosine:    mean over positions of cos(baseline, candidate); 1 when both vectors are zero,
 *             0 when only one is
 *  sqnr:      10·log10(Σ baseline² / Σ (baseline − candidate)²) in dB over every element of
 *             every position; +Infinity when the outputs are identical
 *  kl:        mean over positions of KL(softmax(baseline) ‖ softmax(candidate)) in nats, for
 *             logits: how far the candidate's predicted distribution is from the baseline's
 * Positions whose label is negative (the -100 padding convention) are left out when labels
 * are given.
 */
export class ComparisonAccumulator {
  private positions = 0;
  private agreeing = 0;
  private cosineSum = 0;
  private signal = 0;
  private noise = 0;
  private klSum = 0;

  add(baseline: ArrayTensor, candidate: ArrayTensor, outputName: string, labels?: ArrayTensor): void {
    if (baseline.dims.length !== candidate.dims.length || baseline.dims.some((d, i) => d !== candidate.dims[i])) {
      throw new UserError(`output '${outputName}' has shape [${baseline.dims.join(',')}] in the baseline but [${candidate.dims.join(',')}] in the candidate`);
    }
    const b = floatValues(baseline, outputName);
    const c = floatValues(candidate, outputName);
    const width = baseline.dims.length === 0 ? 1 : baseline.dims[baseline.dims.length - 1]!;
    if (width === 0 || b.length === 0) return;
    const n = b.length / width;
    if (labels && labels.data.length !== n) {
      throw new UserError(`labels of shape [${labels.dims.join(',')}] do not fit output '${outputName}' of shape [${baseline.dims.join(',')}]`);
    }
    for (let p = 0; p < n; p++) {
      if (labels && Number(labels.data[p]) < 0) continue;
      const base = p * width;
      let bestB = 0;
      let bestC = 0;
      let maxB = -Infinity;
      let maxC = -Infinity;
      let dot = 0;
      let bb = 0;
      let cc = 0;
      let dd = 0;
      for (let k = 0; k < width; k++) {
        const x = b[base + k]!;
        const y = c[base + k]!;
        if (x > maxB) {
          maxB = x;
          bestB = k;
        }
        if (y > maxC) {
          maxC = y;
          bestC = k;
        }
        dot += x * y;
        bb += x * x;
        cc += y * y;
        dd += (x - y) * (x - y);
      }
      if (bestB === bestC) this.agreeing++;
      this.klSum += klOfLogits(b, c, base, width, maxB, maxC);
      this.cosineSum += cosine(dot, bb, cc);
      this.signal += bb;
      this.noise += dd;
      this.positions++;
    }
  }

  get count(): number {
    return this.positions;
  }

  result(names: readonly ComparisonMetricName[]): Record<string, number> {
    const all: Record<ComparisonMetricName, number> = {
      agreement: this.agreeing / this.positions,
      cosine: this.cosineSum / this.positions,
      sqnr: sqnrDb(this.signal, this.noise),
      kl: this.klSum / this.positions,
    };
    return Object.fromEntries(names.map((n) => [n, all[n]]));
  }
}

/** KL(softmax(b) ‖ softmax(c)) of one position, given each vector's maximum (for stable log-sum-exp); never below 0. */
function klOfLogits(b: ArrayLike<number>, c: ArrayLike<number>, base: number, width: number, maxB: number, maxC: number): number {
  let zb = 0;
  let zc = 0;
  for (let k = 0; k < width; k++) {
    zb += Math.exp(b[base + k]! - maxB);
    zc += Math.exp(c[base + k]! - maxC);
  }
  const lzb = Math.log(zb) + maxB;
  const lzc = Math.log(zc) + maxC;
  let kl = 0;
  for (let k = 0; k < width; k++) {
    const lb = b[base + k]! - lzb;
    kl += Math.exp(lb) * (lb - (c[base + k]! - lzc));
  }
  return Math.max(0, kl);
}

function cosine(dot: number, bb: number, cc: number): number {
  if (bb === 0 && cc === 0) return 1;
  if (bb === 0 || cc === 0) return 0;
  return dot / Math.sqrt(bb * cc);
}

/** 10·log10(signal / noise): +Infinity for no noise (0/0 too: two all-zero outputs are identical). */
export function sqnrDb(signal: number, noise: number): number {
  if (noise === 0) return Number.isNaN(signal) ? NaN : Infinity;
  return 10 * Math.log10(signal / noise);
}

/** True when a label tensor holds one entry per position of an output with these dims. */
export function labelsFitOutput(labelDims: readonly number[], outputDims: readonly number[]): boolean {
  const lead = outputDims.slice(0, -1);
  if (labelDims.length === lead.length) return labelDims.every((d, i) => d === lead[i]);
  return labelDims.length === lead.length + 1 && labelDims[labelDims.length - 1] === 1 && lead.every((d, i) => d === labelDims[i]);
}

function floatValues(t: ArrayTensor, outputName: string): ArrayLike<number> {
  switch (t.dtype) {
    case DataType.FLOAT:
    case DataType.DOUBLE:
      return t.data as Float32Array | Float64Array;
    case DataType.FLOAT16:
      return Float64Array.from(t.data as Uint16Array, float16BitsToFloat);
    case DataType.BFLOAT16:
      return Float64Array.from(t.data as Uint16Array, bfloat16BitsToFloat);
    default:
      throw new UserError(`output '${outputName}' is ${dtypeName(t.dtype)}, not a floating-point tensor of scores, so it cannot be compared`);
  }
}
