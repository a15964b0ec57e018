import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { writeTensorFile } from '../../src/onnx/tensor-file.js';
import { npyBytes, npzBytes } from '../helpers/npy.js';
import { FEATURES, tinyClassifier, tinySamples, writeTestData } from '../helpers/tiny-classifier.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const model = tinyClassifier();

describe('test-data folders', () => {
  it('reads samples in numeric order and batches them', () => {
    const d = path.join(dir, 'ok');
    const { x, labels } = tinySamples(11);
    writeTestData(d, x, labels);
    const ds = openDataset(d);
    expect(ds.size).toBe(11);
    expect(ds.where(10)).toMatch(/test_data_set_10$/);
    expect([...ds.read(10).inputs[0]!.data]).toEqual([...x[10]!]);
    const bound = bindDataset(ds, model);
    expect(bound.hasLabels).toBe(true);
    const bs = [...batches(bound, 4)];
    expect(bs.map((b) => b.count)).toEqual([4, 4, 3]);
    expect(bs[2]!.feeds.features!.dims).toEqual([3, FEATURES]);
    expect([...bs[1]!.label!.data].map(Number)).toEqual(labels.slice(4, 8));
  });

  it('an empty folder is an error naming it', () => {
    const d = path.join(dir, 'empty');
    fs.mkdirSync(d);
    expect(() => openDataset(d)).toThrow(/empty has no samples/);
    expect(() => openDataset(path.join(dir, 'nope'))).toThrow(/nope does not exist/);
  });

  it('names, dtypes and shapes that do not fit the model are errors naming file and tensor', () => {
    const wrongName = path.join(dir, 'wrong-name');
    writeTestData(wrongName, tinySamples(2).x, [0, 1], 'pixels');
    expect(() => bindDataset(openDataset(wrongName), model)).toThrow(/test_data_set_0: tensor 'pixels' is not an input of the model \(its inputs are 'features'\)/);

    const wrongType = path.join(dir, 'wrong-type', 'test_data_set_0');
    fs.mkdirSync(wrongType, { recursive: true });
    writeTensorFile(path.join(wrongType, 'input_0.pb'), Tensor.from('features', DataType.INT64, [1, FEATURES], new Array(FEATURES).fill(1)));
    expect(() => bindDataset(openDataset(path.dirname(wrongType)), model)).toThrow(/tensor 'features' is int64\[1,6\] but the model's input 'features' is float32\[batch,6\]/);

    const wrongShape = path.join(dir, 'wrong-shape', 'test_data_set_0');
    fs.mkdirSync(wrongShape, { recursive: true });
    writeTensorFile(path.join(wrongShape, 'input_0.pb'), Tensor.from('features', DataType.FLOAT, [1, 5], new Array(5).fill(1)));
    expect(() => bindDataset(openDataset(path.dirname(wrongShape)), model)).toThrow(/shape \[1,5\] but the model's input 'features' takes \[batch,6\]/);

    const nan = path.join(dir, 'nan');
    const xs = tinySamples(3).x;
    xs[2]![3] = NaN;
    writeTestData(nan, xs, [0, 1, 2]);
    expect(() => bindDataset(openDataset(nan), model)).toThrow(/test_data_set_2: tensor 'features' contains NaN/);

    const corrupt = path.join(dir, 'corrupt', 'test_data_set_0');
    fs.mkdirSync(corrupt, { recursive: true });
    fs.writeFileSync(path.join(corrupt, 'input_0.pb'), Buffer.from([0x0a, 0xff, 0xff, 0x01]));
    expect(() => bindDataset(openDataset(path.dirname(corrupt)), model)).toThrow(/input_0\.pb is not a valid serialized ONNX tensor/);
  });
});

describe('.npz and .npy', () => {
  const { x, labels } = tinySamples(5);
  const flat = new Float32Array(5 * FEATURES);
  x.forEach((r, i) => flat.set(r, i * FEATURES));
  for (const deflate of [false, true]) {
    it(`reads arrays named after the inputs, plus labels (${deflate ? 'compressed' : 'stored'})`, () => {
      const f = path.join(dir, `set-${deflate}.npz`);
      fs.writeFileSync(f, npzBytes({ features: npyBytes('<f4', [5, FEATURES], flat), label: npyBytes('<i8', [5], BigInt64Array.from(labels.map(BigInt))) }, deflate));
      const bound = bindDataset(openDataset(f), model);
      expect(bound.dataset.size).toBe(5);
      const [b] = [...batches(bound, 8)];
      expect(b!.feeds.features!.dims).toEqual([5, FEATURES]);
      expect([...b!.feeds.features!.data]).toEqual([...flat]);
      expect([...b!.label!.data].map(Number)).toEqual(labels);
    });
  }

  it('a single .npy feeds a one-input model; mismatches are errors', () => {
    const f = path.join(dir, 'x.npy');
    fs.writeFileSync(f, npyBytes('<f4', [5, FEATURES], flat));
    const bound = bindDataset(openDataset(f), model);
    expect(bound.hasLabels).toBe(false);
    const bad = path.join(dir, 'bad.npz');
    fs.writeFileSync(bad, npzBytes({ features: npyBytes('<f4', [5, FEATURES], flat), label: npyBytes('<i8', [4], new BigInt64Array(4)) }));
    expect(() => openDataset(bad)).toThrow(/must share their first \(sample\) dimension/);
    const broken = path.join(dir, 'broken.npy');
    fs.writeFileSync(broken, Buffer.from('definitely not numpy'));
    expect(() => openDataset(broken)).toThrow(/broken\.npy: not a \.npy file/);
  });

  it('a float label array is refused, naming the file; int32 labels are read', () => {
    const floatLabels = path.join(dir, 'float-labels.npz');
    fs.writeFileSync(floatLabels, npzBytes({ features: npyBytes('<f4', [5, FEATURES], flat), label: npyBytes('<f4', [5], Float32Array.from(labels)) }));
    expect(() => openDataset(floatLabels)).toThrow(/the 'label' array of .*float-labels\.npz holds float32 labels; labels must be int64 class indices/);
    const intLabels = path.join(dir, 'int32-labels.npz');
    fs.writeFileSync(intLabels, npzBytes({ features: npyBytes('<f4', [5, FEATURES], flat), label: npyBytes('<i4', [5], Int32Array.from(labels)) }));
    expect([...openDataset(intLabels).read(2).label!.data]).toEqual([labels[2]]);
  });
});
