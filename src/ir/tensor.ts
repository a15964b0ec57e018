import { DataType, byteLength, dtypeName } from './dtype.js';
import {
  bfloat16BitsToFloat,
  float16BitsToFloat,
  floatToBfloat16Bits,
  floatToFloat16Bits,
} from './float-bits.js';

/** Where a tensor's bytes live when they are kept outside the model file. */
export interface ExternalLocation {
  /** Absolute path of the data file. */
  file: string;
  offset: number;
  length: number;
  /**
   * The file as it was when the location was taken (a model's inline weights read from the
   * .onnx file itself): a read from a file that differs fails instead of returning other bytes.
   */
  unchanged?: FileStamp;
}

/** What identifies one version of a file: its inode, size and modification time. */
export interface FileStamp {
  ino: number;
  size: number;
  mtimeMs: number;
}

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** Reads the bytes of an external tensor; supplied by the I/O layer. */
export type ExternalReader = (location: ExternalLocation) => Uint8Array;

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/**
 * A constant tensor. Numeric data is held as little-endian bytes in the layout of ONNX
 * raw_data (sub-byte types packed, bool one byte per element), so loading and saving never
 * converts it. Data kept in an external file is read only when asked for (lazy), which is how
 * models larger than memory budgets or than protobuf's 2 GB limit stay cheap to open.
 */
export class Tensor {
  name: string;
  readonly dtype: DataType;
  readonly dims: readonly number[];
  docString = '';
  private bytesCache: Uint8Array | undefined;
  private readonly strings: Uint8Array[] | undefined;
  /** Set while the bytes have not been read from their external file yet. */
  external: ExternalLocation | undefined;
  private readonly readExternal: ExternalReader | undefined;

  private constructor(
    name: string,
    dtype: DataType,
    dims: readonly number[],
    bytes: Uint8Array | undefined,
    strings: Uint8Array[] | undefined,
    external?: ExternalLocation,
    readExternal?: ExternalReader,
  ) {
    this.name = name;
    this.dtype = dtype;
    this.dims = Object.freeze([...dims]);
    this.bytesCache = bytes;
    this.strings = strings;
    this.external = external;
    this.readExternal = readExternal;
  }

  /** Wraps bytes in ONNX raw_data layout (no copy). */
  static fromBytes(name: string, dtype: DataType, dims: readonly number[], bytes: Uint8Array): Tensor {
    const expected = byteLength(dtype, elementCount(dims));
    if (bytes.byteLength !== expected) {
      throw new Error(
        `tensor '${name}': ${dtypeName(dtype)}[${dims.join(',')}] needs ${expected} bytes, got ${bytes.byteLength}`,
      );
    }
    return new Tensor(name, dtype, dims, bytes, undefined);
  }

  static fromStrings(name: string, dims: readonly number[], strings: Uint8Array[]): Tensor {
    return new Tensor(name, DataType.STRING, dims, undefined, strings);
  }

  static external(
    name: string,
    dtype: DataType,
    dims: readonly number[],
    location: ExternalLocation,
    reader: ExternalReader,
  ): Tensor {
    return new Tensor(name, dtype, dims, undefined, undefined, location, reader);
  }

