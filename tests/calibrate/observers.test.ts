import { describe, expect, it } from 'vitest';
import { type ObserverSpec, createObserver, resolveObserverSpec } from '../../src/calibrate/observer.js';
import type { HistogramObserver } from '../../src/calibrate/histogram.js';
import { prefixSums, windowKl } from '../../src/calibrate/entropy.js';
import { MinMaxObserver } from '../../src/calibrate/minmax.js';
import { NonFiniteError } from '../../src/calibrate/non-finite.js';
import { UserError } from '../../src/errors.js';
import { laplace, normals, quantMse, quantile, referenceKl } from './reference.js';

const feed = (spec: ObserverSpec, data: Float32Array, batches = 1, dims?: (n: number) => number[]) => {
  const o = createObserver(spec);
  const per = Math.ceil(data.length / batches);
  for (let s = 0; s < data.length; s += per) {
    const part = data.subarray(s, Math.min(data.length, s + per));
    o.update(part, dims ? dims(part.length) : [part.length]);
  }
  return o;
};

/** Values growing in scale batch after batch, so streaming histograms must re-bin. */
function growing(n: number, seed: number): Float32Array {
  const x = laplace(n, seed);
  for (let i = 0; i < n; i++) x[i]! *= 0.2 + (1.8 * i) / n;
  return x;
}

describe('minmax observer', () => {
  it('is exact per tensor, symmetric and asymmetric', () => {
    const x = normals(10_000, 1, 2, 0.5);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of x) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const r = feed({ kind: 'minmax' }, x, 7).range();
    expect([r.min[0], r.max[0]]).toEqual([lo, hi]);
    const s = feed({ kind: 'minmax', symmetric: true }, x, 3).range();
    const t = Math.max(-lo, hi);
    expect([s.min[0], s.max[0]]).toEqual([-t, t]);
  });

  it('is exact per channel on the last axis and on a middle axis', () => {
    const [b, c, d] = [5, 3, 4];
    const x = normals(b * c * d, 2);
    const last = createObserver({ kind: 'minmax', perChannel: true });
    last.update(x, [b, c, d]);
    const mid = createObserver({ kind: 'minmax', perChannel: true, channelAxis: 1 });
    mid.update(x, [b, c, d]);
    for (let k = 0; k < d; k++) {
      const vals = [...x].filter((_, i) => i % d === k);
      expect(last.range().min[k]).toBe(Math.fround(Math.min(...vals)));
      expect(last.range().max[k]).toBe(Math.fround(Math.max(...vals)));
    }
    for (let k = 0; k < c; k++) {
      const vals = [...x].filter((_, i) => Math.floor(i / d) % c === k);
      expect(mid.range().min[k]).toBe(Math.fround(Math.min(...vals)));
      expect(mid.range().max[k]).toBe(Math.fround(Math.max(...vals)));
    }
  });

  it('folds in minima and maxima computed elsewhere', () => {
    const o = new MinMaxObserver(resolveObserverSpec({ kind: 'minmax', perChannel: true }));
    o.updateMinMax([1, -2], [3, 4], 10);
    o.updateMinMax([0, -1], [2, 5], 10);
    expect([...o.range().min]).toEqual([0, -2]);
    expect([...o.range().max]).toEqual([3, 5]);
    expect(o.count).toBe(20);
  });
});

describe('percentile observer', () => {
  const x = laplace(200_000, 3, 1, 0.3);

  it('matches sorting all samples within one bin (symmetric, on |x|)', () => {
    for (const percentile of [99, 99.9, 99.99]) {
      const o = feed({ kind: 'percentile', symmetric: true, percentile }, x, 10) as HistogramObserver;
      const t = quantile(x.map(Math.abs), percentile / 100);
      expect(Math.abs(o.range().max[0]! - t)).toBeLessThanOrEqual(o.histogram().width);
      expect(o.range().min[0]).toBe(-o.range().max[0]!);
    }
  });

  it('matches sorting all samples within one bin on both tails (asymmetric)', () => {
    const skewed = x.map((v) => (v > 0 ? v * 3 : v));
    const o = feed({ kind: 'percentile', percentile: 99.9 }, skewed, 10) as HistogramObserver;
    const w = o.histogram().width;
    expect(Math.abs(o.range().min[0]! - quantile(skewed, 0.0005))).toBeLessThanOrEqual(w);
    expect(Math.abs(o.range().max[0]! - quantile(skewed, 0.9995))).toBeLessThanOrEqual(w);
  });

  it('keeps its counts when the range grows (re-binning)', () => {
    const g = growing(50_000, 4);
    const o = feed({ kind: 'percentile', percentile: 99.9, bins: 256 }, g, 20) as HistogramObserver;
    const h = o.histogram();
    expect(h.total).toBe(g.length);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(g.length);
    expect(Math.abs(o.range().max[0]! - quantile(g, 0.9995))).toBeLessThanOrEqual(h.width);
    expect(Math.abs(o.range().min[0]! - quantile(g, 0.0005))).toBeLessThanOrEqual(h.width);
  });
});

