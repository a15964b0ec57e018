import { UserError } from '../errors.js';
import { modelInputs } from '../data/bind.js';
import { indexedTables } from '../data/index-ranges.js';
import { type ArrayTensor } from '../ir/array-tensor.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { TypedArray } from '../ir/tensor.js';

/** One cache input and the output that returns it grown by the new tokens. */
export interface CacheEntry {
  past: string;
  present: string;
  dtype: DataType;
  /** The input's dims with the past-length axis (the one symbolic axis after the batch) set to 0. */
  emptyDims: (batch: number) => number[];
}

/**
 * How slimformer feeds a decoder language model: which inputs it fills and how. The layout is
 * the one Optimum, transformers.js and onnxruntime-genai use: `input_ids [batch, seq]`, optional
 * `attention_mask [batch, past + seq]` and `position_ids [batch, seq]`, optional cache inputs
 * `past_key_values.N.key/value` answered by outputs `present.N.key/value`, and, in a merged
 * decoder, a bool `use_cache_branch [1]`.
 */
export interface DecoderIo {
  /** The model, named for messages ('baseline m.onnx'). */
  who: string;
  ids: string;
  idsType: DataType;
  attentionMask: { name: string; dtype: DataType } | undefined;
  positionIds: { name: string; dtype: DataType } | undefined;
  cache: CacheEntry[];
  useCacheBranch: string | undefined;
  logits: string;
  /** input_ids' declared sequence length when fixed (a graph exported for 64 tokens): shorter inputs are padded to it. */
  fixedLength: number | undefined;
  /** Largest batch the ids input's first axis allows. */
  maxBatch: number;
  /** Rows of the embedding table input_ids index, when the graph shows it: every id must be below. */
  vocabRows: number | undefined;
}

const INTEGER_FILL: readonly DataType[] = [DataType.INT64, DataType.INT32];
const PAST = /^past_key_values\.(.+)$/;

