import * as fs from 'node:fs';
import { UserError } from '../errors.js';
import { parseNpy } from '../data/npy.js';
import type { Dataset } from '../data/dataset.js';
import { isFloatType } from '../ir/dtype.js';

/** Token ids in reading order, and where they came from (for messages and reports). */
export interface TokenStream {
  ids: Int32Array;
  source: string;
}

/** A .npy of integer token ids: one dimension, or [1, N]. */
export function tokenStreamFromNpy(file: string): TokenStream {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    throw new UserError(`token file ${file} does not exist or cannot be read`);
  }
  let t;
  try {
    t = parseNpy(bytes);
  } catch (e) {
    throw new UserError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (isFloatType(t.dtype)) throw new UserError(`${file} holds floating-point values; a token stream is integer ids`);
  const rank = t.dims.length;
  if (!(rank === 1 || (rank === 2 && t.dims[0] === 1))) throw new UserError(`${file} has shape [${t.dims.join(',')}]; a token stream is one dimension of ids ([N] or [1, N])`);
  return { ids: toIds(t.data as ArrayLike<number | bigint>, file), source: file };
}

/**
 * The ids of every sample's `idsInput` tensor, sample after sample, as one stream: the
 * dataset's windows laid end to end (a window's start then reads the previous window as context).
 */
export function tokenStreamFromDataset(dataset: Dataset, idsInput: string, inputIndex: number): TokenStream {
  const parts: Int32Array[] = [];
  for (let i = 0; i < dataset.size; i++) {
    const sample = dataset.read(i);
    const named = sample.inputs.find((a) => a.name === idsInput) ?? (sample.inputs.every((a) => a.name === '') ? sample.inputs[inputIndex] : undefined);
    if (!named) throw new UserError(`${dataset.where(i)}: no tensor '${idsInput}' to read token ids from`);
    if (isFloatType(named.dtype)) throw new UserError(`${dataset.where(i)}: tensor '${idsInput}' holds floating-point values, not token ids`);
    parts.push(toIds(named.data as ArrayLike<number | bigint>, dataset.where(i)));
  }
  const ids = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    ids.set(p, at);
    at += p.length;
  }
  return { ids, source: dataset.path };
}

function toIds(data: ArrayLike<number | bigint>, where: string): Int32Array {
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]!);
    if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new UserError(`${where} holds ${v} at position ${i}, which is not a token id`);
    out[i] = v;
  }
  return out;
}

/**
 * `count` prompts of `length` tokens: the stream is cut into `count` equal parts and each prompt is
 * the first `length` tokens of one part, so prompts come from across the text and never overlap.
 */
export function promptsFromStream(stream: TokenStream, count: number, length: number): number[][] {
  if (!Number.isInteger(count) || count < 1) throw new UserError(`the number of prompts must be a positive whole number, not ${count}`);
  if (!Number.isInteger(length) || length < 1) throw new UserError(`the prompt length must be a positive whole number, not ${length}`);
  const part = Math.floor(stream.ids.length / count);
  if (part < length) {
    throw new UserError(`${stream.source} holds ${stream.ids.length} tokens, too few for ${count} prompts of ${length} tokens from separate parts of the text (${count * length} needed)`);
  }
  return Array.from({ length: count }, (_, i) => Array.from(stream.ids.subarray(i * part, i * part + length)));
}
