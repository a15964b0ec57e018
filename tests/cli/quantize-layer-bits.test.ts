import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/index.js';
import { builtFixture } from '../quantize/built-fixture.js';
import { cli } from '../helpers/cli.js';

const { dir, modelFile: model, calibDir: calib } = builtFixture({ blocks: 1, hidden: 64, heads: 4, mlpWidth: 128, seq: 8, opset: 17, mask: 'additive-input', seed: 11 }, 8);

describe('quantize --layer-bits from the CLI', () => {
  it('writes each matched layer at its own bits (MatMulNBits) and keeps float layers as MatMul', () => {
    const out = path.join(dir, 'mixed.onnx');
    const r = cli('quantize', model, '-o', out, '--calib', calib, '--no-cache', '--scheme', 'w4', '--layer-bits', '*.mlp.*=8', '--layer-bits', '*.attn.out=float', '--json');
    expect(r.code, r.stderr).toBe(0);
    const layers = JSON.parse(r.stdout).layers as { name: string; bits: number }[];
    const bitsOf = new Map(layers.map((l) => [l.name, l.bits]));
    expect([...bitsOf.keys()].sort()).toEqual(['blocks.0.attn.key', 'blocks.0.attn.query', 'blocks.0.attn.value', 'blocks.0.mlp.fc1', 'blocks.0.mlp.fc2']);
    for (const [name, bits] of bitsOf) expect(bits, name).toBe(name.includes('.mlp.') ? 8 : 4);
    const g = loadModel(out).graph;
    const nbits = g.nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => Number((n.attributes.get('bits') as { value: number }).value));
    expect(nbits.sort()).toEqual([4, 4, 4, 8, 8]);
    // the output projection stays a float MatMul on its original weight
    expect(g.nodes.filter((n) => n.opType === 'MatMul' && n.name.includes('attn/out'))).toHaveLength(1);
  });

  it('a malformed pair or a pattern matching no layer: one sentence naming it, exit 2, nothing written', () => {
    const out = path.join(dir, 'bad-bits.onnx');
    const cases: [string, RegExp][] = [
      ['*.mlp.*=9', /--layer-bits '\*\.mlp\.\*=9' must be PATTERN=BITS/],
      ['=8', /--layer-bits '=8' must be PATTERN=BITS/],
      ['no.such.layer=8', /no\.such\.layer/],
    ];
    for (const [pair, message] of cases) {
      const r = cli('quantize', model, '-o', out, '--calib', calib, '--no-cache', '--scheme', 'w4', '--layer-bits', pair);
      expect(r.code, pair).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(fs.existsSync(out)).toBe(false);
    }
  });
});
