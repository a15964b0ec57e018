import { UserError } from '../errors.js';
import { EntropyObserver } from './entropy.js';
import { MinMaxObserver } from './minmax.js';
import { MseObserver } from './mse.js';
import { PercentileObserver } from './percentile.js';

export type ObserverKind = 'minmax' | 'percentile' | 'entropy' | 'mse';

export const OBSERVER_KINDS: readonly ObserverKind[] = ['minmax', 'percentile', 'entropy', 'mse'];

export interface ObserverOptions {
  /** One range per channel instead of one for the whole tensor (default false). */
  perChannel?: boolean;
  /** The channel axis when perChannel; negative counts from the end (default -1, the hidden size). */
  channelAxis?: number;
  /**
   * A range symmetric around zero, [-t, t] (default false). Histogram observers then bin |x|,
   * which doubles their resolution.
   */
  symmetric?: boolean;
  /** Bits of the quantized type the range is searched for (entropy, mse; default 8). */
  bits?: number;
  /** Percentile observer: the share of values kept inside the range, in percent (default 99.999). */
  percentile?: number;
  /** Histogram bins per channel (default 2048 per-tensor, 512 per-channel). */
  bins?: number;
}

export interface ObserverSpec extends ObserverOptions {
  kind: ObserverKind;
}

/** A spec with every default filled in; fields an observer kind ignores are left out. */
export interface ResolvedObserverSpec {
  kind: ObserverKind;
  perChannel: boolean;
  /** Set when perChannel. */
  channelAxis?: number;
  symmetric: boolean;
  bits?: number;
  percentile?: number;
  bins?: number;
}

/**
 * The calibrated range of a tensor: min and max of length 1 (per-tensor) or one entry per
 * channel. Ranges are what the data showed (zero is not forced in); a quantizer's plan extends
 * them to include zero.
 */
export interface TensorRange {
  min: Float32Array;
  max: Float32Array;
}

/**
 * A streaming statistic: update() any number of times with batches of a tensor, then range().
 * Memory does not depend on how many values were seen.
 */
export interface Observer {
  readonly spec: ResolvedObserverSpec;
  /** Number of values seen so far. */
  readonly count: number;
  /** Adds a batch. `dims` is the tensor's shape (the channel axis is read from it). Throws NonFiniteError on NaN/Inf. */
  update(data: Float32Array, dims: readonly number[]): void;
  range(): TensorRange;
}

export const DEFAULT_PERCENTILE = 99.999;
export const DEFAULT_BINS = 2048;
export const DEFAULT_CHANNEL_BINS = 512;

/** Fills in defaults and checks the options; a bad option is a UserError (it comes from flags or recipes). */
export function resolveObserverSpec(spec: ObserverSpec): ResolvedObserverSpec {
  const { kind } = spec;
  if (!OBSERVER_KINDS.includes(kind)) {
    throw new UserError(`unknown calibration method '${String(kind)}' (expected one of ${OBSERVER_KINDS.join(', ')})`);
  }
  const perChannel = spec.perChannel ?? false;
  const out: ResolvedObserverSpec = { kind, perChannel, symmetric: spec.symmetric ?? false };
  if (perChannel) {
    const axis = spec.channelAxis ?? -1;
    if (!Number.isInteger(axis)) throw new UserError(`calibration channel axis must be an integer, got ${axis}`);
    out.channelAxis = axis;
  }
  if (kind === 'minmax') return out;
  const bins = spec.bins ?? (perChannel ? DEFAULT_CHANNEL_BINS : DEFAULT_BINS);
  if (!Number.isInteger(bins) || bins < 8 || bins > 1 << 20) {
    throw new UserError(`calibration histogram bins must be an integer from 8 to ${1 << 20}, got ${bins}`);
  }
  out.bins = bins;
  if (kind === 'percentile') {
    const p = spec.percentile ?? DEFAULT_PERCENTILE;
    if (!(p > 50 && p <= 100)) throw new UserError(`calibration percentile must be above 50 and at most 100, got ${p}`);
    out.percentile = p;
    return out;
  }
  const bits = spec.bits ?? 8;
  if (!Number.isInteger(bits) || bits < 2 || bits > 16) throw new UserError(`calibration bits must be an integer from 2 to 16, got ${bits}`);
  out.bits = bits;
  if (kind === 'entropy') {
    const needed = out.symmetric ? 2 ** (bits - 1) : 2 ** bits;
    if (bins < needed) {
      throw new UserError(`entropy calibration for ${bits} bits needs at least ${needed} histogram bins, got ${bins}`);
    }
  }
  return out;
}

/** A fresh observer for a spec. */
export function createObserver(spec: ObserverSpec): Observer {
  const r = resolveObserverSpec(spec);
  switch (r.kind) {
    case 'minmax':
      return new MinMaxObserver(r);
    case 'percentile':
      return new PercentileObserver(r);
    case 'entropy':
      return new EntropyObserver(r);
    case 'mse':
      return new MseObserver(r);
  }
}

/** A key for the spec, stable across runs (for cache keys and grouping). */
export function specKey(spec: ResolvedObserverSpec): string {
  const keys = Object.keys(spec).sort() as (keyof ResolvedObserverSpec)[];
  return JSON.stringify(Object.fromEntries(keys.map((k) => [k, spec[k]])));
}
