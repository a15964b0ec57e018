import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Tensor } from '../ir/tensor.js';
import { UserError } from '../errors.js';
import { onnx } from './proto.js';
import { graphToProto, modelHeaderToProto } from './serialize.js';
import { DATA_LOCATION_EXTERNAL, encodeTensorHeader, externalDataEntries } from './tensor-proto.js';
import { fileStamp } from './external-data.js';

/** Protobuf messages cannot exceed 2 GB; keep a margin for the graph structure. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
const INLINE_BUDGET = PROTOBUF_LIMIT - 64 * 2 ** 20;

export interface SaveOptions {
  /**
   * Keep initializer data in a separate file. `true` uses `<model file name>.data` beside the
   * model; `'auto'` (the default) does so when the model was loaded with external data or when
   * its data would not fit in one protobuf message (2 GB).
   */
  externalData?: boolean | 'auto' | { location?: string; threshold?: number };
  /** Most bytes of weights kept inline before 'auto' moves them out (default: just under 2 GB). */
  inlineLimitBytes?: number;
  /**
   * A scratch copy (an onnxruntime session's file): no fsync, and tensors not read yet keep
   * pointing at their own source rather than at this file, which is deleted soon.
   */
  scratch?: boolean;
}

export interface SaveResult {
  path: string;
  /** The external data file, when one was written. */
  dataPath: string | undefined;
  bytes: number;
}

// ---- protobuf wire helpers: enough to frame the messages we stream ourselves ----

function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Uint8Array.from(out);
}

/** Tag byte(s) + length prefix of a length-delimited field. */
function fieldHeader(field: number, length: number): Uint8Array {
  const tag = varint((field << 3) | 2);
  const len = varint(length);
  const out = new Uint8Array(tag.length + len.length);
  out.set(tag);
  out.set(len, tag.length);
  return out;
}

/** A piece of the output file: bytes we have, or a tensor's raw data read when written. */
type Piece = Uint8Array | { tensor: Tensor };

function pieceLength(p: Piece): number {
  return p instanceof Uint8Array ? p.byteLength : p.tensor.byteLength;
}

const MODEL_GRAPH_FIELD = 7;
const GRAPH_INITIALIZER_FIELD = 5;
const TENSOR_RAW_DATA_FIELD = 9;

/**
 * Writes a model. The file is written under a temporary name in the same folder and renamed
 * when complete, so a failure (or an interrupt) never leaves a half-written model. Tensor data
 * is streamed from where it lives (memory or the source's external data file), so memory does
 * not double while saving.
 */
