import { elementCount } from '../ir/tensor.js';

/**
 * How a tensor's elements map onto channels: element i is in channel
 * floor(i / inner) % channels. Per-tensor statistics are the case channels = 1, inner = size.
 */
export interface ChannelLayout {
  channels: number;
  /** Elements after the channel axis (1 for the last axis). */
  inner: number;
}

/** The layout of `dims` for a channel axis (negative counts from the end), or per-tensor. */
export function channelLayout(dims: readonly number[], channelAxis: number | undefined): ChannelLayout {
  if (channelAxis === undefined) return { channels: 1, inner: Math.max(1, elementCount(dims)) };
  const axis = channelAxis < 0 ? dims.length + channelAxis : channelAxis;
  if (axis < 0 || axis >= dims.length) {
    throw new RangeError(`channel axis ${channelAxis} is outside a tensor of shape [${dims.join(',')}]`);
  }
  return { channels: dims[axis]!, inner: elementCount(dims.slice(axis + 1)) };
}

/**
 * Per-channel minimum and maximum of `data` in one pass. Returns the number of NaN elements
 * seen (NaN never becomes a minimum or maximum).
 */
export function channelMinMax(data: Float32Array, layout: ChannelLayout, min: Float64Array, max: Float64Array): number {
  const { channels, inner } = layout;
  let nan = 0;
  if (channels === 1) {
    let lo = min[0]!;
    let hi = max[0]!;
    for (let i = 0; i < data.length; i++) {
      const x = data[i]!;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
      else if (x !== x) nan++;
    }
    min[0] = lo;
    max[0] = hi;
    return nan;
  }
  if (inner === 1) {
    for (let i = 0; i < data.length; i += channels) {
      for (let c = 0; c < channels; c++) {
        const x = data[i + c]!;
        if (x < min[c]!) min[c] = x;
        if (x > max[c]!) max[c] = x;
        else if (x !== x) nan++;
      }
    }
    return nan;
  }
  const block = channels * inner;
  for (let o = 0; o < data.length; o += block) {
    for (let c = 0; c < channels; c++) {
      let lo = min[c]!;
      let hi = max[c]!;
      const base = o + c * inner;
      for (let i = base; i < base + inner; i++) {
        const x = data[i]!;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
        else if (x !== x) nan++;
      }
      min[c] = lo;
      max[c] = hi;
    }
  }
  return nan;
}