/** Every window the reference considers, with its KL. */
function bruteForceKl(counts: Float64Array, nq: number, symmetric: boolean): { lo: number; hi: number; kl: number } {
  let first = 0;
  while (counts[first] === 0) first++;
  let last = counts.length - 1;
  while (counts[last] === 0) last--;
  let best = { lo: 0, hi: 0, kl: Infinity };
  const los = symmetric ? [0] : Array.from({ length: last + 2 - first }, (_, i) => first + i);
  for (const lo of los) {
    for (let hi = lo + nq; hi <= last + 1; hi++) {
      const kl = referenceKl(counts, lo, hi, nq);
      if (kl < best.kl) best = { lo, hi, kl };
    }
  }
  return best;
}

describe('entropy observer', () => {
  it('computes the KL divergence of a window as the reference does', () => {
    const x = laplace(5_000, 13, 1, 0.7);
    const h = (feed({ kind: 'entropy', bits: 3, bins: 48 }, x) as HistogramObserver).histogram();
    const prefix = prefixSums(h.counts);
    let checked = 0;
    for (let lo = 0; lo < 48; lo++) {
      for (let hi = lo + 8; hi <= 48; hi++) {
        const want = referenceKl(h.counts, lo, hi, 8);
        const got = windowKl(h.counts, prefix, lo, hi, 8);
        if (want === Infinity) expect(got).toBe(Infinity);
        else expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-12 * Math.max(1, want));
        checked++;
      }
    }
    expect(checked).toBe(861);
  });

  it('picks the threshold of a brute-force KL search (symmetric, 8 bits)', () => {
    const x = laplace(100_000, 5);
    const o = feed({ kind: 'entropy', symmetric: true, bins: 1024 }, x) as HistogramObserver;
    const h = o.histogram();
    const best = bruteForceKl(h.counts, 128, true);
    const t = o.range().max[0]!;
    expect(t).toBeCloseTo(Math.min(best.hi * h.width, Math.max(-h.min, h.max)), 5);
    expect(t).toBeLessThan(Math.max(-h.min, h.max)); // Laplace tails get clipped
    expect(o.range().min[0]).toBe(-t);
  });

  it('picks the window of an exhaustive KL search (asymmetric, small histogram)', () => {
    const x = laplace(20_000, 6, 1, 1.5).map((v) => (v < 0 ? v * 0.3 : v));
    const o = feed({ kind: 'entropy', bits: 4, bins: 64 }, x) as HistogramObserver;
    const h = o.histogram();
    const best = bruteForceKl(h.counts, 16, false);
    const r = o.range();
    // the ends are clamped to the data, which lies inside the window's end bins
    const lo = Math.floor((r.min[0]! - h.start) / h.width + 1e-6);
    const hi = Math.ceil((r.max[0]! - h.start) / h.width - 1e-6);
    expect(referenceKl(h.counts, lo, hi, 16)).toBeLessThanOrEqual(best.kl + 1e-12);
  });

  it('comes close to the exhaustive search on a large histogram (asymmetric, 8 bits)', () => {
    const x = laplace(100_000, 7, 1, 0.5);
    const o = feed({ kind: 'entropy', bins: 512 }, x) as HistogramObserver;
    const h = o.histogram();
    const best = bruteForceKl(h.counts, 256, false);
    const r = o.range();
    const lo = Math.floor((r.min[0]! - h.start) / h.width + 1e-6);
    const hi = Math.ceil((r.max[0]! - h.start) / h.width - 1e-6);
    expect(referenceKl(h.counts, lo, hi, 256)).toBeLessThanOrEqual(best.kl * 1.05 + 1e-9);
  });
});

describe('mse observer', () => {
  it('finds the range of a brute-force search over the samples (symmetric)', () => {
    for (const [bits, data] of [[8, laplace(40_000, 8)], [4, normals(40_000, 9)]] as const) {
      const o = feed({ kind: 'mse', symmetric: true, bits }, data, 5);
      const amax = Math.max(...data.map(Math.abs));
      let best = Infinity;
      for (let k = 1; k <= 400; k++) best = Math.min(best, quantMse(data, -(k * amax) / 400, (k * amax) / 400, bits, true));
      const r = o.range();
      expect(quantMse(data, r.min[0]!, r.max[0]!, bits, true)).toBeLessThanOrEqual(best * 1.01);
      expect(r.max[0]).toBeLessThan(amax);
    }
  });

  it('finds the range of a brute-force search over the samples (asymmetric)', () => {
    const data = laplace(20_000, 10, 1, 0.8).map((v) => (v < 0 ? v * 0.4 : v));
    const o = feed({ kind: 'mse', bits: 4 }, data, 5);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of data) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    let best = Infinity;
    for (let i = 0; i <= 40; i++) {
      for (let j = 0; j <= 40; j++) {
        const a = (lo * i) / 40;
        const b = (hi * (j + 1)) / 41;
        best = Math.min(best, quantMse(data, a, b, 4, false));
      }
    }
    const r = o.range();
    expect(quantMse(data, r.min[0]!, r.max[0]!, 4, false)).toBeLessThanOrEqual(best * 1.02);
  });
});

