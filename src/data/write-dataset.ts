import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { writeTensorFile } from '../onnx/tensor-file.js';
import type { Dataset } from './dataset.js';
import { npyBytes, npyHolds } from './npy.js';
import { storedZip } from './zip.js';

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
    if (!npyHolds(a.dtype)) throw new UserError(`'${name}' is ${dtypeName(a.dtype)}, which .npz output does not write`);
    const bytes = a.parts.reduce((n, p) => n + p.byteLength, 0);
    if (bytes >= 0xffffffff) throw new UserError(`the array ${name} is over 4 GiB, more than a .npz written here holds; write a test-data folder instead`);
    files.push({ name: `${name}.npy`, bytes: npyBytes(a.dtype, [a.parts.length, ...a.dims], Buffer.concat(a.parts)) });
  }
  return storedZip(files);
}
