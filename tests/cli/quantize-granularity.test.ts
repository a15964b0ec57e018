import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/index.js';
import { builtFixture } from '../quantize/built-fixture.js';
import { cli } from '../helpers/cli.js';

const { dir, modelFile: model, calibDir: calib } = builtFixture({ blocks: 1, hidden: 64, heads: 4, mlpWidth: 128, seq: 8, opset: 17, mask: 'additive-input', seed: 11 }, 8);

describe('quantize --granularity and --scheme w2 from the CLI', () => {
  it('bad granularities and w2 with a method that needs a static scheme: one sentence, exit 2, nothing written', () => {
    const out = path.join(dir, 'bad.onnx');
    const cases: [string[], RegExp][] = [
      [['--scheme', 'w4', '--granularity', 'block:7'], /granularity block:7 is not supported: N must be one of 16, 32, 64, 128/],
      [['--scheme', 'w4', '--granularity', 'rows'], /unknown granularity 'rows'/],
      [['--scheme', 'w4', '--a-bits', '8', '--granularity', 'block:32'], /block:32 needs a weight-only scheme/],
      [['--scheme', 'w2', '--method', 'repquant'], /--method repquant needs a static scheme/],
      [['--scheme', 'w2', '--a-bits', '4'], /--a-bits must be 8/],
      [['--scheme', 'w4', '--weight-grid', 'skewed'], /unknown --weight-grid 'skewed' \(choose from symmetric, asymmetric\)/],
      [['--scheme', 'w4', '--a-bits', '8', '--weight-grid', 'asymmetric'], /asymmetric weight grids need a weight-only scheme/],
    ];
    for (const [args, message] of cases) {
      const r = cli('quantize', model, '-o', out, '--calib', calib, '--no-cache', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  it('--scheme w2 --granularity channel writes 2-bit MatMulNBits with one block per output channel', () => {
    const out = path.join(dir, 'w2.onnx');
    const r = cli('quantize', model, '-o', out, '--calib', calib, '--no-cache', '--scheme', 'w2', '--granularity', 'channel', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).layers.every((l: { bits: number }) => l.bits === 2)).toBe(true);
    const nodes = loadModel(out).graph.nodes.filter((n) => n.opType === 'MatMulNBits');
    expect(nodes).toHaveLength(6);
    for (const n of nodes) {
      const a = (k: string): number => Number((n.attributes.get(k) as { value: number }).value);
      expect(a('bits')).toBe(2);
      expect(a('block_size')).toBeGreaterThanOrEqual(a('K'));
      expect(n.input(2)!.initializer!.dims.reduce((x, y) => x * y, 1)).toBe(a('N'));
    }
  });
});
