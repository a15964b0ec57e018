import { HistogramObserver, type HistogramView } from './histogram.js';

/**
 * The value below which a share `q` (0..1) of the histogram's mass lies, interpolating
 * linearly inside the bin where the share is reached.
 */
export function histogramQuantile(h: HistogramView, q: number): number {
  const target = q * h.total;
  let cum = 0;
  const n = h.counts.length;
  for (let i = 0; i < n; i++) {
    const c = h.counts[i]!;
    if (c > 0 && cum + c >= target) return h.start + (i + Math.max(0, target - cum) / c) * h.width;
    cum += c;
  }
  return h.start + n * h.width;
}

/**
 * Clips the range to a percentile of the values: symmetric keeps `percentile`% of |x| inside
 * [-t, t]; asymmetric cuts (100 - percentile)/2 % from each tail.
 */
export class PercentileObserver extends HistogramObserver {
  protected channelRange(h: HistogramView): [number, number] {
    const p = this.spec.percentile! / 100;
    if (h.abs) {
      const t = histogramQuantile(h, p);
      return [-t, t];
    }
    const cut = (1 - p) / 2;
    return [histogramQuantile(h, cut), histogramQuantile(h, 1 - cut)];
  }
}