  /**
   * Builds a tensor from JS values. Float types accept numbers (float16/bfloat16 are rounded
   * to nearest even); int64/uint64 accept numbers or bigints; int4/uint4 accept numbers and are
   * packed; bool accepts booleans or numbers.
   */
  static from(
    name: string,
    dtype: DataType,
    dims: readonly number[],
    values: ArrayLike<number> | ArrayLike<bigint> | ArrayLike<boolean>,
  ): Tensor {
    const n = elementCount(dims);
    if (values.length !== n) {
      throw new Error(`tensor '${name}': shape [${dims.join(',')}] holds ${n} values, got ${values.length}`);
    }
    const bytes = new Uint8Array(byteLength(dtype, n));
    const view = new DataView(bytes.buffer);
    const num = (i: number): number => Number(values[i]);
    switch (dtype) {
      case DataType.FLOAT:
        for (let i = 0; i < n; i++) view.setFloat32(i * 4, num(i), true);
        break;
      case DataType.DOUBLE:
        for (let i = 0; i < n; i++) view.setFloat64(i * 8, num(i), true);
        break;
      case DataType.FLOAT16:
        for (let i = 0; i < n; i++) view.setUint16(i * 2, floatToFloat16Bits(num(i)), true);
        break;
      case DataType.BFLOAT16:
        for (let i = 0; i < n; i++) view.setUint16(i * 2, floatToBfloat16Bits(num(i)), true);
        break;
      case DataType.INT8:
        for (let i = 0; i < n; i++) view.setInt8(i, num(i));
        break;
      case DataType.UINT8:
      case DataType.BOOL:
        for (let i = 0; i < n; i++) view.setUint8(i, num(i));
        break;
      case DataType.INT16:
        for (let i = 0; i < n; i++) view.setInt16(i * 2, num(i), true);
        break;
      case DataType.UINT16:
        for (let i = 0; i < n; i++) view.setUint16(i * 2, num(i), true);
        break;
      case DataType.INT32:
        for (let i = 0; i < n; i++) view.setInt32(i * 4, num(i), true);
        break;
      case DataType.UINT32:
        for (let i = 0; i < n; i++) view.setUint32(i * 4, num(i), true);
        break;
      case DataType.INT64:
        // numbers past the int64 range (INT64_MAX read back as a double) clamp to it
        for (let i = 0; i < n; i++) view.setBigInt64(i * 8, clampInt64(values[i] as number | bigint), true);
        break;
      case DataType.UINT64:
        for (let i = 0; i < n; i++) view.setBigUint64(i * 8, BigInt(values[i] as number | bigint), true);
        break;
      case DataType.INT4:
      case DataType.UINT4:
        for (let i = 0; i < n; i++) {
          const v = num(i);
          const lo = dtype === DataType.INT4 ? Math.max(-8, Math.min(7, v)) : Math.max(0, Math.min(15, v));
          bytes[i >> 1]! |= (lo & 0xf) << ((i & 1) * 4);
        }
        break;
      default:
        throw new Error(`tensor '${name}': cannot build ${dtypeName(dtype)} from numbers`);
    }
    return new Tensor(name, dtype, dims, bytes, undefined);
  }

  get size(): number {
    return elementCount(this.dims);
  }

  get isExternal(): boolean {
    return this.external !== undefined;
  }

  /**
   * Bytes in raw_data layout. External tensors are read on first use and kept, except large
   * ones (EXTERNAL_KEEP_LIMIT and up), which are read again at each use: a pass that reads every
   * weight once (quantizing a 1B model) then never holds all of them, and the page cache makes
   * a second read cheap.
   */
  get bytes(): Uint8Array {
    if (this.bytesCache === undefined) {
      if (this.dtype === DataType.STRING) throw new Error(`tensor '${this.name}' holds strings, not bytes`);
      if (this.external !== undefined && this.byteLength >= EXTERNAL_KEEP_LIMIT) return this.readBytesUncached();
      this.bytesCache = this.readBytesUncached();
      this.external = undefined;
    }
    return this.bytesCache;
  }

  /** Bytes without keeping them in memory afterwards (used when streaming a save). */
  readBytesUncached(): Uint8Array {
    if (this.bytesCache !== undefined) return this.bytesCache;
    if (this.external === undefined || this.readExternal === undefined) {
      throw new Error(`tensor '${this.name}' has no data`);
    }
    const bytes = this.readExternal(this.external);
    const expected = byteLength(this.dtype, this.size);
    if (bytes.byteLength !== expected) {
      throw new Error(
        `external data of tensor '${this.name}' in ${this.external.file}: expected ${expected} bytes, found ${bytes.byteLength}`,
      );
    }
    return bytes;
  }

  get byteLength(): number {
    if (this.dtype === DataType.STRING) return (this.strings ?? []).reduce((a, s) => a + s.byteLength, 0);
    return byteLength(this.dtype, this.size);
  }

