import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import type { Graph } from '../ir/graph.js';
import { DataType } from '../ir/dtype.js';
import { EXTERNAL_KEEP_LIMIT, Tensor } from '../ir/tensor.js';
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
  const model = modelFromBytes(buffer, file);
  readInlineWeightsOnUse(model, buffer, path.resolve(file));
  return model;
}

/**
 * Large weights stored inline become tensors read from the file at each use (like external
 * data, Tensor.bytes): the file's buffer is then let go, and quantizing a model inline in a
 * 325 MB file no longer starts with all 325 MB of it resident. The input is never written, so
 * reading it again gives the same bytes.
 */
function readInlineWeightsOnUse(model: Model, buffer: Buffer, file: string): void {
  // what still points into the buffer keeps all of it alive: small tensors get their own copy
  const own = (t: Tensor): Tensor => {
    if (t.isExternal || t.dtype === DataType.STRING) return t;
    const b = t.bytes;
    if (b.buffer !== buffer.buffer) return t;
    const out =
      t.byteLength >= EXTERNAL_KEEP_LIMIT
        ? Tensor.external(t.name, t.dtype, t.dims, { file, offset: b.byteOffset - buffer.byteOffset, length: b.byteLength }, readExternalBytes)
        : Tensor.fromBytes(t.name, t.dtype, t.dims, new Uint8Array(b)); // a copy (Buffer.slice would be a view)
    out.docString = t.docString;
    return out;
  };
  const visit = (g: Graph): void => {
    for (const v of g.initializers) if (v.initializer) v.initializer = own(v.initializer);
    for (const n of g.nodes) {
      for (const [k, a] of n.attributes) {
        if (a.type === 'tensor') n.attributes.set(k, { ...a, value: own(a.value) });
        else if (a.type === 'tensors') n.attributes.set(k, { ...a, value: a.value.map(own) });
      }
      for (const sub of n.subgraphs()) visit(sub);
    }
  };
  visit(model.graph);
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
