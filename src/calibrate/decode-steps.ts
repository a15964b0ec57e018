import type { Dataset, NamedArray, Sample } from '../data/dataset.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import { boolScalar, decoderIo, emptyCache, filledMatrix, integerMatrix } from '../validate/decoder-io.js';

export interface DecodeStepOptions {
  threads?: number;
  signal?: AbortSignal;
}

/** What was added, for the report. */
export interface DecodeStepSummary {
  prompts: number;
  /** Tokens each prompt left in the cache before its decode-step sample. */
  cachedTokens: number[];
}

/**
 * Calibration that sees what generation sees. For a decoder with a key/value cache whose
 * calibration samples start from an empty past (prompts, text), each sample is also run as
 * generation runs it: its first half fills the cache (the prefill), and the second half is
 * decoded teacher-forced through that real cache. The result is the original samples followed
 * by one decode-step sample per prompt (its past the prefill's present tensors), so passes
 * calibrate and reconstruct on activations of both phases. Returns the data unchanged for a
 * model without a cache, or when the samples already carry a past.
 */
export async function withDecodeSteps(model: Model, data: Dataset, options: DecodeStepOptions = {}): Promise<{ dataset: Dataset; summary?: DecodeStepSummary }> {
  let io;
  try {
    io = decoderIo(model, 'model');
  } catch {
    return { dataset: data };
  }
  if (io.cache.length === 0 || data.size === 0) return { dataset: data };
  const first = data.read(0);
  const pastOf = (s: Sample, name: string) => s.inputs.find((x) => x.name === name);
  // samples that already hold a cache were made by the user for the decode phase: leave them
  if (io.cache.some((c) => (pastOf(first, c.past)?.data.length ?? 0) > 0)) return { dataset: data };
  const session = await Session.create(model, { threads: options.threads });
  const extra: Sample[] = [];
  const cachedTokens: number[] = [];
  const origin: number[] = [];
  try {
    for (let i = 0; i < data.size; i++) {
      options.signal?.throwIfAborted();
      const sample = data.read(i);
      const idsT = sample.inputs.find((x) => x.name === io.ids);
      if (!idsT || idsT.dims.length !== 2 || idsT.dims[0] !== 1) continue;
      const ids = Array.from(idsT.data as ArrayLike<number | bigint>, Number);
      const cached = Math.floor(ids.length / 2);
      if (cached === 0 || cached === ids.length) continue;
      const prefill: Record<string, ArrayTensor> = { [io.ids]: integerMatrix(io.idsType, [ids.slice(0, cached)], cached) };
      if (io.attentionMask) prefill[io.attentionMask.name] = filledMatrix(io.attentionMask.dtype, 1, cached, 1);
      if (io.positionIds) prefill[io.positionIds.name] = integerMatrix(io.positionIds.dtype, [Array.from({ length: cached }, (_, k) => k)], cached);
      if (io.useCacheBranch) prefill[io.useCacheBranch] = boolScalar(false);
      for (const c of io.cache) prefill[c.past] = emptyCache(c, 1);
      const out = await session.run(prefill, io.cache.map((c) => c.present));
      const rest = ids.slice(cached);
      const inputs: NamedArray[] = [{ name: io.ids, ...integerMatrix(io.idsType, [rest], rest.length) }];
      if (io.attentionMask) inputs.push({ name: io.attentionMask.name, ...filledMatrix(io.attentionMask.dtype, 1, ids.length, 1) });
      if (io.positionIds) inputs.push({ name: io.positionIds.name, ...integerMatrix(io.positionIds.dtype, [rest.map((_, k) => cached + k)], rest.length) });
      if (io.useCacheBranch) inputs.push({ name: io.useCacheBranch, ...boolScalar(true) });
      for (const c of io.cache) inputs.push({ name: c.past, ...out[c.present]! });
      extra.push({ inputs, label: sliceLabel(sample.label, cached), expected: [] });
      cachedTokens.push(cached);
      origin.push(i);
    }
  } finally {
    await session.release();
  }
  if (extra.length === 0) return { dataset: data };
  const dataset: Dataset = {
    path: data.path,
    size: data.size + extra.length,
    read: (index) => (index < data.size ? data.read(index) : extra[index - data.size]!),
    where: (index) => (index < data.size ? data.where(index) : `${data.where(origin[index - data.size]!)} (decoded through a cache of its first ${cachedTokens[index - data.size]} tokens)`),
  };
  return { dataset, summary: { prompts: extra.length, cachedTokens } };
}

/** The label of the decoded part: positions from `start` on of a [1, T] label. */
function sliceLabel(label: ArrayTensor | undefined, start: number): ArrayTensor | undefined {
  if (!label || label.dims.length !== 2 || label.dims[0] !== 1) return undefined;
  const width = label.dims[1]! - start;
  const data = label.data.slice(start) as ArrayTensor['data'];
  return { dtype: label.dtype ?? DataType.INT64, dims: [1, width], data };
}
