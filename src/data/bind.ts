import { UserError } from '../errors.js';
import { type ArrayTensor, concatBatch, describe } from '../ir/array-tensor.js';
import { DataType, isFloatType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Dim } from '../ir/value.js';
import type { Dataset, NamedArray, Sample } from './dataset.js';
import { firstOutOfRange, indexedTables } from './index-ranges.js';

/** A graph input the caller must feed (inputs with an initializer default are optional). */
export interface ModelInput {
  name: string;
  dtype: DataType;
  shape: Dim[] | undefined;
}

export function modelInputs(model: Model): ModelInput[] {
  return model.graph.inputs
    .filter((v) => !v.initializer)
    .map((v) => ({ name: v.name, dtype: v.dtype ?? DataType.UNDEFINED, shape: v.shape }));
}

/** A dataset checked against a model: every sample's names, types and shapes fit its inputs. */
export interface BoundDataset {
  readonly dataset: Dataset;
  readonly inputs: ModelInput[];
  readonly hasLabels: boolean;
  /** Largest batch the model's first input dimension allows (1 when it is fixed to 1). */
  readonly maxBatch: number;
  /** Inputs fed once per batch, not one row per sample (see `unbatchedInputs`). */
  readonly unbatched: ReadonlySet<string>;
  feeds(sample: Sample): Record<string, ArrayTensor>;
}

/**
 * Checks every sample of the dataset against the model's inputs before anything runs, so a
 * mismatch ends with one message naming the file and tensor instead of an onnxruntime error
 * halfway through. Float inputs holding NaN or Inf are rejected too.
 */
export function bindDataset(dataset: Dataset, model: Model): BoundDataset {
  const inputs = modelInputs(model);
  const byName = new Map(inputs.map((i) => [i.name, i]));
  const nameOf = (a: NamedArray, k: number): string => a.name || inputs[k]?.name || '';
  const feeds = (sample: Sample): Record<string, ArrayTensor> => {
    const out: Record<string, ArrayTensor> = {};
    sample.inputs.forEach((a, k) => {
      const name = nameOf(a, k);
      out[name] = { dtype: a.dtype, dims: emptyFitted(a.dims, byName.get(name)?.shape), data: a.data };
    });
    return out;
  };
  const tables = indexedTables(model);
  let labelled: boolean | undefined;
  for (let i = 0; i < dataset.size; i++) {
    const where = dataset.where(i);
    const sample = dataset.read(i);
    const seen = new Set<string>();
    sample.inputs.forEach((a, k) => {
      const name = nameOf(a, k);
      const expected = byName.get(name);
      if (!expected) {
        const known = inputs.length ? `its inputs are ${inputs.map((x) => `'${x.name}'`).join(', ')}` : 'the model takes no inputs';
        throw new UserError(`${where}: tensor '${name}' is not an input of the model (${known})`);
      }
      seen.add(name);
      if (a.dtype !== expected.dtype) {
        throw new UserError(`${where}: tensor '${name}' is ${describe(a)} but the model's input '${name}' is ${describe({ dtype: expected.dtype, dims: expected.shape ?? [] })}`);
      }
      if (expected.shape && !shapeFits(emptyFitted(a.dims, expected.shape), expected.shape)) {
        throw new UserError(`${where}: tensor '${name}' has shape [${a.dims.join(',')}] but the model's input '${name}' takes [${expected.shape.map((d) => d ?? '?').join(',')}]`);
      }
      // samples are concatenated along the first axis into batches: each must hold one example
      if (a.dims.length > 0 && a.dims[0] !== 1 && typeof expected.shape?.[0] !== 'number') {
        throw new UserError(`${sample.files?.inputs[k] ?? where}: tensor '${name}' has shape [${a.dims.join(',')}], a batch axis of ${a.dims[0]}; a sample holds one example (batch axis 1, see "Datasets" in the README)`);
      }
      const bad = isFloatType(a.dtype) && a.dtype !== DataType.FLOAT16 ? nonFinite(a.data as Float32Array) : undefined;
      if (bad) throw new UserError(`${where}: tensor '${name}' contains ${bad}`);
      for (const t of tables) {
        if (t.input !== name) continue;
        const out = firstOutOfRange(a.data as ArrayLike<number | bigint>, t.rows);
        if (out) {
          throw new UserError(`${sample.files?.inputs[k] ?? where}: tensor '${name}' holds ${out.value} at position ${out.at}, outside the ${t.rows} rows of table '${t.table}' that node '${t.node}' reads (valid: ${-t.rows} to ${t.rows - 1})`);
        }
      }
    });
    const missing = inputs.filter((x) => !seen.has(x.name));
    if (missing.length > 0) throw new UserError(`${where}: no data for the model's input '${missing[0]!.name}'`);
    const hasLabel = sample.label !== undefined;
    const label = sample.label;
    if (label && label.dims.length > 0 && label.dims[0] !== 1 && sample.inputs.every((a) => a.dims[0] === 1)) {
      throw new UserError(`${sample.files?.label ?? where}: the label has shape [${label.dims.join(',')}], a batch axis of ${label.dims[0]}; a sample holds one example (batch axis 1, see "Datasets" in the README)`);
    }
    if (labelled !== undefined && labelled !== hasLabel) throw new UserError(`${where}: some samples have a label.pb and others do not`);
    labelled = hasLabel;
  }
  const first = inputs[0]?.shape?.[0];
  return { dataset, inputs, hasLabels: labelled ?? false, maxBatch: typeof first === 'number' ? first : Infinity, unbatched: unbatchedInputs(inputs), feeds };
}