describe('all observers', () => {
  const kinds = ['minmax', 'percentile', 'entropy', 'mse'] as const;

  it('give the same range streamed in 10 batches as in one', () => {
    // the scale grows along the data, so the streamed histograms re-bin several times
    const x = normals(100_000, 11).map((v, i) => v * (0.5 + i / 100_000));
    for (const kind of kinds) {
      for (const symmetric of [true, false]) {
        const spec: ObserverSpec = { kind, symmetric, percentile: 99.9 };
        const one = feed(spec, x, 1);
        const ten = feed(spec, x, 10);
        const [a, b] = [one.range(), ten.range()];
        const what = `${kind} ${symmetric ? 'symmetric' : 'asymmetric'}`;
        if (kind === 'minmax') {
          expect([b.min[0], b.max[0]], what).toEqual([a.min[0], a.max[0]]);
        } else if (kind === 'percentile') {
          const bin = (ten as HistogramObserver).histogram().width;
          expect(Math.abs(b.min[0]! - a.min[0]!), what).toBeLessThanOrEqual(2 * bin);
          expect(Math.abs(b.max[0]! - a.max[0]!), what).toBeLessThanOrEqual(2 * bin);
        } else if (kind === 'mse') {
          // the objective itself, measured on the samples
          expect(quantMse(x, b.min[0]!, b.max[0]!, 8, symmetric), what).toBeLessThanOrEqual(quantMse(x, a.min[0]!, a.max[0]!, 8, symmetric) * 1.02);
        } else {
          // KL over a histogram depends on its resolution, and streaming ends with bins up to
          // 2x wider than one batch's; thresholds agree to a few percent of the range
          const scale = Math.max(a.max[0]!, -a.min[0]!);
          expect(Math.abs(b.min[0]! - a.min[0]!), what).toBeLessThanOrEqual(0.12 * scale);
          expect(Math.abs(b.max[0]! - a.max[0]!), what).toBeLessThanOrEqual(0.12 * scale);
        }
      }
    }
  });

  it('per channel equal per-tensor observers over each channel', () => {
    const [rows, c] = [2000, 4];
    const base = laplace(rows * c, 12);
    const x = base.map((v, i) => v * ((i % c) + 1) + (i % c));
    for (const kind of kinds) {
      const spec: ObserverSpec = { kind, perChannel: true, bins: 512 };
      const o = createObserver(spec);
      for (let r = 0; r < rows; r += 500) o.update(x.subarray(r * c, (r + 500) * c), [500, c]);
      const range = o.range();
      expect(range.min.length).toBe(c);
      for (let k = 0; k < c; k++) {
        const ch = createObserver({ kind, bins: 512 });
        for (let r = 0; r < rows; r += 500) {
          const part = x.subarray(r * c, (r + 500) * c).filter((_, i) => i % c === k);
          ch.update(part, [part.length]);
        }
        expect(range.min[k], `${kind} channel ${k}`).toBe(ch.range().min[0]);
        expect(range.max[k], `${kind} channel ${k}`).toBe(ch.range().max[0]);
      }
    }
  });

  it('per channel on a middle axis equal per-tensor observers over each channel', () => {
    const [outer, c, inner] = [3, 5, 200];
    const x = laplace(outer * c * inner, 14).map((v, i) => v * (Math.floor(i / inner) % c + 1));
    for (const kind of kinds) {
      const o = createObserver({ kind, perChannel: true, channelAxis: 1, bins: 256, bits: 6 });
      o.update(x, [outer, c, inner]);
      for (let k = 0; k < c; k++) {
        const part = x.filter((_, i) => Math.floor(i / inner) % c === k);
        const ch = createObserver({ kind, bins: 256, bits: 6 });
        ch.update(part, [part.length]);
        expect([o.range().min[k], o.range().max[k]], `${kind} channel ${k}`).toEqual([ch.range().min[0], ch.range().max[0]]);
      }
    }
  });

  it('reject NaN and infinities', () => {
    for (const kind of kinds) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const o = createObserver({ kind });
        expect(() => o.update(Float32Array.from([1, bad, 2]), [3]), `${kind} ${bad}`).toThrow(NonFiniteError);
      }
    }
  });

  it('check their options', () => {
    expect(() => createObserver({ kind: 'entropy', bits: 8, bins: 128 })).toThrow(UserError);
    expect(() => createObserver({ kind: 'percentile', percentile: 120 })).toThrow(UserError);
    expect(() => createObserver({ kind: 'nope' as 'minmax' })).toThrow(/unknown calibration method/);
    expect(resolveObserverSpec({ kind: 'percentile', perChannel: true })).toEqual({ kind: 'percentile', perChannel: true, channelAxis: -1, symmetric: false, bins: 512, percentile: 99.999 });
  });
});
