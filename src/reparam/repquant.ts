import { calibrate } from '../calibrate/index.js';
import { roundHalfEven } from '../calibrate/qparams.js';
import type { Dataset } from '../data/dataset.js';
import { discoverStructure } from '../discover/index.js';
import type { ActivationParams } from '../export/qdq.js';
import type { Model } from '../ir/model.js';
import { applyFold, findFoldSites, type FoldSite } from './fold.js';
import type { ReparamRunOptions } from './smoothquant.js';

export interface RepQuantOptions extends ReparamRunOptions {
  /** Bits of the activation grid (8, 6, 4...). */
  bits: number;
  /**
   * How each channel's lower and upper bound are chosen: 'mse' searches both bounds of every
   * channel for the smallest expected quantization error (dual clipping); 'percentile' and
   * 'minmax' take quantiles / the full range.
   */
  observer?: 'minmax' | 'percentile' | 'mse';
}

/** The per-channel grid of one post-LN activation and the per-tensor grid that replaces it. */
export interface ChannelGrid {
  /** Per-channel scale s_c and integer zero point z_c. */
  scales: Float64Array;
  zeroPoints: Int32Array;
  /** The per-tensor target: s̃ = mean(s), z̃ = round(mean(z)) clamped to the grid. */
  scale: number;
  zeroPoint: number;
  qmax: number;
}

export interface RepQuantResult {
  bits: number;
  observer: string;
  /** Per-tensor activation parameters for the reparameterized norm outputs (what export uses). */
  activations: Map<string, ActivationParams>;
  folded: { name: string; scale: number; zeroPoint: number; maxRatio: number; minRatio: number }[];
  skipped: { name: string; reason: string }[];
}

/**
 * Per-channel grids from per-channel bounds: s_c = (hi_c - lo_c) / qmax, z_c = round(-lo_c / s_c)
 * (any integer: only the target must lie in [0, qmax]); the target is s̃ = mean(s_c) and the
 * integer z̃ = round(mean(z_c)). The zero point must stay an integer for the rewrite to be exact.
 */
export function channelGrid(lo: ArrayLike<number>, hi: ArrayLike<number>, bits: number): ChannelGrid {
  const n = lo.length;
  const qmax = 2 ** bits - 1;
  const scales = new Float64Array(n);
  const zeroPoints = new Int32Array(n);
  let widest = 0;
  for (let c = 0; c < n; c++) widest = Math.max(widest, hi[c]! - lo[c]!);
  const floor = Math.max(widest * 1e-4, 1e-8);
  for (let c = 0; c < n; c++) {
    const span = Math.max(hi[c]! - lo[c]!, floor);
    scales[c] = span / qmax;
    zeroPoints[c] = roundHalfEven(-lo[c]! / scales[c]!);
  }
  const scale = scales.reduce((a, b) => a + b, 0) / n;
  const zeroPoint = Math.min(qmax, Math.max(0, Math.round(zeroPoints.reduce((a, b) => a + b, 0) / n)));
  return { scales, zeroPoints, scale, zeroPoint, qmax };
}

/**
 * The fold that turns the per-channel grid into the per-tensor one: with r = s / s̃ and
 * t = -s ⊙ (z - z̃), y' = (y - t) / r satisfies y' / s̃ + z̃ = y / s_c + z_c for every channel,
 * so per-tensor codes of y' equal per-channel codes of y (RepQ-ViT's equations).
 */
export function gridFold(grid: ChannelGrid): { scale: Float64Array; shift: Float64Array } {
  const n = grid.scales.length;
  const scale = new Float64Array(n);
  const shift = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    scale[c] = grid.scales[c]! / grid.scale;
    shift[c] = -grid.scales[c]! * (grid.zeroPoints[c]! - grid.zeroPoint);
  }
  return { scale, shift };
}

/**
 * RepQuant's reparameterization (RepQ-ViT's LayerNorm → Linear rewrite with RepQuant's
 * per-channel dual clipping): calibrate every foldable post-LN activation per channel, fold the
 * per-channel grid into the norm and the readers, and return the per-tensor parameters the
 * export must use for those activations.
 */
export async function repQuantReparam(model: Model, data: Dataset, options: RepQuantOptions): Promise<RepQuantResult> {
  const observer = options.observer ?? 'mse';
  const { sites, skipped } = findFoldSites(discoverStructure(model));
  const result: RepQuantResult = { bits: options.bits, observer, activations: new Map(), folded: [], skipped: [...skipped] };
  const usable: FoldSite[] = sites;
  if (usable.length === 0) return result;
  const cal = await calibrate(model, data, {
    tensors: usable.map((s) => s.name),
    observer: { kind: observer, perChannel: true, channelAxis: -1, symmetric: false, bits: options.bits },
    batchSize: options.batchSize,
    threads: options.threads,
    signal: options.signal,
    cacheDir: options.cacheDir,
  });
  for (const site of usable) {
    const range = cal.ranges.get(site.name)!;
    if (range.min.length !== site.hidden) {
      result.skipped.push({ name: site.name, reason: `calibration gave ${range.min.length} channel ranges for ${site.hidden} channels` });
      continue;
    }
    const grid = channelGrid(range.min, range.max, options.bits);
    const fold = gridFold(grid);
    applyFold(model, site, fold);
    // the linears may read the folded tensor through layout views (or after the RMSNorm's shift Add): same values, same grid
    const params: ActivationParams = { scale: Math.fround(grid.scale), zeroPoint: grid.zeroPoint, ...(options.bits < 8 ? { qmax: grid.qmax } : {}) };
    for (const name of new Set([site.name, ...site.linears.map((l) => l.node.input(0)!.name)])) result.activations.set(name, params);
    result.folded.push({ name: site.name, scale: grid.scale, zeroPoint: grid.zeroPoint, maxRatio: Math.max(...fold.scale), minRatio: Math.min(...fold.scale) });
  }
  return result;
}
