import { type ChannelLayout, channelLayout, channelMinMax } from './channels.js';
import { checkFinite, checkLength } from './minmax.js';
import { NonFiniteError } from './non-finite.js';
import type { Observer, ResolvedObserverSpec, TensorRange } from './observer.js';

/**
 * One channel's histogram: `bins` bins of equal `width` from `start`. Bin i holds values in
 * [start + i*width, start + (i+1)*width) (the last bin also holds its upper edge). In `abs`
 * mode the histogram is of |x| and start is 0.
 */
export interface HistogramView {
  counts: Float64Array;
  start: number;
  width: number;
  abs: boolean;
  /** Smallest and largest value seen (of x itself, not |x|). */
  min: number;
  max: number;
  total: number;
}

/**
 * Fixed-size histograms, one per channel, that re-bin when the range grows. The grid is
 * anchored at multiples of the bin width and widened by an integer factor, so old bins fall
 * whole into new ones: re-binning moves counts without splitting them. Memory is
 * channels x bins x 8 bytes whatever the number of values.
 */
export class Histograms {
  channels = 0;
  counts = new Float64Array(0);
  start = new Float64Array(0);
  width = new Float64Array(0);
  min = new Float64Array(0);
  max = new Float64Array(0);
  total = new Float64Array(0);
  private batchMin = new Float64Array(0);
  private batchMax = new Float64Array(0);

  constructor(
    readonly bins: number,
    readonly abs: boolean,
  ) {}

  /** Adds a batch laid out as `layout` says. Throws NonFiniteError on NaN or an infinity. */
  add(data: Float32Array, layout: ChannelLayout): void {
    if (data.length === 0) return;
    checkLength(data, layout);
    this.init(layout.channels);
    const bmin = this.batchMin.fill(Infinity);
    const bmax = this.batchMax.fill(-Infinity);
    if (channelMinMax(data, layout, bmin, bmax) > 0) throw new NonFiniteError(true);
    checkFinite(bmin, bmax);
    for (let c = 0; c < this.channels; c++) {
      const lo = this.abs ? 0 : bmin[c]!;
      const hi = this.abs ? Math.max(-bmin[c]!, bmax[c]!) : bmax[c]!;
      this.cover(c, lo, hi);
      if (bmin[c]! < this.min[c]!) this.min[c] = bmin[c]!;
      if (bmax[c]! > this.max[c]!) this.max[c] = bmax[c]!;
      this.total[c]! += data.length / this.channels;
    }
    this.fill(data, layout);
  }

  view(channel: number): HistogramView {
    const b = this.bins;
    return {
      counts: this.counts.subarray(channel * b, (channel + 1) * b),
      start: this.start[channel]!,
      width: this.width[channel]!,
      abs: this.abs,
      min: this.min[channel]!,
      max: this.max[channel]!,
      total: this.total[channel]!,
    };
  }

  private init(channels: number): void {
    if (this.channels === channels) return;
    if (this.channels !== 0) throw new RangeError(`the tensor had ${this.channels} channels before and ${channels} now`);
    this.channels = channels;
    this.counts = new Float64Array(channels * this.bins);
    this.start = new Float64Array(channels);
    this.width = new Float64Array(channels);
    this.min = new Float64Array(channels).fill(Infinity);
    this.max = new Float64Array(channels).fill(-Infinity);
    this.total = new Float64Array(channels);
    this.batchMin = new Float64Array(channels);
    this.batchMax = new Float64Array(channels);
  }

  /** Makes channel c's grid cover [lo, hi], re-binning its counts if it has to grow. */
  private cover(c: number, lo: number, hi: number): void {
    const bins = this.bins;
    const w = this.width[c]!;
    const a = this.start[c]!;
    if (w === 0) {
      const span = hi - lo;
      const width = span > 0 ? span / (bins - 1) : Math.max(Math.abs(lo), Math.abs(hi), 1e-30) / (bins - 1);
      this.width[c] = width;
      this.start[c] = this.abs ? 0 : Math.floor(lo / width) * width;
      return;
    }
    if (lo >= a && hi <= a + bins * w) return;
    const counts = this.counts.subarray(c * bins, (c + 1) * bins);
    let first = 0;
    while (first < bins && counts[first] === 0) first++;
    let last = bins - 1;
    while (last >= 0 && counts[last] === 0) last--;
    const needLo = first < bins ? Math.min(lo, a + first * w) : lo;
    const needHi = last >= 0 ? Math.max(hi, a + (last + 1) * w) : hi;
    // the smallest integer widening factor whose grid, anchored at a multiple of the new width
    // (headroom split between both ends), covers old and new data; 1 moves the grid only
    const place = (w2: number): number => {
      if (this.abs) return 0;
      const slack = Math.max(0, bins * w2 - (needHi - needLo)) / 2;
      let a2 = Math.floor((needLo - slack) / w2) * w2;
      if (a2 > needLo) a2 -= w2;
      return a2;
    };
    let k = Math.max(1, Math.ceil((needHi - needLo) / (bins * w)));
    let w2 = k * w;
    let a2 = place(w2);
    while (a2 > needLo || a2 + bins * w2 < needHi) {
      k = k < 2 ** 52 ? k + 1 : k * (1 + 2 ** -40);
      w2 = k * w;
      a2 = place(w2);
    }
    const old = counts.slice();
    counts.fill(0);
    for (let i = first; i <= last; i++) {
      const n = old[i]!;
      if (n === 0) continue;
      const j = Math.floor((a + (i + 0.5) * w - a2) / w2);
      counts[j < 0 ? 0 : j >= bins ? bins - 1 : j]! += n;
    }
    this.start[c] = a2;
    this.width[c] = w2;
  }

