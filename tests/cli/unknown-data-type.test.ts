import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTensorFile } from '../../src/onnx/tensor-file.js';
import { cli } from '../helpers/cli.js';
import { expectOneSentence, listTree, sha256 } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('slimformer-dtype-');
const CALIB = path.join(ROOT, 'calibration/vit_mnist/calib');

/**
 * The reproduction: byte 1329 of vit_mnist.onnx is the data_type tag of the tensor of
 * Constant node '/Constant_6'; 0x0e in its place leaves that tensor with no data type.
 */
const corrupt = path.join(dir, 'x.onnx');
const bytes = fs.readFileSync(path.join(ROOT, 'fixtures/vit_mnist.onnx'));
if (bytes[1329] !== 0x10) throw new Error('fixtures/vit_mnist.onnx changed: byte 1329 is no longer the data_type tag');
bytes[1329] = 0x0e;
fs.writeFileSync(corrupt, bytes);

describe('a tensor with data type 0 or an unknown one: exit 2 naming the tensor and the file, for every command', () => {
  const message = /the tensor of attribute 'value' of node '\/Constant_6' \(Constant\) in .*x\.onnx has no data type \(data_type 0, UNDEFINED\)/;
  const commands: [string, string[]][] = [
    ['inspect', ['inspect', corrupt]],
    ['eval', ['eval', corrupt, '--data', CALIB]],
    ['quantize', ['quantize', corrupt, '-o', path.join(dir, 'q.onnx'), '--calib', CALIB, '--no-cache']],
    ['prune', ['prune', corrupt, '-o', path.join(dir, 'p.onnx'), '--method', 'magnitude', '--ratio', '0.2']],
    ['compress', ['compress', corrupt, '-o', path.join(dir, 'c.onnx'), '--calib', CALIB, '-q']],
    ['analyze', ['analyze', corrupt, '--calib', CALIB]],
    ['gate', ['gate', '--baseline', corrupt, '--candidate', corrupt, '--data', CALIB, '--max-drop', '0.01']],
  ];
  for (const [name, args] of commands) {
    it(name, () => {
      const hash = sha256(corrupt);
      const before = listTree(dir);
      expectOneSentence(cli(...args), message);
      expect(sha256(corrupt)).toBe(hash);
      expect(listTree(dir)).toEqual(before);
    });
  }

  it('a data .pb whose tensor has data type 99', () => {
    const data = path.join(dir, 'data99');
    for (const i of [0, 1]) fs.cpSync(path.join(CALIB, `test_data_set_${i}`), path.join(data, `test_data_set_${i}`), { recursive: true });
    const file = path.join(data, 'test_data_set_1', 'input_0.pb');
    const pb = fs.readFileSync(file);
    // data_type is field 2 (tag 0x10) holding 1 (float32) in this file
    const at = pb.indexOf(Buffer.from([0x10, 0x01]));
    expect(readTensorFile(file).dtype).toBe(1);
    pb[at + 1] = 99;
    fs.writeFileSync(file, pb);
    const hash = sha256(file);
    const before = listTree(dir);
    const pattern = /tensor 'pixel_values' in .*test_data_set_1\/input_0\.pb has data type 99, which is not an ONNX data type/;
    expectOneSentence(cli('eval', path.join(ROOT, 'fixtures/vit_mnist.onnx'), '--data', data), pattern);
    expectOneSentence(cli('quantize', path.join(ROOT, 'fixtures/vit_mnist.onnx'), '-o', path.join(dir, 'q99.onnx'), '--calib', data, '--no-cache'), pattern);
    expect(sha256(file)).toBe(hash);
    expect(listTree(dir)).toEqual(before);
  });
});
