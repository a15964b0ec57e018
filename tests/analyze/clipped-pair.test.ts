import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeModel, attentionForms } from '../../src/analyze/index.js';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/index.js';
import { quantize } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { ROOT } from '../helpers/fixtures.js';

const file = (name: string): string => path.join(ROOT, 'fixtures', `${name}.onnx`);
const data = (name: string, split: string) => openDataset(path.join(ROOT, 'calibration', name, split));
const opCounts = (names: string[]): Record<string, number> => Object.fromEntries(['Softmax', 'Clip'].map((op) => [op, names.filter((n) => n === op).length]));

describe('clipped-softmax fixture pair', () => {
  it('the clipped twin is recognised with its gamma and zeta, the plain one is not', () => {
    const meta = JSON.parse(fs.readFileSync(path.join(ROOT, 'fixtures', 'vit_pair_clipped.metrics.json'), 'utf8'));
    expect(attentionForms(loadModel(file('vit_pair_plain'))).map((f) => f.kind)).toEqual(Array(4).fill('softmax'));
    const forms = attentionForms(loadModel(file('vit_pair_clipped')));
    expect(forms.map((f) => [f.kind, f.gamma, f.zeta])).toEqual(Array(4).fill(['clipped-softmax', meta.attention.gamma, meta.attention.zeta]));
  });

  it('the clipped twin has lower kurtosis than its plain twin', async () => {
    const plain = await analyzeModel(loadModel(file('vit_pair_plain')), data('vit_pair_plain', 'calib'), { batchSize: 16 });
    const clipped = await analyzeModel(loadModel(file('vit_pair_clipped')), data('vit_pair_clipped', 'calib'), { batchSize: 16 });
    expect(clipped.attention.every((a) => a.form === 'clipped-softmax' && a.heads.length === 4)).toBe(true);
    expect(clipped.summary.avgKurtosis).toBeLessThan(plain.summary.avgKurtosis);
    expect(clipped.summary.maxKurtosis).toBeLessThan(plain.summary.maxKurtosis);
  });

  it('w8a8 quantization keeps the clipped softmax intact and the accuracy close', async () => {
    const model = loadModel(file('vit_pair_clipped'));
    const before = opCounts(model.graph.nodes.map((n) => n.opType));
    const { model: q } = await pipeline([quantize({ scheme: 'w8a8', cacheDir: false, verifySamples: 8 })]).apply(model, { calibration: data('vit_pair_clipped', 'calib') });
    expect(opCounts(q.graph.nodes.map((n) => n.opType))).toEqual(before);
    const forms = attentionForms(q);
    expect(forms.map((f) => f.kind)).toEqual(Array(4).fill('clipped-softmax'));
    const meta = JSON.parse(fs.readFileSync(path.join(ROOT, 'fixtures', 'vit_pair_clipped.metrics.json'), 'utf8'));
    const r = await evaluate(q, data('vit_pair_clipped', 'eval'), { metrics: ['top1'] });
    expect(r.metrics.top1!).toBeGreaterThan(meta.metrics.top1 - 0.02);
  });
});
