import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { saveModel } from '../../src/onnx/save.js';
import { writeTensorFile } from '../../src/onnx/tensor-file.js';
import { cli } from '../helpers/cli.js';
import { tinyClassifier, tinySamples, writeTestData } from '../helpers/tiny-classifier.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const model = path.join(dir, 'tiny.onnx');
saveModel(tinyClassifier(), model);
const { x, labels } = tinySamples(20);
writeTestData(path.join(dir, 'eval'), x, labels);

/** One sentence on stderr, no stack trace, exit code 2. */
function expectUserError(r: ReturnType<typeof cli>, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('eval on a small model', () => {
  it('prints metrics as JSON', () => {
    const r = cli('eval', model, '--data', path.join(dir, 'eval'), '--metric', 'top1,nll,perplexity', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.samples).toBe(20);
    expect(Object.keys(out.metrics)).toEqual(['top1', 'nll', 'perplexity']);
    expect(out.metrics.perplexity).toBeCloseTo(Math.exp(out.metrics.nll), 10);
  });
});

describe('bad input ends with one clear sentence and exit code 2', () => {
  it('missing model file', () => {
    expectUserError(cli('eval', path.join(dir, 'nope.onnx'), '--data', path.join(dir, 'eval')), /model file .*nope\.onnx does not exist/);
    expectUserError(cli('inspect', path.join(dir, 'nope.onnx')), /nope\.onnx does not exist/);
  });

  it('truncated and corrupt models', () => {
    const bytes = fs.readFileSync(model);
    const truncated = path.join(dir, 'truncated.onnx');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 40));
    expectUserError(cli('inspect', truncated), /truncated\.onnx (is not a valid ONNX model|.*truncated or corrupt)/);
    const corrupt = path.join(dir, 'corrupt.onnx');
    fs.writeFileSync(corrupt, Buffer.from('PK\u0003\u0004 not an onnx file'.repeat(10)));
    expectUserError(cli('eval', corrupt, '--data', path.join(dir, 'eval')), /corrupt\.onnx is not a valid ONNX model/);
  });

  it('datasets that do not fit the model', () => {
    const wrongName = path.join(dir, 'wrong-name');
    writeTestData(wrongName, x.slice(0, 2), [0, 1], 'input_ids');
    expectUserError(cli('eval', model, '--data', wrongName), /tensor 'input_ids' is not an input of the model/);
    const wrongType = path.join(dir, 'wrong-type', 'test_data_set_0');
    fs.mkdirSync(wrongType, { recursive: true });
    writeTensorFile(path.join(wrongType, 'input_0.pb'), Tensor.from('features', DataType.DOUBLE, [1, 6], [1, 2, 3, 4, 5, 6]));
    writeTensorFile(path.join(wrongType, 'label.pb'), Tensor.from('label', DataType.INT64, [1], [0]));
    expectUserError(cli('eval', model, '--data', path.dirname(wrongType)), /tensor 'features' is float64\[1,6\] but the model's input 'features' is float32\[batch,6\]/);
    const wrongShape = path.join(dir, 'wrong-shape', 'test_data_set_0');
    fs.mkdirSync(wrongShape, { recursive: true });
    writeTensorFile(path.join(wrongShape, 'input_0.pb'), Tensor.from('features', DataType.FLOAT, [1, 3, 2], [1, 2, 3, 4, 5, 6]));
    expectUserError(cli('eval', model, '--data', path.dirname(wrongShape)), /has shape \[1,3,2\] but the model's input 'features' takes \[batch,6\]/);
  });

  it('a folder with no samples, a missing dataset, NaN in data, and no labels', () => {
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    expectUserError(cli('eval', model, '--data', empty), /dataset folder .*empty has no samples/);
    expectUserError(cli('eval', model, '--data', path.join(dir, 'missing')), /dataset .*missing does not exist/);
    const nan = path.join(dir, 'nan');
    const xs = x.slice(0, 3).map((r) => Float32Array.from(r));
    xs[1]![0] = NaN;
    writeTestData(nan, xs, [0, 1, 2]);
    expectUserError(cli('eval', model, '--data', nan), /test_data_set_1: tensor 'features' contains NaN/);
    const unlabelled = path.join(dir, 'unlabelled');
    writeTestData(unlabelled, x.slice(0, 2), undefined);
    expectUserError(cli('eval', model, '--data', unlabelled), /has no labels/);
  });

  it('usage errors (unknown metric, unknown option) also exit 2', () => {
    expectUserError(cli('eval', model, '--data', path.join(dir, 'eval'), '--metric', 'f1'), /unknown metric 'f1'/);
    expect(cli('eval', model, '--bogus').code).toBe(2);
  });
});
