import { describe, expect, it } from 'vitest';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { floatToFloat16Bits } from '../../src/ir/float-bits.js';
import { ComparisonAccumulator, labelsFitOutput, sqnrDb } from '../../src/validate/comparison.js';
import { GATE_METRICS, GATE_METRIC_INFO, isGateMetricName } from '../../src/validate/gate-metrics.js';
import { METRICS, isMetricName } from '../../src/validate/metrics.js';

const f32 = (dims: number[], data: ArrayLike<number>): ArrayTensor => ({ dtype: DataType.FLOAT, dims, data: Float32Array.from(data) });

/** Deterministic values with an occasional exact tie-free spread. */
function values(n: number, seed: number, scale = 3): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31 - 0.5) * 2 * scale;
  });
}

/** The three metrics by their definitions, in float64, over positions of `width` values. */
function reference(b: number[], c: number[], width: number, keep: (p: number) => boolean = () => true): { agreement: number; cosine: number; sqnr: number; n: number } {
  let agree = 0;
  let cos = 0;
  let signal = 0;
  let noise = 0;
  let n = 0;
  for (let p = 0; p < b.length / width; p++) {
    if (!keep(p)) continue;
    const x = b.slice(p * width, (p + 1) * width);
    const y = c.slice(p * width, (p + 1) * width);
    if (x.indexOf(Math.max(...x)) === y.indexOf(Math.max(...y))) agree++;
    const dot = x.reduce((a, v, i) => a + v * y[i]!, 0);
    const nx = Math.hypot(...x);
    const ny = Math.hypot(...y);
    cos += dot / (nx * ny);
    signal += x.reduce((a, v) => a + v * v, 0);
    noise += x.reduce((a, v, i) => a + (v - y[i]!) ** 2, 0);
    n++;
  }
  return { agreement: agree / n, cosine: cos / n, sqnr: 10 * Math.log10(signal / noise), n };
}

describe('metric catalogue', () => {
  it('keeps the label metrics of eval unchanged and adds the comparison and language-model metrics', () => {
    expect(METRICS).toEqual(['top1', 'nll', 'perplexity']);
    expect(isMetricName('agreement')).toBe(false);
    expect(GATE_METRICS).toEqual(['top1', 'nll', 'perplexity', 'agreement', 'cosine', 'sqnr', 'kl', 'stream-nll', 'stream-perplexity', 'gen-agreement', 'gen-divergence', 'topk-agreement']);
    expect(isGateMetricName('sqnr')).toBe(true);
    expect(isGateMetricName('f1')).toBe(false);
    const lower = GATE_METRICS.filter((m) => GATE_METRIC_INFO[m].direction === 'lower');
    expect(lower).toEqual(['nll', 'perplexity', 'kl', 'stream-nll', 'stream-perplexity']);
    expect(GATE_METRICS.filter((m) => GATE_METRIC_INFO[m].against === 'labels')).toEqual(['top1', 'nll', 'perplexity', 'stream-nll', 'stream-perplexity']);
  });
});

