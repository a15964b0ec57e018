import { DataType, dtypeName } from './dtype.js';
import { Tensor, elementCount, type TypedArray } from './tensor.js';

/**
 * A tensor as a typed array, the form data takes between the dataset readers, the runtime and
 * the metrics. (IR Tensors keep ONNX's byte layout instead; `fromTensor` converts.)
 */
export interface ArrayTensor {
  dtype: DataType;
  dims: number[];
  data: TypedArray;
}

export function arrayTensorFromTensor(t: Tensor): ArrayTensor {
  return { dtype: t.dtype, dims: [...t.dims], data: t.toTypedArray() };
}

export function describe(t: { dtype: DataType; dims: readonly (number | string | null)[] }): string {
  return `${dtypeName(t.dtype)}[${t.dims.map((d) => d ?? '?').join(',')}]`;
}

/** Joins tensors along the first (batch) axis; all must agree on type and trailing dims. */
export function concatBatch(parts: ArrayTensor[]): ArrayTensor {
  if (parts.length === 1) return parts[0]!;
  const first = parts[0]!;
  const rest = first.dims.slice(1);
  let batch = 0;
  let length = 0;
  for (const p of parts) {
    if (p.dtype !== first.dtype || p.dims.length !== first.dims.length || p.dims.slice(1).some((d, i) => d !== rest[i])) {
      throw new Error(`cannot batch ${describe(p)} with ${describe(first)}`);
    }
    batch += p.dims[0]!;
    length += p.data.length;
  }
  const Ctor = first.data.constructor as new (n: number) => TypedArray;
  const data = new Ctor(length);
  let at = 0;
  for (const p of parts) {
    (data as unknown as { set(a: ArrayLike<unknown>, o: number): void }).set(p.data as ArrayLike<unknown>, at);
    at += p.data.length;
  }
  return { dtype: first.dtype, dims: [batch, ...rest], data };
}

/** Rows [start, end) of the first axis (a view, no copy). */
export function sliceBatch(t: ArrayTensor, start: number, end: number): ArrayTensor {
  const row = elementCount(t.dims.slice(1));
  return { dtype: t.dtype, dims: [end - start, ...t.dims.slice(1)], data: t.data.subarray(start * row, end * row) as TypedArray };
}

export function tensorFromArray(name: string, t: ArrayTensor): Tensor {
  return Tensor.fromBytes(name, t.dtype, t.dims, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice());
}