export function saveModel(model: Model, file: string, options: SaveOptions = {}): SaveResult {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new UserError(`cannot write ${file}: folder ${dir} does not exist`);
  const initializers = model.graph.initializers.filter((v) => v.initializer).map((v) => v.initializer!);
  const totalData = initializers.reduce((a, t) => a + t.byteLength, 0);
  const ext = options.externalData ?? 'auto';
  const inlineLimit = Math.min(options.inlineLimitBytes ?? INLINE_BUDGET, INLINE_BUDGET);
  const useExternal =
    ext === true || typeof ext === 'object' || (ext === 'auto' && (model.loadedWithExternalData || totalData > inlineLimit));
  const location = (typeof ext === 'object' && ext.location) || `${path.basename(file)}.data`;
  const threshold = typeof ext === 'object' && ext.threshold !== undefined ? ext.threshold : 1024;
  const dataPath = useExternal ? path.join(dir, location) : undefined;

  const tmpTag = `.${process.pid}.${Date.now().toString(36)}.tmp`;
  const tmpModel = path.join(dir, `.${path.basename(file)}${tmpTag}`);
  const tmpData = dataPath ? path.join(dir, `.${path.basename(dataPath)}${tmpTag}`) : undefined;
  const cleanup = (): void => {
    for (const f of [tmpModel, tmpData]) if (f && fs.existsSync(f)) fs.rmSync(f, { force: true });
  };
  process.once('exit', cleanup);
  try {
    // 1. external data: append each large tensor, page-aligned so runtimes can map it
    const externalAt = new Map<Tensor, { offset: number; length: number }>();
    if (tmpData) {
      const fd = fs.openSync(tmpData, 'w');
      try {
        let offset = 0;
        for (const t of initializers) {
          if (t.dtype === DataType.STRING || t.byteLength < threshold) continue;
          const aligned = t.byteLength >= 2 ** 20 ? Math.ceil(offset / 4096) * 4096 : offset;
          if (aligned > offset) writeAll(fd, new Uint8Array(aligned - offset));
          writeAll(fd, t.readBytesUncached());
          externalAt.set(t, { offset: aligned, length: t.byteLength });
          offset = aligned + t.byteLength;
        }
        if (!options.scratch) fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    // 2. the model: header fields, then the graph with initializers framed by hand
    const inlineBytes = initializers.filter((t) => !externalAt.has(t)).reduce((a, t) => a + t.byteLength, 0);
    if (inlineBytes > inlineLimit) {
      throw new UserError(`cannot write ${file}: ${inlineBytes} bytes of weights exceed protobuf's 2 GB limit; save with external data`);
    }
    const graphPieces: Piece[] = [onnx.GraphProto.encode(graphToProto(model.graph, false)).finish()];
    for (const t of initializers) {
      const header = encodeTensorHeader(t);
      const where = externalAt.get(t);
      if (where) {
        header.dataLocation = DATA_LOCATION_EXTERNAL;
        header.externalData = externalDataEntries(location, where.offset, where.length);
      }
      const headerBytes = onnx.TensorProto.encode(header).finish();
      const inline = !where && t.dtype !== DataType.STRING;
      const rawHeader = inline ? fieldHeader(TENSOR_RAW_DATA_FIELD, t.byteLength) : undefined;
      const tensorLength = headerBytes.byteLength + (rawHeader ? rawHeader.byteLength + t.byteLength : 0);
      graphPieces.push(fieldHeader(GRAPH_INITIALIZER_FIELD, tensorLength), headerBytes);
      if (rawHeader) graphPieces.push(rawHeader, { tensor: t });
    }
    const graphLength = graphPieces.reduce((a, p) => a + pieceLength(p), 0);
    const pieces: Piece[] = [
      onnx.ModelProto.encode(modelHeaderToProto(model)).finish(),
      fieldHeader(MODEL_GRAPH_FIELD, graphLength),
      ...graphPieces,
    ];
    const fd = fs.openSync(tmpModel, 'w');
    let bytes = 0;
    const inlineAt = new Map<Tensor, number>();
    try {
      for (const p of pieces) {
        const b = p instanceof Uint8Array ? p : p.tensor.readBytesUncached();
        if (!(p instanceof Uint8Array)) inlineAt.set(p.tensor, bytes);
        writeAll(fd, b);
        bytes += b.byteLength;
      }
      if (!options.scratch) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    // 3. publish: data first, so the model never points at a missing file
    if (tmpData && dataPath) fs.renameSync(tmpData, dataPath);
    fs.renameSync(tmpModel, file);
    // tensors not read yet now live in the file just written (the old one may be gone)
    if (!options.scratch && dataPath) {
      const unchanged = fileStamp(fs.statSync(dataPath));
      for (const [t, where] of externalAt) if (t.isExternal) t.external = { file: dataPath, ...where, unchanged };
    }
    // so do the inline weights of a model saved over the file they are read from
    const self = path.resolve(file);
    if (!options.scratch && [...inlineAt.keys()].some((t) => t.external?.file === self)) {
      const unchanged = fileStamp(fs.statSync(self));
      for (const [t, offset] of inlineAt) if (t.external?.file === self) t.external = { file: self, offset, length: t.byteLength, unchanged };
    }
    return { path: file, dataPath, bytes };
  } catch (e) {
    cleanup();
    throw e;
  } finally {
    process.removeListener('exit', cleanup);
  }
}

/** Serializes a model whose data fits in one message into memory (for onnxruntime sessions). */
export function modelToBytes(model: Model): Uint8Array {
  const header = onnx.ModelProto.encode(modelHeaderToProto(model)).finish();
  const graph = onnx.GraphProto.encode(graphToProto(model.graph, true)).finish();
  const out = new Uint8Array(header.byteLength + fieldHeader(MODEL_GRAPH_FIELD, graph.byteLength).byteLength + graph.byteLength);
  const gh = fieldHeader(MODEL_GRAPH_FIELD, graph.byteLength);
  out.set(header);
  out.set(gh, header.byteLength);
  out.set(graph, header.byteLength + gh.byteLength);
  return out;
}

function writeAll(fd: number, b: Uint8Array): void {
  let done = 0;
  while (done < b.byteLength) done += fs.writeSync(fd, b, done, b.byteLength - done);
}
