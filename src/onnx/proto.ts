// The one place that touches the generated protobuf classes (onnx-proto, ONNX 1.10 schema).
// Everything past src/onnx works with the IR in src/ir.
import onnxProto from 'onnx-proto';

export const onnx = onnxProto.onnx;
export type ModelProto = onnxProto.onnx.ModelProto;
export type IModelProto = onnxProto.onnx.IModelProto;
export type IGraphProto = onnxProto.onnx.IGraphProto;
export type INodeProto = onnxProto.onnx.INodeProto;
export type ITensorProto = onnxProto.onnx.ITensorProto;
export type IAttributeProto = onnxProto.onnx.IAttributeProto;
export type IValueInfoProto = onnxProto.onnx.IValueInfoProto;
export type ITypeProto = onnxProto.onnx.ITypeProto;

/** protobufjs gives int64 fields as Long objects (or numbers when they fit). */
export interface LongLike {
  low: number;
  high: number;
  unsigned?: boolean;
  toNumber?: () => number;
  toString?: (radix?: number) => string;
}

export function longToNumber(x: number | LongLike | null | undefined): number {
  if (x === null || x === undefined) return 0;
  if (typeof x === 'number') return x;
  return Number(longToBigInt(x));
}

export function longToBigInt(x: number | LongLike | null | undefined): bigint {
  if (x === null || x === undefined) return 0n;
  if (typeof x === 'number') return BigInt(x);
  const lo = BigInt(x.low >>> 0);
  const hi = BigInt(x.high >>> 0);
  const u = (hi << 32n) | lo;
  return x.unsigned ? u : BigInt.asIntN(64, u);
}

const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

/** An int64 field value; numbers past the int64 range (INT64_MAX as a double) are clamped. */
export function toLong(x: number | bigint): LongLike | number {
  if (typeof x === 'number' && Number.isSafeInteger(x)) return x;
  let b = typeof x === 'bigint' ? x : BigInt(Math.trunc(x));
  if (b > INT64_MAX) b = INT64_MAX;
  if (b < INT64_MIN) b = INT64_MIN;
  const u = BigInt.asUintN(64, b);
  return { low: Number(u & 0xffffffffn) | 0, high: Number(u >> 32n) | 0, unsigned: false };
}