describe('ComparisonAccumulator', () => {
  it('agreement, cosine and sqnr match float64 reference computations, streamed over batches', () => {
    const [B, T, V] = [4, 5, 7];
    const b = values(B * T * V, 1).map((v) => Math.fround(v));
    // the candidate: the baseline plus noise, with some positions' argmax moved
    const c = b.map((v, i) => Math.fround(v + 0.4 * values(1, i + 99)[0]!));
    const ref = reference(b, c, V);
    expect(ref.agreement).toBeGreaterThan(0.3);
    expect(ref.agreement).toBeLessThan(1); // the noise moved some argmaxes: the test has teeth
    // one batch of 4, then the same data as batches of 1, 3
    const whole = new ComparisonAccumulator();
    whole.add(f32([B, T, V], b), f32([B, T, V], c), 'logits');
    const split = new ComparisonAccumulator();
    const row = T * V;
    split.add(f32([1, T, V], b.slice(0, row)), f32([1, T, V], c.slice(0, row)), 'logits');
    split.add(f32([3, T, V], b.slice(row)), f32([3, T, V], c.slice(row)), 'logits');
    for (const acc of [whole, split]) {
      const r = acc.result(['agreement', 'cosine', 'sqnr']);
      expect(acc.count).toBe(B * T);
      expect(r.agreement).toBe(ref.agreement);
      expect(Math.abs(r.cosine! - ref.cosine)).toBeLessThan(1e-12);
      expect(Math.abs(r.sqnr! - ref.sqnr)).toBeLessThan(1e-9);
    }
    expect(Object.keys(whole.result(['sqnr']))).toEqual(['sqnr']);
  });

  it('identical outputs: agreement 1, cosine 1, sqnr +Infinity; a scaled output keeps cosine 1', () => {
    const b = values(30, 5);
    const acc = new ComparisonAccumulator();
    acc.add(f32([10, 3], b), f32([10, 3], b), 'y');
    expect(acc.result(['agreement', 'cosine', 'sqnr'])).toEqual({ agreement: 1, cosine: 1, sqnr: Infinity });
    const scaled = new ComparisonAccumulator();
    scaled.add(f32([10, 3], b), f32([10, 3], b.map((v) => v * 2)), 'y');
    const r = scaled.result(['agreement', 'cosine', 'sqnr']);
    expect(r.agreement).toBe(1);
    expect(Math.abs(r.cosine! - 1)).toBeLessThan(1e-7);
    // noise = signal (c - b = b): 0 dB
    expect(Math.abs(r.sqnr!)).toBeLessThan(1e-9);
  });

  it('sqnr is 10·log10 of the energy ratio: noise at a tenth of the amplitude gives 20 dB', () => {
    const acc = new ComparisonAccumulator();
    acc.add(f32([1, 4], [1, -1, 1, -1]), f32([1, 4], [1.1, -1.1, 0.9, -0.9]), 'y');
    expect(acc.result(['sqnr']).sqnr).toBeCloseTo(20, 5);
    expect(sqnrDb(100, 1)).toBe(20);
    expect(sqnrDb(0, 0)).toBe(Infinity);
  });

  it('cosine of zero vectors: 1 when both are zero, 0 when one is', () => {
    const acc = new ComparisonAccumulator();
    acc.add(f32([2, 2], [0, 0, 0, 0]), f32([2, 2], [0, 0, 1, 0]), 'y');
    expect(acc.result(['cosine']).cosine).toBe(0.5);
  });

  it('leaves out positions whose label is negative (padding), when labels are given', () => {
    const [B, T, V] = [2, 6, 5];
    const b = values(B * T * V, 7).map(Math.fround);
    const c = b.map((v, i) => Math.fround(v + 0.5 * Math.sin(i * 1.3)));
    const labels = BigInt64Array.from({ length: B * T }, (_, p) => BigInt(p % 3 === 2 ? -100 : p % V));
    const acc = new ComparisonAccumulator();
    acc.add(f32([B, T, V], b), f32([B, T, V], c), 'logits', { dtype: DataType.INT64, dims: [B, T], data: labels });
    const ref = reference(b, c, V, (p) => p % 3 !== 2);
    expect(acc.count).toBe(ref.n);
    const r = acc.result(['agreement', 'cosine', 'sqnr']);
    expect(r.agreement).toBe(ref.agreement);
    expect(Math.abs(r.cosine! - ref.cosine)).toBeLessThan(1e-12);
    expect(Math.abs(r.sqnr! - ref.sqnr)).toBeLessThan(1e-9);
    expect(labelsFitOutput([B, T], [B, T, V])).toBe(true);
    expect(labelsFitOutput([B, T, 1], [B, T, V])).toBe(true);
    expect(labelsFitOutput([B], [B, T, V])).toBe(false);
  });

  it('reads float16 outputs', () => {
    const b = [0.5, -1, 2, 0.25];
    const c = [0.5, -1, 2, 0.5];
    const h = (v: number[]): ArrayTensor => ({ dtype: DataType.FLOAT16, dims: [1, 4], data: Uint16Array.from(v, floatToFloat16Bits) });
    const acc = new ComparisonAccumulator();
    acc.add(h(b), h(c), 'y');
    expect(acc.result(['sqnr']).sqnr).toBeCloseTo(reference(b, c, 4).sqnr, 9);
  });

  it('NaN in the candidate makes cosine and sqnr NaN (a gate then fails)', () => {
    const acc = new ComparisonAccumulator();
    acc.add(f32([1, 3], [1, 2, 3]), f32([1, 3], [1, NaN, 3]), 'y');
    const r = acc.result(['cosine', 'sqnr']);
    expect(r.cosine).toBeNaN();
    expect(r.sqnr).toBeNaN();
  });

  it('rejects outputs of different shapes and outputs that are not floating point', () => {
    const acc = new ComparisonAccumulator();
    expect(() => acc.add(f32([2, 3], values(6, 1)), f32([3, 2], values(6, 1)), 'logits')).toThrow(/output 'logits' has shape \[2,3\] in the baseline but \[3,2\] in the candidate/);
    const ints: ArrayTensor = { dtype: DataType.INT64, dims: [1, 2], data: new BigInt64Array(2) };
    expect(() => acc.add(ints, ints, 'ids')).toThrow(/output 'ids' is int64, not a floating-point tensor/);
  });
});