  private fill(data: Float32Array, layout: ChannelLayout): void {
    const bins = this.bins;
    const last = bins - 1;
    const counts = this.counts;
    const { channels, inner } = layout;
    if (channels === 1) {
      const a = this.start[0]!;
      const inv = 1 / this.width[0]!;
      if (this.abs) {
        // Math.abs, not a branch on the sign: random signs defeat branch prediction (2.5x slower)
        for (let i = 0; i < data.length; i++) {
          const j = (Math.abs(data[i]!) * inv) | 0;
          counts[j > last ? last : j]!++;
        }
      } else {
        for (let i = 0; i < data.length; i++) {
          const j = ((data[i]! - a) * inv) | 0;
          counts[j > last ? last : j]!++;
        }
      }
      return;
    }
    const start = this.start;
    const inv = this.width.map((w) => 1 / w);
    if (inner === 1) {
      for (let o = 0; o < data.length; o += channels) {
        for (let c = 0, base = 0; c < channels; c++, base += bins) {
          const x = data[o + c]!;
          const j = (((this.abs ? Math.abs(x) : x) - start[c]!) * inv[c]!) | 0;
          counts[base + (j > last ? last : j)]!++;
        }
      }
      return;
    }
    const block = channels * inner;
    for (let o = 0; o < data.length; o += block) {
      for (let c = 0; c < channels; c++) {
        const a = start[c]!;
        const s = inv[c]!;
        const base = c * bins;
        const from = o + c * inner;
        for (let i = from; i < from + inner; i++) {
          const x = data[i]!;
          const j = (((this.abs ? Math.abs(x) : x) - a) * s) | 0;
          counts[base + (j > last ? last : j)]!++;
        }
      }
    }
  }
}

/**
 * Base of the observers that keep histograms (percentile, entropy, mse): they differ only in
 * how a range is read from a channel's histogram.
 */
export abstract class HistogramObserver implements Observer {
  count = 0;
  protected readonly histograms: Histograms;

  constructor(readonly spec: ResolvedObserverSpec) {
    this.histograms = new Histograms(spec.bins!, spec.symmetric);
  }

  update(data: Float32Array, dims: readonly number[]): void {
    if (data.length === 0) return;
    this.histograms.add(data, channelLayout(dims, this.spec.channelAxis));
    this.count += data.length;
  }

  /** Channel c's histogram (for reports and tests). */
  histogram(channel = 0): HistogramView {
    if (channel < 0 || channel >= this.histograms.channels) throw new RangeError(`no histogram for channel ${channel}`);
    return this.histograms.view(channel);
  }

  range(): TensorRange {
    const n = this.histograms.channels;
    if (n === 0) throw new Error('the observer has seen no data');
    const min = new Float32Array(n);
    const max = new Float32Array(n);
    for (let c = 0; c < n; c++) {
      const h = this.histograms.view(c);
      let [lo, hi] = this.channelRange(h);
      // never wider than the data
      if (this.spec.symmetric) {
        const t = Math.min(Math.max(-lo, hi), Math.max(-h.min, h.max));
        lo = -t;
        hi = t;
      } else {
        lo = Math.max(lo, h.min);
        hi = Math.min(hi, h.max);
      }
      min[c] = lo;
      max[c] = hi;
    }
    return { min, max };
  }

  /** The range [lo, hi] chosen from one channel's histogram (symmetric: an |x| histogram, return [-t, t]). */
  protected abstract channelRange(h: HistogramView): [number, number];
}
