import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { readTensorFile, writeTensorFile } from '../../src/onnx/tensor-file.js';
import { cli, type CliResult } from '../helpers/cli.js';
import { expectOneSentence, listTree, sha256 } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('slimformer-dataset-format-');
const VIT = path.join(ROOT, 'fixtures/vit_mnist.onnx');
const EVAL = path.join(ROOT, 'calibration/vit_mnist/eval');

/** The first `n` samples of the vit_mnist evaluation data, copied so one of them can be broken. */
function copyOf(name: string, n = 4): string {
  const d = path.join(dir, name);
  for (let i = 0; i < n; i++) fs.cpSync(path.join(EVAL, `test_data_set_${i}`), path.join(d, `test_data_set_${i}`), { recursive: true });
  return d;
}

/** Refused: exit 2, one sentence, the broken file unchanged, nothing written into the temp folder. */
function expectRefused(run: () => CliResult, pattern: RegExp, broken: string): void {
  const hash = sha256(broken);
  const before = listTree(dir);
  expectOneSentence(run(), pattern);
  expect(sha256(broken)).toBe(hash);
  expect(listTree(dir)).toEqual(before);
}

describe('data that breaks the documented format is refused up front, naming the file', () => {
  it('a float32 label.pb (documented int64): eval and gate', () => {
    const data = copyOf('float-label');
    const label = path.join(data, 'test_data_set_2', 'label.pb');
    writeTensorFile(label, Tensor.from('label', DataType.FLOAT, [1], [Number(readTensorFile(label).toTypedArray()[0])]));
    const pattern = /test_data_set_2\/label\.pb holds float32 labels; labels must be int64 class indices/;
    expectRefused(() => cli('eval', VIT, '--data', data), pattern, label);
    expectRefused(() => cli('gate', '--baseline', VIT, '--candidate', VIT, '--data', data, '--metric', 'top1', '--max-drop', '0.01'), pattern, label);
  });

  it('a sample whose batch axis is 2 (documented 1): eval, quantize, prune, gate and analyze', () => {
    const data = copyOf('batch-2');
    const file = path.join(data, 'test_data_set_1', 'input_0.pb');
    const x = readTensorFile(file).toFloat32();
    const two = new Float32Array(x.length * 2);
    two.set(x);
    two.set(x, x.length);
    writeTensorFile(file, Tensor.from('pixel_values', DataType.FLOAT, [2, 1, 28, 28], two));
    const pattern = /test_data_set_1\/input_0\.pb: tensor 'pixel_values' has shape \[2,1,28,28\], a batch axis of 2; a sample holds one example/;
    expectRefused(() => cli('eval', VIT, '--data', data), pattern, file);
    expectRefused(() => cli('quantize', VIT, '-o', path.join(dir, 'q.onnx'), '--calib', data, '--no-cache'), pattern, file);
    expectRefused(() => cli('prune', VIT, '-o', path.join(dir, 'p.onnx'), '--calib', data, '--method', 'mlp', '--ratio', '0.2'), pattern, file);
    expectRefused(() => cli('gate', '--baseline', VIT, '--candidate', VIT, '--data', data, '--max-drop', '0.01'), pattern, file);
    expectRefused(() => cli('analyze', VIT, '--calib', data), pattern, file);
  });

  it('a label whose batch axis is 2', () => {
    const data = copyOf('label-batch-2');
    const label = path.join(data, 'test_data_set_3', 'label.pb');
    writeTensorFile(label, Tensor.from('label', DataType.INT64, [2], [1, 2]));
    expectRefused(() => cli('eval', VIT, '--data', data), /test_data_set_3\/label\.pb: the label has shape \[2\], a batch axis of 2/, label);
  });
});

describe('label shape and range errors name the dataset and the sample', () => {
  it('a label out of range', () => {
    const data = copyOf('label-range');
    const label = path.join(data, 'test_data_set_2', 'label.pb');
    writeTensorFile(label, Tensor.from('label', DataType.INT64, [1], [12]));
    const pattern = /label-range\/test_data_set_2: label 12 is out of range for output 'logits' with 10 classes \(0 to 9\)/;
    expectRefused(() => cli('eval', VIT, '--data', data), pattern, label);
    expectRefused(() => cli('gate', '--baseline', VIT, '--candidate', VIT, '--data', data, '--max-drop', '0.01'), pattern, label);
  });

  it('a label whose shape does not fit the output', () => {
    const data = copyOf('label-shape');
    for (let i = 0; i < 4; i++) writeTensorFile(path.join(data, `test_data_set_${i}`, 'label.pb'), Tensor.from('label', DataType.INT64, [1, 3], [1, 2, 3]));
    const label = path.join(data, 'test_data_set_0', 'label.pb');
    expectRefused(() => cli('eval', VIT, '--data', data), /label-shape\/test_data_set_0: the label of shape \[1,3\] does not fit output 'logits' of shape \[1,10\] \(expected \[1\]\)/, label);
  });
});