  get stringData(): Uint8Array[] {
    if (this.strings === undefined) throw new Error(`tensor '${this.name}' does not hold strings`);
    return this.strings;
  }

  /** Values as float32, converted from any numeric type. */
  toFloat32(): Float32Array {
    if (this.dtype === DataType.FLOAT) return new Float32Array(copyBytes(this.bytes));
    const out = new Float32Array(this.size);
    const src = this.toNumbers();
    for (let i = 0; i < out.length; i++) out[i] = src[i]!;
    return out;
  }

  /** Values as JS numbers (int64 beyond 2^53 loses precision; use toTypedArray for those). */
  toNumbers(): number[] {
    const n = this.size;
    const bytes = this.bytes;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Array<number>(n);
    switch (this.dtype) {
      case DataType.FLOAT16:
        for (let i = 0; i < n; i++) out[i] = float16BitsToFloat(view.getUint16(i * 2, true));
        return out;
      case DataType.BFLOAT16:
        for (let i = 0; i < n; i++) out[i] = bfloat16BitsToFloat(view.getUint16(i * 2, true));
        return out;
      case DataType.INT4:
        for (let i = 0; i < n; i++) out[i] = ((((bytes[i >> 1]! >> ((i & 1) * 4)) & 0xf) << 28) >> 28);
        return out;
      case DataType.UINT4:
        for (let i = 0; i < n; i++) out[i] = (bytes[i >> 1]! >> ((i & 1) * 4)) & 0xf;
        return out;
      default: {
        const arr = this.toTypedArray();
        for (let i = 0; i < n; i++) out[i] = Number(arr[i]);
        return out;
      }
    }
  }

  /**
   * Values in the typed array that matches the element type (a copy, aligned). float16 and
   * bfloat16 come back as their raw Uint16 bits; int4/uint4 unpacked to Int8/Uint8; bool as Uint8.
   */
  toTypedArray(): TypedArray {
    const b = this.bytes;
    switch (this.dtype) {
      case DataType.FLOAT:
        return new Float32Array(copyBytes(b));
      case DataType.DOUBLE:
        return new Float64Array(copyBytes(b));
      case DataType.INT8:
        return new Int8Array(copyBytes(b));
      case DataType.UINT8:
      case DataType.BOOL:
        return new Uint8Array(copyBytes(b));
      case DataType.INT16:
        return new Int16Array(copyBytes(b));
      case DataType.UINT16:
      case DataType.FLOAT16:
      case DataType.BFLOAT16:
        return new Uint16Array(copyBytes(b));
      case DataType.INT32:
        return new Int32Array(copyBytes(b));
      case DataType.UINT32:
        return new Uint32Array(copyBytes(b));
      case DataType.INT64:
        return new BigInt64Array(copyBytes(b));
      case DataType.UINT64:
        return new BigUint64Array(copyBytes(b));
      case DataType.INT4:
        return Int8Array.from(this.toNumbers());
      case DataType.UINT4:
        return Uint8Array.from(this.toNumbers());
      default:
        throw new Error(`tensor '${this.name}': no typed array for ${dtypeName(this.dtype)}`);
    }
  }

  /** A copy with a new name (data shared: tensors are treated as immutable). */
  withName(name: string): Tensor {
    const t = new Tensor(name, this.dtype, this.dims, this.bytesCache, this.strings, this.external, this.readExternal);
    t.docString = this.docString;
    return t;
  }

  toString(): string {
    return `${this.name}: ${dtypeName(this.dtype)}[${this.dims.join(',')}]`;
  }
}

/** External tensors of this many bytes and more are not kept in memory once read (Tensor.bytes). */
export const EXTERNAL_KEEP_LIMIT = 2 ** 20;

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

function clampInt64(v: number | bigint): bigint {
  const b = typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
  return b > INT64_MAX ? INT64_MAX : b < INT64_MIN ? INT64_MIN : b;
}

/** A fresh ArrayBuffer holding the bytes (typed arrays need their offset aligned). */
function copyBytes(bytes: Uint8Array): ArrayBuffer {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out.buffer;
}
