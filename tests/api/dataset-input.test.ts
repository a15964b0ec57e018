// Every data option of the API takes a Dataset or a dataset path, with the same result.
import { describe, expect, it } from 'vitest';
import { analyzeModel, evaluate, gate, loadModel, openDataset } from '../../src/index.js';
import { ROOT } from '../helpers/fixtures.js';
import * as path from 'node:path';

const model = path.join(ROOT, 'fixtures/vit_mnist.onnx');
const calib = path.join(ROOT, 'calibration/vit_mnist/calib');

describe('data options take a Dataset or a path', () => {
  it('evaluate, gate and analyzeModel give the same figures from a path as from openDataset', async () => {
    const m = loadModel(model);
    const fromPath = await evaluate(m, calib, { metrics: ['top1', 'nll'] });
    const fromDataset = await evaluate(m, openDataset(calib), { metrics: ['top1', 'nll'] });
    expect(fromPath.samples).toBe(128);
    expect(fromPath.metrics).toEqual(fromDataset.metrics);
    const g = await gate({ baseline: m, candidate: loadModel(model), dataset: calib, metrics: ['top1'], limits: { kind: 'max-drop', value: 0, relative: false } });
    expect(g.pass).toBe(true);
    expect(g.samples).toBe(128);
    const a = await analyzeModel(m, calib, { samples: 4 });
    const b = await analyzeModel(m, openDataset(calib), { samples: 4 });
    expect(a.samples).toBe(4);
    expect(a.summary).toEqual(b.summary);
  });
});