/** Reads the decoder signature of a model, or says in one sentence which input it cannot fill. */
export function decoderIo(model: Model, who: string): DecoderIo {
  const inputs = modelInputs(model);
  const byName = new Map(inputs.map((i) => [i.name, i]));
  const tables = indexedTables(model);
  const idsInput = byName.get('input_ids') ?? (tables.length > 0 ? byName.get(tables[0]!.input) : undefined);
  if (!idsInput) throw new UserError(`the ${who} has no input 'input_ids' (nor an integer input that indexes an embedding table), so it cannot be run as a language model`);
  if (!INTEGER_FILL.includes(idsInput.dtype) || (idsInput.shape && idsInput.shape.length !== 2)) {
    throw new UserError(`the ${who}'s input '${idsInput.name}' is ${dtypeName(idsInput.dtype)} of rank ${idsInput.shape?.length ?? '?'}; token ids must be int64 or int32 [batch, sequence]`);
  }
  const used = new Set([idsInput.name]);
  const filled = (name: string, types: readonly DataType[]): { name: string; dtype: DataType } | undefined => {
    const x = byName.get(name);
    if (!x) return undefined;
    if (!types.includes(x.dtype)) throw new UserError(`the ${who}'s input '${name}' is ${dtypeName(x.dtype)}; slimformer fills it as ${types.map(dtypeName).join(' or ')}`);
    used.add(name);
    return { name, dtype: x.dtype };
  };
  const attentionMask = filled('attention_mask', [...INTEGER_FILL, DataType.FLOAT]);
  const positionIds = filled('position_ids', INTEGER_FILL);
  const branch = filled('use_cache_branch', [DataType.BOOL]);
  const outputs = new Set(model.graph.outputs.map((v) => v.name));
  const cache: CacheEntry[] = [];
  for (const x of inputs) {
    const m = PAST.exec(x.name);
    if (!m) continue;
    const present = `present.${m[1]}`;
    if (!outputs.has(present)) throw new UserError(`the ${who} has a cache input '${x.name}' but no output '${present}' to carry it to the next step`);
    const shape = x.shape;
    if (x.dtype !== DataType.FLOAT && x.dtype !== DataType.FLOAT16) throw new UserError(`the ${who}'s cache input '${x.name}' is ${dtypeName(x.dtype)}, not float32 or float16`);
    // [batch, heads, past, head size]: every axis but the batch and past lengths must be fixed
    const symbolic = shape ? shape.map((d, i) => (i > 0 && typeof d !== 'number' ? i : -1)).filter((i) => i >= 0) : [];
    if (!shape || symbolic.length !== 1) {
      throw new UserError(`the ${who}'s cache input '${x.name}' has shape [${shape?.map((d) => d ?? '?').join(',') ?? 'unknown'}]; slimformer needs one symbolic past-length axis and every other axis but the batch fixed, as in [batch, heads, past, head size]`);
    }
    const pastAxis = symbolic[0]!;
    cache.push({ past: x.name, present, dtype: x.dtype, emptyDims: (batch) => shape.map((d, i) => (i === 0 ? batch : i === pastAxis ? 0 : (d as number))) });
    used.add(x.name);
  }
  const other = inputs.find((x) => !used.has(x.name));
  if (other) {
    throw new UserError(`the ${who} has an input '${other.name}' that slimformer cannot fill for generation (it fills input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch)`);
  }
  if (branch && cache.length === 0) throw new UserError(`the ${who} has a 'use_cache_branch' input but no past_key_values inputs`);
  const logits = outputs.has('logits') ? 'logits' : model.graph.outputs[0]?.name;
  if (!logits) throw new UserError(`the ${who} has no outputs`);
  const logitsShape = model.graph.outputs.find((v) => v.name === logits)!.shape;
  if (logitsShape && logitsShape.length !== 3) {
    throw new UserError(`the ${who}'s output '${logits}' has rank ${logitsShape.length}; a language model's logits are [batch, sequence, vocabulary]`);
  }
  const seq = idsInput.shape?.[1];
  const batch = idsInput.shape?.[0];
  return {
    who,
    ids: idsInput.name,
    idsType: idsInput.dtype,
    attentionMask,
    positionIds,
    cache,
    useCacheBranch: branch?.name,
    logits,
    fixedLength: typeof seq === 'number' ? seq : undefined,
    maxBatch: typeof batch === 'number' ? batch : Infinity,
    vocabRows: tables.find((t) => t.input === idsInput.name)?.rows,
  };
}

/** An integer [rows.length, width] tensor of the given rows. */
export function integerMatrix(dtype: DataType, rows: readonly (readonly number[])[], width: number): ArrayTensor {
  const n = rows.length * width;
  const data: TypedArray = dtype === DataType.INT64 ? new BigInt64Array(n) : dtype === DataType.INT32 ? new Int32Array(n) : new Float32Array(n);
  rows.forEach((row, r) => {
    for (let i = 0; i < width; i++) {
      const v = row[i] ?? 0;
      if (data instanceof BigInt64Array) data[r * width + i] = BigInt(v);
      else data[r * width + i] = v;
    }
  });
  return { dtype, dims: [rows.length, width], data };
}

/** A tensor of `dims` holding one value everywhere (ones for a mask, positions via integerMatrix). */
export function filledMatrix(dtype: DataType, batch: number, width: number, value: number): ArrayTensor {
  return integerMatrix(dtype, Array.from({ length: batch }, () => new Array<number>(width).fill(value)), width);
}

export function emptyCache(entry: CacheEntry, batch: number): ArrayTensor {
  const dims = entry.emptyDims(batch);
  return { dtype: entry.dtype, dims, data: entry.dtype === DataType.FLOAT16 ? new Uint16Array(0) : new Float32Array(0) };
}

export function boolScalar(value: boolean): ArrayTensor {
  return { dtype: DataType.BOOL, dims: [1], data: Uint8Array.of(value ? 1 : 0) };
}
