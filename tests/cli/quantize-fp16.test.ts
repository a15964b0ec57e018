import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { loadModel } from '../../src/onnx/index.js';
import { cli } from '../helpers/cli.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const model = path.join(ROOT, 'fixtures', 'bert_spam.onnx');
const calib = path.join(ROOT, 'calibration', 'bert_spam', 'calib');

describe('quantize --scheme fp16 from the CLI', () => {
  it('writes a float16 model with float32 inputs/outputs and says what it kept in float32', () => {
    const out = path.join(dir, 'bert.fp16.onnx');
    const r = cli('quantize', model, '-o', out, '--calib', calib, '--scheme', 'fp16', '--no-cache');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/float16 {5}\d+ constant tensors .* node\(s\) kept in float32 \(.*Pow.*\), \d+ Casts; inputs\/outputs float32/);
    expect(r.stdout).toMatch(/output {6}'logits' SQNR (\d+)\.\d dB vs float/);
    expect(Number(/'logits' SQNR ([\d.]+) dB/.exec(r.stdout)![1])).toBeGreaterThanOrEqual(40);
    const written = loadModel(out);
    expect(written.graph.outputs[0]!.dtype).toBe(DataType.FLOAT);
    expect(fs.statSync(out).size).toBeLessThan(0.6 * fs.statSync(model).size);
  });

  it('the float16 options with another scheme: one sentence, exit 2, nothing written', () => {
    const out = path.join(dir, 'bad.onnx');
    for (const args of [['--scheme', 'w8', '--no-keep-io-types'], ['--scheme', 'w4', '--keep-float32', 'Softmax']]) {
      const r = cli('quantize', model, '-o', out, '--calib', calib, '--no-cache', ...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/goes with --scheme fp16 or q4f16, not w[84]/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(fs.existsSync(out)).toBe(false);
    }
  });
});
