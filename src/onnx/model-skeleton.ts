import * as fs from 'node:fs';
import * as path from 'node:path';
import protobuf from 'protobufjs/minimal.js';
import { onnx } from './proto.js';
import { DATA_LOCATION_EXTERNAL, externalDataEntries } from './tensor-proto.js';

type Schema = 'model' | 'graph' | 'node' | 'attribute' | 'tensor';

// which length-delimited fields of each message are messages that may hold large tensors
const ENTER: Record<Schema, ReadonlyMap<number, Schema>> = {
  model: new Map([[7, 'graph']]), // ModelProto.graph
  graph: new Map<number, Schema>([[1, 'node'], [5, 'tensor']]), // GraphProto.node, .initializer
  node: new Map([[5, 'attribute']]), // NodeProto.attribute
  attribute: new Map<number, Schema>([[5, 'tensor'], [6, 'graph'], [10, 'tensor'], [11, 'graph']]), // t, g, tensors, graphs
  tensor: new Map(),
};
// TensorProto's fields that say where its data is
const TENSOR = { rawData: 9, externalData: 13, dataLocation: 14 } as const;
// protobuf wire types
const WIRE = { varint: 0, fixed64: 1, bytes: 2, fixed32: 5 } as const;

/** Byte ranges of a file, read through a small window (one read per 64 KiB of headers). */
class FileBytes {
  private window = new Uint8Array(0);
  private windowStart = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}

  read(offset: number, length: number): Uint8Array {
    if (offset >= this.windowStart && offset + length <= this.windowStart + this.window.byteLength) {
      return this.window.subarray(offset - this.windowStart, offset - this.windowStart + length);
    }
    const want = Math.min(Math.max(length, 1 << 16), this.size - offset);
    const buf = Buffer.allocUnsafe(want);
    let done = 0;
    while (done < want) {
      const n = fs.readSync(this.fd, buf, done, want - done, offset + done);
      if (n <= 0) break;
      done += n;
    }
    this.window = new Uint8Array(buf.buffer, buf.byteOffset, done);
    this.windowStart = offset;
    if (done < length) throw new Corrupt(`ends at byte ${offset + done}, inside a field`);
    return this.window.subarray(0, length);
  }

  /** A copy of a range (what is kept must not alias the window). */
  copy(offset: number, length: number): Uint8Array {
    return new Uint8Array(this.read(offset, length));
  }
}

class Corrupt extends Error {}

interface Field {
  field: number;
  wire: number;
  /** Where the field (its tag) starts, where its payload starts, where it ends. */
  start: number;
  payload: number;
  end: number;
}

/** The field at `pos`, its extent checked against `end`. */
function fieldAt(bytes: FileBytes, pos: number, end: number): Field {
  const head = bytes.read(pos, Math.min(20, end - pos));
  const r = protobuf.Reader.create(head);
  let tag: number;
  let length = 0;
  try {
    tag = r.uint32();
    const wire = tag & 7;
    if (wire === WIRE.varint) r.skip();
    else if (wire === WIRE.fixed64) length = 8;
    else if (wire === WIRE.fixed32) length = 4;
    else if (wire === WIRE.bytes) length = r.uint32();
    else throw new Corrupt(`wire type ${wire} at byte ${pos}`);
  } catch (e) {
    throw e instanceof Corrupt ? e : new Corrupt(`a field at byte ${pos} runs past its message`);
  }
  const payload = pos + r.pos;
  const fieldEnd = payload + length;
  if (tag >>> 3 === 0) throw new Corrupt(`field number 0 at byte ${pos}`);
  if (fieldEnd > end) throw new Corrupt(`a field at byte ${pos} runs past its message (${fieldEnd} > ${end})`);
  return { field: tag >>> 3, wire: tag & 7, start: pos, payload, end: fieldEnd };
}

/** Tag and length of a length-delimited field. */
function bytesHeader(field: number, length: number): Uint8Array {
  return protobuf.Writer.create().uint32((field << 3) | WIRE.bytes).uint32(length).finish();
}

/**
 * Reads an .onnx file without holding it whole: the protobuf is walked in the file, piece by
 * piece, and copied except for the raw_data of large tensors (`minBytes` and up), which is left
 * in the file. Each such tensor comes back marked as external data whose location is the model
 * file itself (at the offset of its raw_data), so the ordinary decoder makes it a tensor read
 * from the file at each use. A 325 MiB BERT-base file is read as a 0.6 MiB skeleton (in 47 ms)
 * instead of a 325 MiB buffer.
 *
 * Only the messages that can hold large tensors are entered (model -> graph -> initializer,
 * node -> attribute -> tensor or subgraph); every other field is copied as it is. The wire
 * format (tags, varints, lengths) is read and written by protobufjs' Reader and Writer.
 *
 * Returns a ModelProto with the large raw_data replaced by external-data references to `file`.
 */
export function readModelSkeleton(file: string, minBytes: number): Uint8Array {
  const fd = fs.openSync(file, 'r');
  try {
    const bytes = new FileBytes(fd, fs.fstatSync(fd).size);
    const location = path.basename(file);

    // the message in [start, end) as pieces of the skeleton
    const walk = (schema: Schema, start: number, end: number): Uint8Array[] => {
      const out: Uint8Array[] = [];
      let dropped: { offset: number; length: number } | undefined;
      for (let pos = start; pos < end; ) {
        const f = fieldAt(bytes, pos, end);
        pos = f.end;
        const inner = f.wire === WIRE.bytes ? ENTER[schema].get(f.field) : undefined;
        if (inner) {
          const pieces = walkOrCopy(inner, f.payload, f.end);
          out.push(bytesHeader(f.field, pieces.reduce((a, p) => a + p.byteLength, 0)), ...pieces);
        } else if (schema === 'tensor' && f.field === TENSOR.rawData && f.wire === WIRE.bytes && f.end - f.payload >= minBytes) {
          dropped = { offset: f.payload, length: f.end - f.payload };
        } else {
          out.push(bytes.copy(f.start, f.end - f.start));
        }
      }
      if (dropped) {
        // the tensor's data stays where it is: it becomes external data in the model file itself
        // (in place of any data_location or external_data the tensor said it had)
        const kept = out.filter((p) => !([TENSOR.dataLocation, TENSOR.externalData] as number[]).includes(protobuf.Reader.create(p).uint32() >>> 3));
        const extra = onnx.TensorProto.encode({ dataLocation: DATA_LOCATION_EXTERNAL, externalData: externalDataEntries(location, dropped.offset, dropped.length) }).finish();
        return [...kept, extra];
      }
      return out;
    };

    // a message the walk cannot read (a wire type protobufjs' decoder reads leniently, a length
    // past its end) is copied whole, so that the decoder reports it as it would have: the
    // tensor and node it belongs to where it can, or a truncated or corrupt file
    const walkOrCopy = (schema: Schema, start: number, end: number): Uint8Array[] => {
      try {
        return walk(schema, start, end);
      } catch (e) {
        if (e instanceof Corrupt) return [bytes.copy(start, end - start)];
        throw e;
      }
    };

    return Buffer.concat(walkOrCopy('model', 0, bytes.size));
  } finally {
    fs.closeSync(fd);
  }
}
