import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeModel, gateAnalysis } from '../../src/analyze/index.js';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { ROOT } from '../helpers/fixtures.js';
import { injectOutliers } from './outlier-model.js';
import { spearman } from './rank.js';

const fixture = (name: string): string => path.join(ROOT, 'fixtures', `${name}.onnx`);
const calib = (name: string): string => path.join(ROOT, 'calibration', name, 'calib');

interface Expected {
  samples: number;
  layers: Record<string, { infNorm: number; maxAbs: number; kurtosis: number; min: number; max: number; rms: number; channelMaxima: number[] }>;
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

describe('analyze: metrics', () => {
  it('equal the independent torch/numpy computation on vit_mnist within 1e-4 relative', async () => {
    const expected = JSON.parse(fs.readFileSync(path.join(ROOT, 'fixtures', 'expected_outlier_metrics.json'), 'utf8')) as Expected;
    const r = await analyzeModel(loadModel(fixture('vit_mnist')), openDataset(calib('vit_mnist')), { batchSize: 16 });
    expect(r.samples).toBe(expected.samples);
    const byLayer = new Map(r.layers.map((l) => [l.layer, l]));
    // a block's output is the next block's attention-norm input: one tensor, named once
    const alias = (name: string): string => name.replace(/^blocks\.(\d+)\.attention_norm\.input$/, (_m, i) => (Number(i) > 0 ? `blocks.${Number(i) - 1}.output` : name));
    let compared = 0;
    for (const [name, e] of Object.entries(expected.layers)) {
      const got = byLayer.get(alias(name));
      expect(got, name).toBeDefined();
      for (const k of ['infNorm', 'maxAbs', 'kurtosis', 'min', 'max', 'rms'] as const) {
        expect(rel(got![k], e[k]), `${name} ${k}: ${got![k]} vs ${e[k]}`).toBeLessThan(1e-4);
      }
      expect(got!.channelMaxima.length).toBe(e.channelMaxima.length);
      got!.channelMaxima.forEach((v, c) => expect(rel(v, e.channelMaxima[c]!), `${name} channel ${c}`).toBeLessThan(1e-4));
      compared++;
    }
    expect(compared).toBe(Object.keys(expected.layers).length);
    // the documented tensors, per block
    const kinds = new Set(r.layers.flatMap((l) => l.kinds));
    expect([...kinds].sort()).toEqual(['attention-output', 'block-output', 'mlp-output', 'norm-input', 'norm-output']);
  });

  it('batch size does not change the results (streaming)', async () => {
    const model = loadModel(fixture('bert_spam'));
    const data = openDataset(calib('bert_spam'));
    const a = await analyzeModel(model, data, { batchSize: 1, samples: 24 });
    const b = await analyzeModel(model, data, { batchSize: 7, samples: 24 });
    expect(a.samples).toBe(24);
    a.layers.forEach((l, i) => {
      expect(rel(b.layers[i]!.kurtosis, l.kurtosis)).toBeLessThan(1e-5);
      expect(rel(b.layers[i]!.infNorm, l.infNorm)).toBeLessThan(1e-6);
    });
    expect(a.attention).toHaveLength(2);
    for (const att of a.attention) {
      expect(att.heads).toHaveLength(4);
      for (const h of att.heads) {
        expect(h.entropy).toBeGreaterThan(0);
        expect(h.entropy).toBeLessThanOrEqual(h.maxEntropy + 1e-6);
        expect(h.firstTokenShare).toBeGreaterThanOrEqual(0);
        expect(h.sinkShare).toBeLessThanOrEqual(1 + 1e-6);
        expect(h.updateNorm).toBeGreaterThan(0);
      }
    }
  });
});

describe('analyze: outlier model', () => {
  const channels = [5, 17, 40];
  const model = loadModel(fixture('vit_mnist'));
  injectOutliers(model, 1, channels, 50);
  const data = openDataset(calib('vit_mnist'));

  it('names the injected channels, the layer they break, and ranks layers like the measured w8a8 SQNR', async () => {
    const r = await analyzeModel(model, data, { samples: 64, batchSize: 16 });
    const norm = r.layers.find((l) => l.layer === 'blocks.1.mlp_norm')!;
    expect([...norm.outlierChannels].sort((a, b) => a - b)).toEqual(channels);
    // nowhere else
    expect(r.layers.filter((l) => l.outlierChannels.length > 0).map((l) => l.layer)).toEqual(['blocks.1.mlp_norm']);
    const fc1 = r.predictions.find((p) => p.layer === 'blocks.1.mlp.fc1')!;
    expect(fc1.breaks).toBe(true);
    expect(fc1.recommendation).toBe('repquant');
    expect(r.summary.breaking).toEqual(['blocks.1.mlp.fc1']);
    expect(r.summary.exclude).toEqual(['blocks.1.mlp.fc1']);

    // per-tensor round to nearest, named: with no method the outliers would make the pass choose repquant
    const { report } = await pipeline([quantize({ scheme: 'w8a8', method: 'rtn', cacheDir: false, verifySamples: 64 })]).apply(model.clone(), { calibration: data });
    const measured = (report.passes[0]!.summary as unknown as QuantizeSummary).layers;
    const pairs = r.predictions.map((p) => [p.predictedSqnr, measured.find((m) => m.name === p.layer)!.sqnr!] as const);
    const rho = spearman(pairs.map((p) => p[0]), pairs.map((p) => p[1]));
    expect(rho).toBeGreaterThanOrEqual(0.8);
    // the first layer whose measured SQNR falls under 20 dB is the one predicted to break
    expect(measured.find((m) => m.sqnr! < 20)!.name).toBe('blocks.1.mlp.fc1');
    // and the cumulative prediction is close for it
    expect(Math.abs(fc1.predictedSqnr - measured.find((m) => m.name === 'blocks.1.mlp.fc1')!.sqnr!)).toBeLessThan(3);
  });

  it('the gates trip on the outlier model and pass on the original', async () => {
    const bad = await analyzeModel(model, data, { samples: 16 });
    const good = await analyzeModel(loadModel(fixture('vit_mnist')), data, { samples: 16 });
    expect(bad.summary.maxInfNorm).toBeGreaterThan(50);
    expect(gateAnalysis(bad, { maxInfNorm: 20 }).passed).toBe(false);
    expect(gateAnalysis(good, { maxInfNorm: 20, maxKurtosis: 50 }).passed).toBe(true);
    expect(gateAnalysis(good, { maxKurtosis: 1 }).failures[0]).toMatch(/exceeds --max-kurtosis 1/);
  });
});
