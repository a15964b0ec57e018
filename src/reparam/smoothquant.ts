import { calibrate } from '../calibrate/index.js';
import type { Dataset } from '../data/dataset.js';
import { discoverStructure } from '../discover/index.js';
import type { Model } from '../ir/model.js';
import { applyFold, findFoldSites, weightAbsMaxPerInput } from './fold.js';

export interface ReparamRunOptions {
  batchSize?: number;
  threads?: number;
  signal?: AbortSignal;
  cacheDir?: string | false;
}

export interface SmoothQuantResult {
  alpha: number;
  /** Norm outputs whose factors were folded, with the largest and smallest factor. */
  folded: { name: string; maxFactor: number; minFactor: number }[];
  skipped: { name: string; reason: string }[];
}

/**
 * SmoothQuant (Xiao et al. 2023) on the LayerNorm-affine fold: for every foldable norm the
 * per-channel factor s_j = max|x_j|^α / max|w_j|^(1-α) (x the norm output over the calibration
 * samples, w the rows of every reader's weight for input j) divides the norm's γ and β and
 * multiplies the readers' weight rows. The float model computes the same function; the
 * activation outliers move into the weights, which are quantized per output channel.
 */
export async function smoothQuant(model: Model, data: Dataset, alpha: number, options: ReparamRunOptions = {}): Promise<SmoothQuantResult> {
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`SmoothQuant alpha must lie in [0, 1], not ${alpha}`);
  const { sites, skipped } = findFoldSites(discoverStructure(model));
  const result: SmoothQuantResult = { alpha, folded: [], skipped };
  if (sites.length === 0) return result;
  const cal = await calibrate(model, data, {
    tensors: sites.map((s) => s.name),
    observer: { kind: 'minmax', perChannel: true, channelAxis: -1 },
    batchSize: options.batchSize,
    threads: options.threads,
    signal: options.signal,
    cacheDir: options.cacheDir,
  });
  for (const site of sites) {
    const range = cal.ranges.get(site.name)!;
    if (range.min.length !== site.hidden) {
      result.skipped.push({ name: site.name, reason: `calibration gave ${range.min.length} channel ranges for ${site.hidden} channels` });
      continue;
    }
    const wmax = weightAbsMaxPerInput(site);
    const scale = new Float64Array(site.hidden);
    for (let j = 0; j < site.hidden; j++) {
      const xmax = Math.max(Math.abs(range.min[j]!), Math.abs(range.max[j]!), 1e-5);
      scale[j] = Math.min(1e4, Math.max(1e-4, xmax ** alpha / Math.max(wmax[j]!, 1e-5) ** (1 - alpha)));
    }
    applyFold(model, site, { scale });
    result.folded.push({ name: site.name, maxFactor: Math.max(...scale), minFactor: Math.min(...scale) });
  }
  return result;
}
