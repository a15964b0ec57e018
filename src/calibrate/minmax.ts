import { type ChannelLayout, channelLayout, channelMinMax } from './channels.js';
import { NonFiniteError } from './non-finite.js';
import type { Observer, ResolvedObserverSpec, TensorRange } from './observer.js';

/** Running minimum and maximum (per tensor or per channel); symmetric gives [-max|x|, max|x|]. */
export class MinMaxObserver implements Observer {
  count = 0;
  private min: Float64Array | undefined;
  private max: Float64Array | undefined;

  constructor(readonly spec: ResolvedObserverSpec) {}

  update(data: Float32Array, dims: readonly number[]): void {
    if (data.length === 0) return;
    const layout = channelLayout(dims, this.spec.channelAxis);
    checkLength(data, layout);
    const { min, max } = this.state(layout.channels);
    const nan = channelMinMax(data, layout, min, max);
    if (nan > 0) throw new NonFiniteError(true);
    checkFinite(min, max);
    this.count += data.length;
  }

  /**
   * Folds in the minima and maxima of a batch computed elsewhere (inside the onnxruntime graph,
   * say): one entry per channel, `elements` values in all.
   */
  updateMinMax(min: ArrayLike<number>, max: ArrayLike<number>, elements: number): void {
    if (elements === 0) return;
    if (min.length !== max.length) throw new Error('min and max must have the same length');
    const s = this.state(min.length);
    for (let c = 0; c < min.length; c++) {
      const lo = min[c]!;
      const hi = max[c]!;
      if (lo !== lo || hi !== hi) throw new NonFiniteError(true);
      if (lo < s.min[c]!) s.min[c] = lo;
      if (hi > s.max[c]!) s.max[c] = hi;
    }
    checkFinite(s.min, s.max);
    this.count += elements;
  }

  range(): TensorRange {
    if (!this.min || !this.max) throw new Error('the observer has seen no data');
    if (this.spec.symmetric) {
      const t = Float32Array.from(this.min, (lo, c) => Math.max(-lo, this.max![c]!));
      return { min: t.map((v) => -v), max: t };
    }
    return { min: Float32Array.from(this.min), max: Float32Array.from(this.max) };
  }

  private state(channels: number): { min: Float64Array; max: Float64Array } {
    if (!this.min || !this.max) {
      this.min = new Float64Array(channels).fill(Infinity);
      this.max = new Float64Array(channels).fill(-Infinity);
    } else if (this.min.length !== channels) {
      throw new RangeError(`the tensor had ${this.min.length} channels before and ${channels} now`);
    }
    return { min: this.min, max: this.max };
  }
}

export function checkLength(data: Float32Array, layout: ChannelLayout): void {
  if (data.length % (layout.channels * layout.inner) !== 0) {
    throw new RangeError(`${data.length} values do not fit ${layout.channels} channels of ${layout.inner}`);
  }
}

export function checkFinite(min: Float64Array, max: Float64Array): void {
  for (let c = 0; c < min.length; c++) {
    if (min[c] === -Infinity || max[c] === Infinity) throw new NonFiniteError(false);
  }
}
