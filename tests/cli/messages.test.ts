// Messages of issue 15, item 8: prune on a quantized model, inspect of a model with an op
// discovery does not know.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import { saveModel } from '../../src/onnx/index.js';
import { cli } from '../helpers/cli.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTransformer } from '../helpers/transformer-builder.js';

describe('item 8 messages', () => {
  const dir = tempDir();

  it('prune on a quantized model says it is already quantized, naming the node (exit 2, nothing written)', () => {
    const q = path.join(dir, 'q.onnx');
    expect(cli('quantize', path.join(ROOT, 'fixtures/vit_mnist.onnx'), '-o', q, '--scheme', 'dynamic').code).toBe(0);
    const out = path.join(dir, 'pruned.onnx');
    const r = cli('prune', q, '-o', out, '--method', 'magnitude', '--ratio', '0.3');
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^slimformer: pass 'prune': .*q\.onnx is already quantized \(it has a \w+ node '[^']+'\); prune the float model instead$/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('inspect lists an MLP whose activation is an unknown op: the node and the reason', () => {
    const { model } = buildTransformer({ blocks: 2, activation: 'relu' });
    // a custom activation op in place of Relu in block 0 (onnxruntime could not run it; inspect only reads the graph)
    const relu = discoverStructure(model).blocks[0]!.mlp!.activationNodes[0]!;
    relu.opType = 'MyAct';
    relu.domain = 'com.example';
    const file = path.join(dir, 'custom-op.onnx');
    saveModel(model, file);
    const r = cli('inspect', file, '--json');
    expect(r.code).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.blocks[0].mlpWidth).toBeNull();
    expect(json.unmatched).toContainEqual({
      node: expect.stringContaining('fc1'),
      opType: expect.any(String),
      reason: expect.stringMatching(/^the activation between '[^']*fc1[^']*' and '[^']*fc2[^']*' is not recognised \(op com\.example\.MyAct '[^']+' is not an elementwise op slimformer knows\)$/),
    });
    const text = cli('inspect', file);
    expect(text.stdout).toMatch(/not recognised \(1\):\n {2}\w+ '[^']*fc1[^']*': the activation between .* \(op com\.example\.MyAct/);
  });
});
