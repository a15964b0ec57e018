import { HistogramObserver, type HistogramView } from './histogram.js';
import { search2d } from './search.js';

const EPS = 1e-4;

/**
 * KL(p || q) of quantizing the histogram window [lo, hi) (bin indices) into `quantBins` bins,
 * as TensorRT's and onnxruntime's entropy calibration define it:
 * - p is the window's counts with the mass outside it added to its first and last bins;
 * - q merges the window (without that outside mass) into quantBins groups of
 *   floor(length / quantBins) bins (the last group takes the remainder) and spreads each
 *   group's sum evenly over the group's bins where p is not zero;
 * - both are smoothed in count space (eps = 1e-4 moved onto their zero bins) and normalized.
 * `prefix[i]` is the sum of counts[0..i). Infinity when smoothing cannot make q positive.
 */
export function windowKl(counts: Float64Array, prefix: Float64Array, lo: number, hi: number, quantBins: number, scratch?: { sum: Float64Array; nnz: Float64Array }): number {
  const len = hi - lo;
  const m = Math.floor(len / quantBins);
  if (m < 1) throw new RangeError(`a window of ${len} bins cannot be split into ${quantBins}`);
  const n = counts.length;
  const left = prefix[lo]!;
  const right = prefix[n]! - prefix[hi]!;
  const sum = scratch?.sum ?? new Float64Array(quantBins);
  const nnz = scratch?.nnz ?? new Float64Array(quantBins);
  const p = (k: number): number => counts[lo + k]! + (k === 0 ? left : 0) + (k === len - 1 ? right : 0);
  let pZeros = 0;
  let qZeros = 0;
  let qSum = 0;
  for (let g = 0; g < quantBins; g++) {
    const from = g * m;
    const to = g === quantBins - 1 ? len : from + m;
    let s = 0;
    let z = 0;
    for (let k = from; k < to; k++) {
      s += counts[lo + k]!;
      if (p(k) !== 0) z++;
    }
    sum[g] = s;
    nnz[g] = z;
    pZeros += to - from - z;
    qZeros += to - from - (s > 0 ? z : 0);
    if (z > 0) qSum += s;
  }
  const pSum = prefix[n]!;
  const pNonZero = len - pZeros;
  const qNonZero = len - qZeros;
  if (pNonZero === 0 || qNonZero === 0) return Infinity;
  const pEps = (EPS * pZeros) / pNonZero;
  const qEps = (EPS * qZeros) / qNonZero;
  let kl = 0;
  for (let g = 0; g < quantBins; g++) {
    const from = g * m;
    const to = g === quantBins - 1 ? len : from + m;
    const qv = nnz[g]! > 0 ? sum[g]! / nnz[g]! : 0;
    for (let k = from; k < to; k++) {
      const pk = p(k);
      const pp = pk === 0 ? EPS : pk - pEps;
      const qq = pk === 0 || qv === 0 ? EPS : qv - qEps;
      if (pp <= 0 || qq <= 0) return Infinity;
      const P = pp / pSum;
      kl += P * Math.log(P / (qq / qSum));
    }
  }
  return kl;
}

/** Prefix sums: out[i] = sum of counts[0..i). */
export function prefixSums(counts: Float64Array): Float64Array {
  const out = new Float64Array(counts.length + 1);
  for (let i = 0; i < counts.length; i++) out[i + 1] = out[i]! + counts[i]!;
  return out;
}

/** First and last bin holding any count (-1, -1 when empty). */
export function occupied(counts: Float64Array): [number, number] {
  let first = 0;
  while (first < counts.length && counts[first] === 0) first++;
  if (first === counts.length) return [-1, -1];
  let last = counts.length - 1;
  while (counts[last] === 0) last--;
  return [first, last];
}

/**
 * Entropy (KL-divergence) calibration: the clipping range whose quantization loses the least
 * information. Symmetric: over an |x| histogram, thresholds t = hi bins for hi from
 * 2^(bits-1) to the last occupied bin (TensorRT's search, every candidate tried; the first
 * minimum wins). Asymmetric: windows [lo, hi) of at least 2^bits bins over the signed histogram
 * (a coarse-to-fine search over both ends).
 */
export class EntropyObserver extends HistogramObserver {
  protected channelRange(h: HistogramView): [number, number] {
    const bits = this.spec.bits!;
    const [first, last] = occupied(h.counts);
    const prefix = prefixSums(h.counts);
    if (h.abs) {
      const quantBins = 2 ** (bits - 1);
      if (last + 1 < quantBins) return [-h.max, h.max];
      const scratch = { sum: new Float64Array(quantBins), nnz: new Float64Array(quantBins) };
      let best = last + 1;
      let bestKl = Infinity;
      for (let hi = quantBins; hi <= last + 1; hi++) {
        const kl = windowKl(h.counts, prefix, 0, hi, quantBins, scratch);
        if (kl < bestKl) {
          bestKl = kl;
          best = hi;
        }
      }
      const t = h.start + best * h.width;
      return [-t, t];
    }
    const quantBins = 2 ** bits;
    if (last + 1 - first < quantBins) return [h.min, h.max];
    const scratch = { sum: new Float64Array(quantBins), nnz: new Float64Array(quantBins) };
    const [lo, hi] = search2d(first, last + 1, quantBins, (a, b) => windowKl(h.counts, prefix, a, b, quantBins, scratch));
    return [h.start + lo * h.width, h.start + hi * h.width];
  }
}
