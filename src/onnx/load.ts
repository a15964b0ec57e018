import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import type { Graph } from '../ir/graph.js';
import { EXTERNAL_KEEP_LIMIT, type Tensor } from '../ir/tensor.js';
import { modelFromProto } from './deserialize.js';
import { fileStamp, readExternalBytes } from './external-data.js';
import { readModelSkeleton } from './model-skeleton.js';
import { onnx, type ModelProto } from './proto.js';

/**
 * Reads an ONNX model file. Weights of 1 MiB and more, inline or in external data files, are
 * read from their file when used; smaller ones are held. Errors name the file and say what is
 * wrong in one sentence.
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
  // the file is walked, not read whole: large inline weights stay in it and are read from it at
  // each use (like external data, Tensor.bytes), so loading a 325 MB BERT-base file no longer
  // puts all 325 MB of it in memory. The input is never written; a change to it afterwards is
  // noticed when a weight is read (readExternalBytes), not silently read as other weights.
  const self = path.resolve(file);
  const skeleton = readModelSkeleton(file, EXTERNAL_KEEP_LIMIT);
  const after = fs.statSync(file);
  if (after.size !== stat.size || after.mtimeMs !== stat.mtimeMs) throw new UserError(`model file ${file} changed while it was being read`);
  const model = modelFromBytes(skeleton, file);
  const unchanged = fileStamp(after);
  forEachTensor(model.graph, (t) => {
    if (t.external?.file === self) t.external = { ...t.external, unchanged };
  });
  model.loadedWithExternalData = model.graph.initializers.some((v) => v.initializer?.isExternal && v.initializer.external!.file !== self);
  return model;
}

/** Every constant tensor of a graph and its subgraphs: initializers and tensor attributes. */
function forEachTensor(g: Graph, visit: (t: Tensor) => void): void {
  for (const v of g.initializers) if (v.initializer) visit(v.initializer);
  for (const n of g.nodes) {
    for (const a of n.attributes.values()) {
      if (a.type === 'tensor') visit(a.value);
      else if (a.type === 'tensors') a.value.forEach(visit);
    }
    for (const sub of n.subgraphs()) forEachTensor(sub, visit);
  }
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
