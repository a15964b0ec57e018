// .npy arrays through npyjs (parse and dump). This file maps numpy's element types to the
// ONNX ones, keeps booleans as bytes and float16 as its raw bits, and checks what npyjs does
// not: truncated data and Fortran order.
import { dump, parse, type DType } from 'npyjs';
import { DataType } from '../ir/dtype.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { TypedArray } from '../ir/tensor.js';

const KINDS: Partial<Record<DType, { dtype: DataType; Ctor: { from(a: ArrayLike<number> | ArrayLike<bigint>): TypedArray } }>> = {
  f4: { dtype: DataType.FLOAT, Ctor: Float32Array },
  f8: { dtype: DataType.DOUBLE, Ctor: Float64Array },
  f2: { dtype: DataType.FLOAT16, Ctor: Uint16Array },
  i8: { dtype: DataType.INT64, Ctor: BigInt64Array as never },
  u8: { dtype: DataType.UINT64, Ctor: BigUint64Array as never },
  i4: { dtype: DataType.INT32, Ctor: Int32Array },
  u4: { dtype: DataType.UINT32, Ctor: Uint32Array },
  i2: { dtype: DataType.INT16, Ctor: Int16Array },
  u2: { dtype: DataType.UINT16, Ctor: Uint16Array },
  i1: { dtype: DataType.INT8, Ctor: Int8Array },
  u1: { dtype: DataType.UINT8, Ctor: Uint8Array },
  b1: { dtype: DataType.BOOL, Ctor: Uint8Array },
};

/** numpy's element type of each ONNX type a .npy holds here. */
const CODES = new Map<DataType, DType>((Object.entries(KINDS) as [DType, { dtype: DataType }][]).map(([code, k]) => [k.dtype, code]));

/**
 * Parses a .npy file (little-endian, C order). Throws an Error whose message says what is
 * wrong; callers add the file name.
 */
export function parseNpy(bytes: Uint8Array): ArrayTensor {
  let a;
  try {
    // a fresh copy: a Buffer may be an unaligned view into Node's shared pool
    a = parse(new Uint8Array(bytes).buffer, { convertFloat16: false });
  } catch (e) {
    throw new Error(`not a .npy file or an unsupported one (${(e as Error).message})`);
  }
  const kind = KINDS[a.dtype];
  if (!kind) throw new Error(`unsupported .npy element type '${a.dtype}'`);
  if (a.fortranOrder) throw new Error('Fortran-ordered .npy arrays are not supported; save with C order');
  const count = a.shape.reduce((x, y) => x * y, 1);
  // npyjs views everything after the header (booleans as a JS array of true/false)
  const data = a.data as unknown as ArrayLike<number | bigint | boolean>;
  if (data.length < count) throw new Error(`truncated .npy data: ${count} elements of shape [${a.shape.join(',')}], ${data.length} present`);
  const values = Array.isArray(data) ? Uint8Array.from(data as boolean[], Number) : (data as unknown as TypedArray).slice(0, count);
  return { dtype: kind.dtype, dims: a.shape, data: Array.isArray(data) ? values.slice(0, count) : values };
}

/** .npy bytes of one array given as its raw little-endian bytes. */
export function npyBytes(dtype: DataType, shape: number[], data: Uint8Array): Uint8Array {
  const code = CODES.get(dtype);
  if (!code) throw new Error(`a .npy cannot hold ONNX element type ${dtype} here`);
  // told the element type, dump writes the bytes as they are
  return new Uint8Array(dump(data, shape, { dtype: code }));
}

/** Whether a .npy written here can hold this ONNX element type. */
export function npyHolds(dtype: DataType): boolean {
  return CODES.has(dtype);
}
