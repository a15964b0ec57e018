import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { writeTensorFile } from '../onnx/tensor-file.js';
import type { Dataset } from './dataset.js';

/**
 * Writes a dataset's samples so that `openDataset` reads back the same tensors: a folder in
 * the ONNX test-data layout (test_data_set_N/input_K.pb named after the model inputs, label.pb),
 * or, for a path ending in .npz, one array per input with a leading sample axis plus `label`.
 * The output is built under a temporary name and renamed when complete; an existing output
 * is refused.
 */
export function writeDataset(dataset: Dataset, out: string): void {
  checkDatasetOutput(out);
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.tmp`);
  try {
    if (out.endsWith('.npz')) fs.writeFileSync(tmp, npzBytes(dataset));
    else writeFolder(dataset, tmp);
    fs.renameSync(tmp, out);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** The output can be written: it does not exist yet, and its folder does (checked before any work). */
export function checkDatasetOutput(out: string): void {
  if (fs.existsSync(out)) throw new UserError(`${out} exists already; give a new path for the dataset (it is never overwritten)`);
  const parent = path.dirname(path.resolve(out));
  if (!fs.existsSync(parent) || !fs.statSync(parent).isDirectory()) throw new UserError(`cannot write the dataset ${out}: folder ${parent} does not exist`);
}

function writeFolder(dataset: Dataset, dir: string): void {
  fs.mkdirSync(dir);
  for (let i = 0; i < dataset.size; i++) {
    const sample = dataset.read(i);
    const folder = path.join(dir, `test_data_set_${i}`);
    fs.mkdirSync(folder);
    sample.inputs.forEach((a, k) => writeTensorFile(path.join(folder, `input_${k}.pb`), toTensor(a.name, a)));
    if (sample.label) writeTensorFile(path.join(folder, 'label.pb'), toTensor('label', sample.label));
  }
}

function toTensor(name: string, a: ArrayTensor): Tensor {
  const bytes = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  return Tensor.fromBytes(name, a.dtype, a.dims, bytes.slice());
}

/** numpy's descr for each type the datasets hold (little-endian). */
const DESCR: Partial<Record<DataType, string>> = {
  [DataType.FLOAT]: '<f4',
  [DataType.DOUBLE]: '<f8',
  [DataType.FLOAT16]: '<f2',
  [DataType.INT64]: '<i8',
  [DataType.INT32]: '<i4',
  [DataType.BOOL]: '|b1',
  [DataType.UINT8]: '|u1',
  [DataType.INT8]: '|i1',
};

/** The samples stacked along a new first axis (each sample's batch axis of 1 becomes the sample axis). */
function npzBytes(dataset: Dataset): Uint8Array {
  const arrays = new Map<string, { dtype: DataType; dims: number[]; parts: Uint8Array[] }>();
  const add = (name: string, a: ArrayTensor, where: string): void => {
    const rest = a.dims.slice(1);
    const prev = arrays.get(name);
    if (prev && (prev.dtype !== a.dtype || prev.dims.join(',') !== rest.join(','))) {
      throw new UserError(`${where}: '${name}' has shape [${a.dims.join(',')}], unlike the samples before it; a .npz needs one shape per array (write a test-data folder instead)`);
    }
    const entry = prev ?? { dtype: a.dtype, dims: rest, parts: [] };
    entry.parts.push(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength));
    arrays.set(name, entry);
  };
  for (let i = 0; i < dataset.size; i++) {
    const s = dataset.read(i);
    s.inputs.forEach((a, k) => add(a.name || `input_${k}`, a, dataset.where(i)));
    if (s.label) add('label', s.label, dataset.where(i));
  }
  const files: { name: string; bytes: Uint8Array }[] = [];
  for (const [name, a] of arrays) {
    const descr = DESCR[a.dtype];
    if (!descr) throw new UserError(`'${name}' is ${dtypeName(a.dtype)}, which .npz output does not write`);
    files.push({ name: `${name}.npy`, bytes: npy(descr, [a.parts.length, ...a.dims], a.parts) });
  }
  return storedZip(files);
}

function npy(descr: string, shape: number[], parts: Uint8Array[]): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in \n
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]), Buffer.from(Uint16Array.of(header.length).buffer), Buffer.from(header, 'latin1')]);
  return Buffer.concat([head, ...parts]);
}

/** A zip archive of stored (uncompressed) members, as numpy.savez writes. */
function storedZip(files: { name: string; bytes: Uint8Array }[]): Uint8Array {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name, 'utf8');
    const crc = zlib.crc32(f.bytes);
    if (f.bytes.byteLength >= 0xffffffff) throw new UserError(`the array ${f.name} is over 4 GiB, more than a .npz written here holds; write a test-data folder instead`);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(f.bytes.byteLength, 18);
    local.writeUInt32LE(f.bytes.byteLength, 22);
    local.writeUInt16LE(name.length, 26);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4);
    entry.writeUInt16LE(20, 6);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(f.bytes.byteLength, 20);
    entry.writeUInt32LE(f.bytes.byteLength, 24);
    entry.writeUInt16LE(name.length, 28);
    entry.writeUInt32LE(offset, 42);
    locals.push(local, name, Buffer.from(f.bytes.buffer, f.bytes.byteOffset, f.bytes.byteLength));
    central.push(entry, name);
    offset += 30 + name.length + f.bytes.byteLength;
  }
  const dir = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}
