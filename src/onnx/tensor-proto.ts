import { DataType, byteLength, dtypeName, isDataType } from '../ir/dtype.js';
import { Tensor, elementCount, type ExternalReader } from '../ir/tensor.js';
import { UserError } from '../errors.js';
import { type ITensorProto, longToBigInt, longToNumber, toLong } from './proto.js';
import { resolveExternalLocation } from './external-data.js';

const DATA_LOCATION_EXTERNAL = 1;

/** Context for messages and for resolving external data paths. */
export interface TensorDecodeContext {
  /** The model file, for messages. */
  file: string;
  /** Folder that external data locations are relative to. */
  baseDir: string;
  readExternal: ExternalReader;
}

/**
 * TensorProto → Tensor. Typed fields are converted to raw_data layout once, here. `label` names
 * a tensor that has no name of its own (a node attribute's) in messages.
 */
export function decodeTensor(p: ITensorProto, ctx: TensorDecodeContext, label?: string): Tensor {
  const name = p.name ?? '';
  const dtype = (p.dataType ?? 0) as DataType;
  const dims = (p.dims ?? []).map((d) => longToNumber(d));
  const where = `${name === '' && label ? label : `tensor '${name}'`} in ${ctx.file}`;
  if (!isDataType(dtype)) {
    throw new UserError(dtype === DataType.UNDEFINED ? `${where} has no data type (data_type 0, UNDEFINED); the file is corrupt` : `${where} has data type ${dtype}, which is not an ONNX data type; the file is corrupt or from a newer ONNX`);
  }
  if (dims.some((d) => d < 0 || !Number.isSafeInteger(d))) throw new UserError(`${where} has an invalid shape [${dims.join(',')}]`);
  if (p.segment) throw new UserError(`${where} is a segmented tensor, which slimformer does not read`);
  let t: Tensor;
  if (p.dataLocation === DATA_LOCATION_EXTERNAL) {
    const loc = resolveExternalLocation(p.externalData ?? [], ctx.baseDir, where);
    const expected = byteLength(dtype, elementCount(dims));
    const length = loc.length ?? expected;
    if (length !== expected) throw new UserError(`${where}: external data length ${length} does not match ${dtypeName(dtype)}[${dims.join(',')}] (${expected} bytes)`);
    t = Tensor.external(name, dtype, dims, { file: loc.file, offset: loc.offset, length }, ctx.readExternal);
  } else if (dtype === DataType.STRING) {
    t = Tensor.fromStrings(name, dims, p.stringData ?? []);
  } else {
    const count = elementCount(dims);
    const bytes = p.rawData && p.rawData.byteLength > 0 ? p.rawData : typedFieldsToBytes(p, dtype, count, where);
    const expected = byteLength(dtype, count);
    if (bytes.byteLength !== expected) {
      throw new UserError(`${where} is truncated or corrupt: ${dtypeName(dtype)}[${dims.join(',')}] needs ${expected} bytes of data, found ${bytes.byteLength}`);
    }
    t = Tensor.fromBytes(name, dtype, dims, bytes);
  }
  t.docString = p.docString ?? '';
  return t;
}

/** Converts the typed repeated fields (float_data, int32_data, ...) to raw_data bytes. */
function typedFieldsToBytes(p: ITensorProto, dtype: DataType, count: number, where: string): Uint8Array {
  switch (dtype) {
    case DataType.FLOAT:
    case DataType.COMPLEX64: {
      const src = p.floatData ?? [];
      return new Uint8Array(Float32Array.from(src).buffer);
    }
    case DataType.DOUBLE:
    case DataType.COMPLEX128:
      return new Uint8Array(Float64Array.from(p.doubleData ?? []).buffer);
    case DataType.INT64:
      return new Uint8Array(BigInt64Array.from((p.int64Data ?? []).map((x) => longToBigInt(x))).buffer);
    case DataType.UINT64:
      return new Uint8Array(BigUint64Array.from((p.uint64Data ?? []).map((x) => BigInt.asUintN(64, longToBigInt(x)))).buffer);
    case DataType.UINT32:
      return new Uint8Array(Uint32Array.from((p.uint64Data ?? []).map((x) => longToNumber(x))).buffer);
    case DataType.INT32:
      return new Uint8Array(Int32Array.from(p.int32Data ?? []).buffer);
    case DataType.INT16:
      return new Uint8Array(Int16Array.from(p.int32Data ?? []).buffer);
    case DataType.UINT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      // 16-bit floats are stored as their bit patterns in int32_data
      return new Uint8Array(Uint16Array.from(p.int32Data ?? []).buffer);
    case DataType.INT8:
      return new Uint8Array(Int8Array.from(p.int32Data ?? []).buffer);
    case DataType.UINT8:
    case DataType.BOOL:
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ:
      return Uint8Array.from(p.int32Data ?? []);
    case DataType.INT4:
    case DataType.UINT4:
    case DataType.FLOAT4E2M1: {
      // int32_data holds the packed bytes, two 4-bit elements each (low nibble first)
      const src = p.int32Data ?? [];
      if (src.length === count) {
        // some writers put one element per entry; pack them
        const out = new Uint8Array(Math.ceil(count / 2));
        for (let i = 0; i < count; i++) out[i >> 1]! |= (src[i]! & 0xf) << ((i & 1) * 4);
        return out;
      }
      return Uint8Array.from(src);
    }
    default:
      throw new UserError(`${where} has data type ${dtypeName(dtype)}, which slimformer cannot read`);
  }
}

/**
 * Tensor → TensorProto without its data: the caller writes raw_data (or external data) itself
 * so large tensors are streamed, not copied. Strings go in string_data here.
 */
export function encodeTensorHeader(t: Tensor): ITensorProto {
  const p: ITensorProto = {
    name: t.name,
    dataType: t.dtype,
    dims: t.dims.map((d) => toLong(d)) as ITensorProto['dims'],
  };
  if (t.docString) p.docString = t.docString;
  if (t.dtype === DataType.STRING) p.stringData = t.stringData;
  return p;
}

/** Tensor → complete TensorProto with raw_data (for attributes and small subgraph tensors). */
export function encodeTensorInline(t: Tensor): ITensorProto {
  const p = encodeTensorHeader(t);
  if (t.dtype !== DataType.STRING) p.rawData = t.bytes;
  return p;
}

export function externalDataEntries(location: string, offset: number, length: number): ITensorProto['externalData'] {
  return [
    { key: 'location', value: location },
    { key: 'offset', value: String(offset) },
    { key: 'length', value: String(length) },
  ];
}

export { DATA_LOCATION_EXTERNAL };