/** `feeds` with each empty tensor shaped as `model` declares its input (see emptyFitted). */
export function fitEmptyInputs(feeds: Record<string, ArrayTensor>, model: Model): Record<string, ArrayTensor> {
  const declared = new Map(modelInputs(model).map((i) => [i.name, i.shape]));
  return Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, { ...t, dims: emptyFitted(t.dims, declared.get(n)) }]));
}

/**
 * An empty tensor (an empty key/value cache: past length 0) holds no data, so its other dims can
 * take the model's fixed sizes: a pruned decoder with fewer key/value heads still takes the
 * empty past its calibration samples were made with.
 */
function emptyFitted(dims: readonly number[], declared: readonly (number | string | null)[] | undefined): number[] {
  if (!declared || declared.length !== dims.length || !dims.includes(0)) return [...dims];
  return dims.map((d, i) => (d !== 0 && typeof declared[i] === 'number' ? (declared[i] as number) : d));
}

/**
 * Inputs that hold a setting rather than one row per example: a scalar, or a fixed first axis
 * in a model whose other inputs have a symbolic batch axis (a merged decoder's
 * `use_cache_branch [1]`). Batches group samples whose settings are equal and feed them once.
 */
export function unbatchedInputs(inputs: readonly ModelInput[]): Set<string> {
  const batched = inputs.some((i) => i.shape !== undefined && i.shape.length > 0 && typeof i.shape[0] !== 'number');
  if (!batched) return new Set();
  return new Set(inputs.filter((i) => i.shape !== undefined && (i.shape.length === 0 || typeof i.shape[0] === 'number')).map((i) => i.name));
}

function shapeFits(dims: number[], shape: Dim[]): boolean {
  return dims.length === shape.length && shape.every((d, i) => typeof d !== 'number' || d === dims[i]);
}

/** 'NaN' or 'Inf' when the data holds one (calibration and evaluation need finite inputs). */
function nonFinite(data: ArrayLike<number>): 'NaN' | 'Inf' | undefined {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v !== v) return 'NaN';
    if (v === Infinity || v === -Infinity) return 'Inf';
  }
  return undefined;
}

export interface Batch {
  feeds: Record<string, ArrayTensor>;
  label: ArrayTensor | undefined;
  /** Index of the batch's first sample in the dataset. */
  start: number;
  count: number;
}

/** The samples of one batch, named for messages (the dataset and the sample's place in it). */
export interface BatchSamples {
  count: number;
  where(sampleInBatch: number): string;
}

export function batchSamples(dataset: Dataset, batch: Batch): BatchSamples {
  return { count: batch.count, where: (i) => dataset.where(batch.start + i) };
}

/**
 * Groups consecutive samples into batches along the first axis. Samples whose shapes differ
 * (a dynamic sequence length, say) go into separate batches.
 */
export function* batches(bound: BoundDataset, batchSize: number): Generator<Batch> {
  const size = Math.max(1, Math.min(batchSize, bound.maxBatch));
  let pending: { feeds: Record<string, ArrayTensor>; label: ArrayTensor | undefined }[] = [];
  let start = 0;
  let key = '';
  const flush = (): Batch => {
    const names = Object.keys(pending[0]!.feeds);
    const feeds: Record<string, ArrayTensor> = {};
    for (const n of names) feeds[n] = bound.unbatched.has(n) ? pending[0]!.feeds[n]! : concatBatch(pending.map((p) => p.feeds[n]!));
    const label = bound.hasLabels ? concatBatch(pending.map((p) => p.label!)) : undefined;
    const b = { feeds, label, start, count: pending.length };
    start += pending.length;
    pending = [];
    return b;
  };
  for (let i = 0; i < bound.dataset.size; i++) {
    const sample = bound.dataset.read(i);
    const feeds = bound.feeds(sample);
    // a setting fed once per batch must be the same for every sample in it
    const k = Object.entries(feeds).map(([n, t]) => (bound.unbatched.has(n) ? `${n}=${Array.from(t.data as ArrayLike<unknown>).join(',')}` : `${n}:${t.dims.slice(1).join('x')}`)).join('|');
    if (pending.length > 0 && (k !== key || pending.length >= size)) yield flush();
    key = k;
    pending.push({ feeds, label: sample.label });
  }
  if (pending.length > 0) yield flush();
}
