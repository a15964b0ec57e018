import { DataType } from '../ir/dtype.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { TypedArray } from '../ir/tensor.js';

const DESCR: Record<string, { dtype: DataType; Ctor: new (b: ArrayBuffer) => TypedArray }> = {
  '<f4': { dtype: DataType.FLOAT, Ctor: Float32Array },
  '<f8': { dtype: DataType.DOUBLE, Ctor: Float64Array },
  '<f2': { dtype: DataType.FLOAT16, Ctor: Uint16Array },
  '<i8': { dtype: DataType.INT64, Ctor: BigInt64Array },
  '<u8': { dtype: DataType.UINT64, Ctor: BigUint64Array },
  '<i4': { dtype: DataType.INT32, Ctor: Int32Array },
  '<u4': { dtype: DataType.UINT32, Ctor: Uint32Array },
  '<i2': { dtype: DataType.INT16, Ctor: Int16Array },
  '<u2': { dtype: DataType.UINT16, Ctor: Uint16Array },
  '|i1': { dtype: DataType.INT8, Ctor: Int8Array },
  '|u1': { dtype: DataType.UINT8, Ctor: Uint8Array },
  '|b1': { dtype: DataType.BOOL, Ctor: Uint8Array },
};

/**
 * Parses a .npy file (format versions 1-3, little-endian, C order). Throws an Error whose
 * message says what is wrong; callers add the file name.
 */
export function parseNpy(bytes: Uint8Array): ArrayTensor {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.byteLength < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error('not a .npy file (bad magic bytes)');
  const major = bytes[6]!;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const headerStart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error('malformed .npy header');
  const kind = DESCR[descr === '=f4' ? '<f4' : descr];
  if (!kind) throw new Error(`unsupported .npy element type '${descr}'`);
  if (fortran === 'True') throw new Error('Fortran-ordered .npy arrays are not supported; save with C order');
  const dims = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  const dataStart = headerStart + headerLen;
  const elemBytes = Number(descr.slice(2));
  const need = count * elemBytes;
  if (bytes.byteLength - dataStart < need) throw new Error(`truncated .npy data: needs ${need} bytes, has ${bytes.byteLength - dataStart}`);
  // a fresh, aligned copy (Buffer.slice would return a view into Node's shared pool)
  const copy = new Uint8Array(need);
  copy.set(bytes.subarray(dataStart, dataStart + need));
  return { dtype: kind.dtype, dims, data: new kind.Ctor(copy.buffer) };
}
