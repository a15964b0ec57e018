import { UserError } from '../errors.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { TypedArray } from '../ir/tensor.js';
import type { ModelInput } from './bind.js';
import type { NamedArray } from './dataset.js';

/** One tokenized sequence, already padded to its final length. */
export interface TokenRow {
  ids: number[];
  /** 1 for real tokens, 0 for padding. */
  mask: number[];
  typeIds: number[];
}

const PAST = /^(past_key_values|past)[._]/;

/**
 * The feeds of one sample for a text model, in the order of the model's inputs, filled from
 * the input list: input_ids, attention_mask, token_type_ids, position_ids (0, 1, ...), an
 * empty cache for every past_key_values.N.key/value (or past.N...) input of a KV-cache decoder
 * (batch 1, every other symbolic axis, the past length, 0), and use_cache_branch = false for
 * Optimum's merged decoders. Each tensor takes the integer or float type the model declares.
 */
export function textFeeds(inputs: readonly ModelInput[], row: TokenRow): NamedArray[] {
  const n = row.ids.length;
  return inputs.map((input): NamedArray => {
    const { name } = input;
    if (PAST.test(name)) return emptyPast(input);
    if (name === 'use_cache_branch') return { name, dtype: DataType.BOOL, dims: [1], data: new Uint8Array([0]) };
    const values =
      name === 'input_ids' ? row.ids
      : name === 'attention_mask' ? row.mask
      : name === 'token_type_ids' ? row.typeIds
      : name === 'position_ids' ? row.ids.map((_, i) => i)
      : undefined;
    if (!values) {
      throw new UserError(`the model's input '${name}' cannot be made from text (filled: input_ids, attention_mask, token_type_ids, position_ids, past_key_values.*, use_cache_branch); give a dataset of tensors instead`);
    }
    return { name, dtype: input.dtype, dims: [1, n], data: integers(values, input) };
  });
}

function integers(values: number[], input: ModelInput): TypedArray {
  switch (input.dtype) {
    case DataType.INT64:
      return BigInt64Array.from(values, (v) => BigInt(v));
    case DataType.INT32:
      return Int32Array.from(values);
    default:
      throw new UserError(`the model's input '${input.name}' is ${dtypeName(input.dtype)}; token inputs must be int64 or int32`);
  }
}

function emptyPast(input: ModelInput): NamedArray {
  if (!input.shape) throw new UserError(`the model's input '${input.name}' has no declared shape, so its empty cache cannot be made`);
  const dims = input.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? 1 : 0));
  if (!dims.includes(0)) throw new UserError(`the model's input '${input.name}' has shape [${input.shape.join(',')}] with no symbolic past length, so it cannot be empty`);
  const data: TypedArray =
    input.dtype === DataType.FLOAT ? new Float32Array(0)
    : input.dtype === DataType.FLOAT16 ? new Uint16Array(0)
    : input.dtype === DataType.DOUBLE ? new Float64Array(0)
    : (() => {
        throw new UserError(`the model's input '${input.name}' is ${dtypeName(input.dtype)}; a cache input must be a float type`);
      })();
  return { name: input.name, dtype: input.dtype, dims, data };
}
