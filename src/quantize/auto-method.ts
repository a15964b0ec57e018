import { OUTLIER_FACTOR, outlierChannels } from '../analyze/analyze.js';
import { calibrate } from '../calibrate/index.js';
import type { Dataset } from '../data/dataset.js';
import { discoverStructure } from '../discover/index.js';
import type { Model } from '../ir/model.js';
import { findFoldSites } from '../reparam/fold.js';

/** One post-norm activation the choice looked at. */
export interface OutlierSite {
  /** The norm output (RepQuant's fold site). */
  name: string;
  /** Channels over the outlier factor, and the largest channel maximum over the median's. */
  outliers: number;
  ratio: number;
}

export interface StaticMethodChoice {
  method: 'rtn' | 'repquant';
  factor: number;
  sites: OutlierSite[];
  /** One sentence for the report: what was measured and what it led to. */
  reason: string;
}

/**
 * The method a static scheme (w8a8, w6a6, w4a4) gets when none is named. Per-tensor activation
 * grids break on post-norm activations with outlier channels (a 60x channel costs vit_mnist_outlier
 * 11.6 points at w8a8); RepQuant folds a per-channel grid into the norm and removes that. So the
 * norm outputs RepQuant can fold are calibrated per channel (min-max over the calibration data) and
 * measured as `analyze` measures outliers: a channel is an outlier when its max |x| exceeds
 * OUTLIER_FACTOR (6) × the median channel's. Any outlier channel: repquant; none: rtn. The bundled
 * and trained zoo models stay at 2.2 or less, the outlier variants reach 84 to 129
 * (docs/flexround.md, "Defaults").
 */
export async function chooseStaticMethod(
  model: Model,
  calibration: Dataset,
  run: { batchSize?: number; threads?: number; signal?: AbortSignal },
  factor = OUTLIER_FACTOR,
): Promise<StaticMethodChoice> {
  const { sites } = findFoldSites(discoverStructure(model));
  if (sites.length === 0) return { method: 'rtn', factor, sites: [], reason: 'method rtn: no norm output RepQuant could fold, so no outlier measurement' };
  const cal = await calibrate(model, calibration, {
    tensors: sites.map((s) => s.name),
    observer: { kind: 'minmax', perChannel: true, channelAxis: -1, symmetric: false, bits: 8 },
    batchSize: run.batchSize,
    threads: run.threads,
    signal: run.signal,
    // a quick min-max pass; kept out of the calibration cache, whose entries are the quantizer's
    cacheDir: false,
  });
  const measured: OutlierSite[] = [];
  for (const s of sites) {
    const r = cal.ranges.get(s.name);
    if (!r || r.min.length !== s.hidden) continue;
    const maxima = Array.from(r.max, (hi, c) => Math.max(Math.abs(hi), Math.abs(r.min[c]!)));
    const sorted = [...maxima].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const med = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
    measured.push({ name: s.name, outliers: outlierChannels(maxima, factor).length, ratio: med > 0 ? sorted[sorted.length - 1]! / med : 0 });
  }
  const hit = measured.filter((m) => m.outliers > 0);
  const worst = measured.reduce<OutlierSite | undefined>((a, b) => (!a || b.ratio > a.ratio ? b : a), undefined);
  const worstText = worst ? `largest channel max ${worst.ratio.toFixed(1)}x the median channel's, at ${worst.name}` : 'nothing measured';
  return hit.length > 0
    ? { method: 'repquant', factor, sites: measured, reason: `method repquant chosen: ${hit.length} of ${measured.length} post-norm activation(s) have outlier channels (over ${factor}x the median channel's max |x|; ${worstText}); --method rtn keeps per-tensor round to nearest` }
    : { method: 'rtn', factor, sites: measured, reason: `method rtn: no outlier channel in ${measured.length} post-norm activation(s) (${worstText}; repquant is chosen over ${factor}x)` };
}
