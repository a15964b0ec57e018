import { occupied } from './entropy.js';
import { HistogramObserver, type HistogramView } from './histogram.js';
import { quantParams } from './qparams.js';
import { search1d, search2d } from './search.js';

/**
 * Expected squared error (summed over all values) of quantizing the histogram's values with
 * the range [lo, hi] at `bits` bits, taking values as spread evenly inside each bin. The
 * quantizer is the one of quantParams(); an |x| histogram (symmetric) folds both signs, which
 * the symmetric quantizer treats alike.
 */
export function histogramQuantError(h: HistogramView, lo: number, hi: number, bits: number): number {
  const qp = quantParams(lo, hi, { bits, symmetric: h.abs });
  const s = qp.scale;
  // levels k * s for k in [kmin, kmax]
  const kmin = h.abs ? 0 : qp.qmin - qp.zeroPoint;
  const kmax = qp.qmax - qp.zeroPoint;
  const level = (x: number): number => {
    const k = Math.floor(x / s + 0.5);
    return k < kmin ? kmin : k > kmax ? kmax : k;
  };
  const { counts, start, width } = h;
  let total = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i]!;
    if (n === 0) continue;
    const a = start + i * width;
    const b = a + width;
    const ka = level(a);
    const kb = level(b);
    let u = a;
    let err = 0;
    for (let k = ka; k <= kb; k++) {
      const v = k === kb ? b : Math.min(b, (k + 0.5) * s);
      const L = k * s;
      const du = u - L;
      const dv = v - L;
      err += ((v - u) * (dv * dv + dv * du + du * du)) / 3;
      u = v;
    }
    total += (err / width) * n;
  }
  return total;
}

/**
 * MSE calibration: the clipping range that minimizes the expected quantization error computed
 * from the histogram (no samples kept). Symmetric: thresholds at bin edges of the |x|
 * histogram; asymmetric: windows over the signed histogram; both coarse-to-fine searches.
 */
export class MseObserver extends HistogramObserver {
  protected channelRange(h: HistogramView): [number, number] {
    const bits = this.spec.bits!;
    const [first, last] = occupied(h.counts);
    if (h.abs) {
      const hi = search1d(1, last + 1, (k) => histogramQuantError(h, 0, h.start + k * h.width, bits));
      const t = h.start + hi * h.width;
      return [-t, t];
    }
    const [lo, hi] = search2d(first, last + 1, 1, (a, b) => histogramQuantError(h, h.start + a * h.width, h.start + b * h.width, bits));
    return [h.start + lo * h.width, h.start + hi * h.width];
  }
}
