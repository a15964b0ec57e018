import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { type ArrayTensor, arrayTensorFromTensor } from '../ir/array-tensor.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import { elementCount, type TypedArray } from '../ir/tensor.js';
import { readTensorFile } from '../onnx/tensor-file.js';
import { parseNpy } from './npy.js';
import { readZipEntries } from './zip.js';

/** One named tensor of a sample; `name` is '' when the file did not name it (then position counts). */
export interface NamedArray extends ArrayTensor {
  name: string;
}

export interface Sample {
  inputs: NamedArray[];
  label: ArrayTensor | undefined;
  /** Expected model outputs (output_K.pb), when the dataset has them. */
  expected: NamedArray[];
  /** The files the inputs and label were read from (folder layout), for messages. */
  files?: { inputs: string[]; label?: string };
}

/**
 * A set of samples read on demand, so calibration and evaluation stream through data of any
 * size. Two layouts: a folder in the ONNX test-data layout (test_data_set_N/input_K.pb, optional
 * label.pb and output_K.pb), or a .npz/.npy file whose arrays carry a leading sample axis.
 */
export interface Dataset {
  /** The folder or file given by the user. */
  readonly path: string;
  readonly size: number;
  read(index: number): Sample;
  /** Where sample `index` comes from, for messages. */
  where(index: number): string;
}

export function openDataset(p: string): Dataset {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(p);
  } catch {
    throw new UserError(`dataset ${p} does not exist`);
  }
  if (stat.isDirectory()) return openTestDataFolder(p);
  if (p.endsWith('.npz')) return openArrays(p, npzArrays(p));
  if (p.endsWith('.npy')) return openArrays(p, new Map([['', npyArray(p)]]));
  throw new UserError(`dataset ${p} is neither a folder of test_data_set_N samples nor a .npz/.npy file`);
}

function openTestDataFolder(dir: string): Dataset {
  const isSample = (d: string): boolean => fs.existsSync(path.join(d, 'input_0.pb'));
  let folders: string[];
  if (isSample(dir)) {
    folders = [dir];
  } else {
    folders = fs
      .readdirSync(dir)
      .map((n) => ({ n, m: /^test_data_set_(\d+)$/.exec(n) }))
      .filter((x) => x.m && fs.statSync(path.join(dir, x.n)).isDirectory())
      .sort((a, b) => Number(a.m![1]) - Number(b.m![1]))
      .map((x) => path.join(dir, x.n));
  }
  if (folders.length === 0) {
    throw new UserError(`dataset folder ${dir} has no samples (expected test_data_set_N folders holding input_K.pb files)`);
  }
  const numbered = (folder: string, prefix: string): string[] =>
    fs
      .readdirSync(folder)
      .map((n) => ({ n, m: new RegExp(`^${prefix}_(\\d+)\\.pb$`).exec(n) }))
      .filter((x) => x.m)
      .sort((a, b) => Number(a.m![1]) - Number(b.m![1]))
      .map((x) => path.join(folder, x.n));
  const readNamed = (file: string): NamedArray => {
    const t = readTensorFile(file);
    return { name: t.name, ...arrayTensorFromTensor(t) };
  };
  return {
    path: dir,
    size: folders.length,
    where: (i) => folders[i]!,
    read(i) {
      const folder = folders[i]!;
      const inputFiles = numbered(folder, 'input');
      const inputs = inputFiles.map(readNamed);
      if (inputs.length === 0) throw new UserError(`sample folder ${folder} has no input_0.pb`);
      const labelFile = path.join(folder, 'label.pb');
      const label = fs.existsSync(labelFile) ? checkLabelType(arrayTensorFromTensor(readTensorFile(labelFile)), labelFile) : undefined;
      return { inputs, label, expected: numbered(folder, 'output').map(readNamed), files: { inputs: inputFiles, label: label ? labelFile : undefined } };
    },
  };
}

const INTEGER_TYPES: readonly DataType[] = [DataType.INT64, DataType.INT32, DataType.INT16, DataType.INT8, DataType.UINT8, DataType.UINT16, DataType.UINT32, DataType.UINT64];

/** Labels are class indices: int64 as documented (any integer type is read); a float label is a mistake. */
function checkLabelType(label: ArrayTensor, where: string): ArrayTensor {
  if (!INTEGER_TYPES.includes(label.dtype)) {
    throw new UserError(`${where} holds ${dtypeName(label.dtype)} labels; labels must be int64 class indices (see "Datasets" in the README)`);
  }
  return label;
}

function npyArray(file: string): ArrayTensor {
  try {
    return parseNpy(fs.readFileSync(file));
  } catch (e) {
    throw new UserError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function npzArrays(file: string): Map<string, ArrayTensor> {
  const out = new Map<string, ArrayTensor>();
  try {
    for (const [name, bytes] of readZipEntries(fs.readFileSync(file))) {
      out.set(name.replace(/\.npy$/, ''), parseNpy(bytes));
    }
  } catch (e) {
    throw new UserError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return out;
}

/** Arrays with a leading sample axis: sample i is row i of each (kept with a batch axis of 1). */
function openArrays(file: string, arrays: Map<string, ArrayTensor>): Dataset {
  const label = arrays.has('label') ? checkLabelType(arrays.get('label')!, `the 'label' array of ${file}`) : undefined;
  arrays.delete('label');
  const inputs = [...arrays].filter(([name]) => !name.startsWith('output'));
  if (inputs.length === 0) throw new UserError(`dataset ${file} holds no input arrays`);
  const counts = new Set([...inputs.map(([, a]) => a.dims[0]), ...(label ? [label.dims[0]] : [])]);
  if (counts.size !== 1 || inputs[0]![1].dims.length === 0) {
    throw new UserError(`dataset ${file}: arrays must share their first (sample) dimension, found ${[...counts].join(', ')}`);
  }
  const size = inputs[0]![1].dims[0]!;
  if (size === 0) throw new UserError(`dataset ${file} has no samples`);
  const row = (a: ArrayTensor, i: number): ArrayTensor => {
    const n = elementCount(a.dims.slice(1));
    return { dtype: a.dtype, dims: [1, ...a.dims.slice(1)], data: a.data.subarray(i * n, (i + 1) * n) as TypedArray };
  };
  return {
    path: file,
    size,
    where: (i) => `${file} (sample ${i})`,
    read: (i) => ({
      inputs: inputs.map(([name, a]) => ({ name, ...row(a, i) })),
      label: label ? row(label, i) : undefined,
      expected: [],
    }),
  };
}
