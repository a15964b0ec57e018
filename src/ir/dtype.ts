/**
 * ONNX tensor element types. The numeric values are the ones of TensorProto.DataType in
 * onnx.proto, so they travel through serialization unchanged.
 */
export enum DataType {
  UNDEFINED = 0,
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  COMPLEX64 = 14,
  COMPLEX128 = 15,
  BFLOAT16 = 16,
  FLOAT8E4M3FN = 17,
  FLOAT8E4M3FNUZ = 18,
  FLOAT8E5M2 = 19,
  FLOAT8E5M2FNUZ = 20,
  UINT4 = 21,
  INT4 = 22,
  FLOAT4E2M1 = 23,
}

const NAMES: Record<number, string> = {
  [DataType.FLOAT]: 'float32',
  [DataType.UINT8]: 'uint8',
  [DataType.INT8]: 'int8',
  [DataType.UINT16]: 'uint16',
  [DataType.INT16]: 'int16',
  [DataType.INT32]: 'int32',
  [DataType.INT64]: 'int64',
  [DataType.STRING]: 'string',
  [DataType.BOOL]: 'bool',
  [DataType.FLOAT16]: 'float16',
  [DataType.DOUBLE]: 'float64',
  [DataType.UINT32]: 'uint32',
  [DataType.UINT64]: 'uint64',
  [DataType.COMPLEX64]: 'complex64',
  [DataType.COMPLEX128]: 'complex128',
  [DataType.BFLOAT16]: 'bfloat16',
  [DataType.FLOAT8E4M3FN]: 'float8e4m3fn',
  [DataType.FLOAT8E4M3FNUZ]: 'float8e4m3fnuz',
  [DataType.FLOAT8E5M2]: 'float8e5m2',
  [DataType.FLOAT8E5M2FNUZ]: 'float8e5m2fnuz',
  [DataType.UINT4]: 'uint4',
  [DataType.INT4]: 'int4',
  [DataType.FLOAT4E2M1]: 'float4e2m1',
};

/** Whether `value` is one of the element types above (UNDEFINED, 0, is not). */
export function isDataType(value: number): value is DataType {
  return value in NAMES;
}

/** Short lower-case name ("float32", "int64"), as onnxruntime-node names tensor types. */
export function dtypeName(dtype: DataType): string {
  return NAMES[dtype] ?? `dtype(${dtype})`;
}

export function dtypeFromName(name: string): DataType | undefined {
  for (const [k, v] of Object.entries(NAMES)) if (v === name) return Number(k) as DataType;
  if (name === 'float') return DataType.FLOAT;
  if (name === 'double') return DataType.DOUBLE;
  return undefined;
}

/**
 * Size in bits of one element as stored in raw_data. Sub-byte types (int4, uint4, float4)
 * are packed two to a byte, low nibble first.
 */
export function bitsPerElement(dtype: DataType): number {
  switch (dtype) {
    case DataType.BOOL:
    case DataType.UINT8:
    case DataType.INT8:
    case DataType.FLOAT8E4M3FN:
    case DataType.FLOAT8E4M3FNUZ:
    case DataType.FLOAT8E5M2:
    case DataType.FLOAT8E5M2FNUZ:
      return 8;
    case DataType.UINT16:
    case DataType.INT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return 16;
    case DataType.FLOAT:
    case DataType.INT32:
    case DataType.UINT32:
      return 32;
    case DataType.DOUBLE:
    case DataType.INT64:
    case DataType.UINT64:
    case DataType.COMPLEX64:
      return 64;
    case DataType.COMPLEX128:
      return 128;
    case DataType.UINT4:
    case DataType.INT4:
    case DataType.FLOAT4E2M1:
      return 4;
    default:
      throw new Error(`data type ${dtypeName(dtype)} has no fixed element size`);
  }
}

/** Bytes that `count` elements take in raw_data (sub-byte types round up to a whole byte). */
export function byteLength(dtype: DataType, count: number): number {
  return Math.ceil((bitsPerElement(dtype) * count) / 8);
}

export function isFloatType(dtype: DataType): boolean {
  return (
    dtype === DataType.FLOAT ||
    dtype === DataType.FLOAT16 ||
    dtype === DataType.BFLOAT16 ||
    dtype === DataType.DOUBLE
  );
}
