import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Tensor } from '../ir/tensor.js';
import { readExternalBytes } from './external-data.js';
import { onnx } from './proto.js';
import { decodeTensor, encodeTensorInline } from './tensor-proto.js';

/** Reads one serialized TensorProto (the input_K.pb / output_K.pb files of ONNX test data). */
export function readTensorFile(file: string): Tensor {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    throw new UserError(`tensor file ${file} does not exist or cannot be read`);
  }
  let proto: ReturnType<typeof onnx.TensorProto.decode>;
  try {
    proto = onnx.TensorProto.decode(bytes);
  } catch (e) {
    throw new UserError(`${file} is not a valid serialized ONNX tensor (${e instanceof Error ? e.message : String(e)})`);
  }
  // neither a type nor a name: not a tensor file at all (a tensor with a bad type is named by decodeTensor)
  if (!proto.dataType && !proto.name) throw new UserError(`${file} is not a valid serialized ONNX tensor (no data type)`);
  return decodeTensor(proto, { file, baseDir: path.dirname(path.resolve(file)), readExternal: readExternalBytes });
}

/** Writes one TensorProto file (atomically: temp file, then rename). */
export function writeTensorFile(file: string, t: Tensor): void {
  const bytes = onnx.TensorProto.encode(encodeTensorInline(t)).finish();
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, file);
}
