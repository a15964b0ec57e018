import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { modelFromProto } from './deserialize.js';
import { readExternalBytes } from './external-data.js';
import { onnx, type ModelProto } from './proto.js';

/**
 * Reads an ONNX model file. Weights stored inline stay views into the file's buffer (no
 * copy); weights in external data files are read on first use. Errors name the file and say
 * what is wrong in one sentence.
 */
export function loadModel(file: string): Model {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new UserError(`model file ${file} does not exist`);
  }
  if (stat.isDirectory()) throw new UserError(`model file ${file} is a folder, not an .onnx file`);
  if (stat.size === 0) throw new UserError(`model file ${file} is empty`);
  if (stat.size > 2 ** 31 - 1) {
    throw new UserError(`model file ${file} is over 2 GB, which a protobuf message cannot be; large models keep their weights in external data files`);
  }
  const buffer = fs.readFileSync(file);
  return modelFromBytes(buffer, file);
}

/** Parses model bytes; `file` names the source in messages and anchors external data paths. */
export function modelFromBytes(bytes: Uint8Array, file = '<memory>'): Model {
  let proto: ModelProto;
  try {
    proto = onnx.ModelProto.decode(bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(`${file} is not a valid ONNX model (truncated or corrupt: ${why})`);
  }
  if (!proto.graph || (proto.graph.node ?? []).length === 0 && (proto.graph.output ?? []).length === 0) {
    throw new UserError(`${file} is not a valid ONNX model (no graph found)`);
  }
  if ((proto.opsetImport ?? []).length === 0) throw new UserError(`${file} is not a valid ONNX model (no opset_import)`);
  let usedExternal = false;
  const model = modelFromProto(proto, {
    file,
    baseDir: path.dirname(path.resolve(file)),
    readExternal: (loc) => {
      usedExternal = true;
      return readExternalBytes(loc);
    },
  });
  model.sourcePath = file === '<memory>' ? undefined : file;
  model.loadedWithExternalData = usedExternal || model.graph.initializers.some((v) => v.initializer?.isExternal);
  return model;
}
