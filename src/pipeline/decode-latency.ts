import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import { floatToFloat16Bits } from '../ir/float-bits.js';
import type { Model } from '../ir/model.js';
import { medianLatencies } from '../runtime/latency.js';
import { boolScalar, decoderIo, filledMatrix, integerMatrix } from '../validate/decoder-io.js';

/** Cache length of the decode step timed by default: a short prompt already in the cache. */
export const DEFAULT_DECODE_CACHE = 32;

export interface DecodeLatency {
  beforeMs: number;
  afterMs: number;
  runs: number;
  /** Tokens already in the key/value cache when the one new token is decoded. */
  cacheLength: number;
}

/**
 * The feeds of one generation step of a decoder with a key/value cache: one new token (batch 1)
 * after `cacheLength` cached ones, a mask over all of them, its position, and a cache of that
 * length (small values: latency does not depend on them). Undefined for a model without a cache.
 */
export function decodeStepFeeds(model: Model, cacheLength: number): Record<string, ArrayTensor> | undefined {
  let io;
  try {
    io = decoderIo(model, 'model');
  } catch {
    return undefined; // not a language model slimformer can feed: no decode step to time
  }
  if (io.cache.length === 0) return undefined;
  const feeds: Record<string, ArrayTensor> = { [io.ids]: integerMatrix(io.idsType, [[1]], 1) };
  if (io.attentionMask) feeds[io.attentionMask.name] = filledMatrix(io.attentionMask.dtype, 1, cacheLength + 1, 1);
  if (io.positionIds) feeds[io.positionIds.name] = integerMatrix(io.positionIds.dtype, [[cacheLength]], 1);
  if (io.useCacheBranch) feeds[io.useCacheBranch] = boolScalar(true);
  for (const entry of io.cache) {
    const dims = entry.emptyDims(1);
    const at = model.graph.inputs.find((v) => v.name === entry.past)!.shape!.findIndex((d, i) => i > 0 && typeof d !== 'number');
    dims[at] = cacheLength;
    const n = dims.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1);
    feeds[entry.past] = entry.dtype === DataType.FLOAT ? { dtype: DataType.FLOAT, dims, data } : { dtype: entry.dtype, dims, data: Uint16Array.from(data, floatToFloat16Bits) };
  }
  return feeds;
}

/**
 * Median latency of one decode step (one token through the cache) for both models, interleaved
 * as compress times the prefill; null when the original has no key/value cache inputs.
 */
export async function measureDecodeLatency(a: Model, b: Model, cacheLength: number, runs: number, threads?: number, signal?: AbortSignal): Promise<DecodeLatency | null> {
  const feeds = decodeStepFeeds(a, cacheLength);
  if (!feeds || !decodeStepFeeds(b, cacheLength)) return null;
  const [beforeMs, afterMs] = await medianLatencies([a, b], feeds, { rounds: runs, threads, signal });
  return { beforeMs: beforeMs!, afterMs: afterMs!, runs, cacheLength };
}
