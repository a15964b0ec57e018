import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { calibrationBatch, firstSample, measureFlops, tokensPerSample, unitCosts } from '../../src/prune/cost.js';
import { magnitudeScores, MaskRunner, onesMask } from '../../src/prune/importance.js';
import { maskLayout } from '../../src/prune/mask.js';
import { selectFlops, selectMlpRatio } from '../../src/prune/select.js';
import { fixtures } from '../helpers/fixtures.js';

const vit = fixtures().find((f) => f.name === 'vit_mnist')!;

describe('masked scoring', () => {
  it('gives the same results whether variants run one or many per onnxruntime call', async () => {
    const model = loadModel(vit.model);
    const { feeds, count } = calibrationBatch(openDataset(vit.calibration), model, 4);
    const one = await MaskRunner.create(model, feeds, count, { variantsPerRun: 2 });
    const many = await MaskRunner.create(model, feeds, count, { variantsPerRun: 8 });
    try {
      const n = one.layout.units.length;
      const masks = [0, 5, 17, 200, n - 1].map((i) => {
        const m = onesMask(1, n);
        m[i] = 0;
        return m;
      });
      const a = await one.evaluate(masks);
      const b = await many.evaluate(masks);
      expect(a).toHaveLength(5);
      for (let i = 0; i < 5; i++) {
        expect(b[i]!.kl).toBeCloseTo(a[i]!.kl, 5);
        expect(b[i]!.entropy).toBeCloseTo(a[i]!.entropy, 5);
        for (const [k, v] of a[i]!.distortion) expect(b[i]!.distortion.get(k)!).toBeCloseTo(v, 3);
      }
      // masking a unit of block 3 leaves the features of blocks 0..2 untouched
      const last = masks[4]!;
      const [r] = await one.evaluate([last]);
      expect(r!.distortion.get(0)).toBeLessThan(1e-6);
      expect(r!.distortion.get(3)).toBeGreaterThan(0);
      // the unmasked variant has no KL to itself
      const [z] = await one.evaluate([onesMask(1, n)]);
      expect(Math.abs(z!.kl)).toBeLessThan(1e-6);
    } finally {
      await one.release();
      await many.release();
    }
  });

  it('measured FLOPs agree with the per-unit cost model, and selection meets budgets', async () => {
    const model = loadModel(vit.model);
    const s = discoverStructure(model);
    const { feeds } = calibrationBatch(openDataset(vit.calibration), model, 1);
    const flops = await measureFlops(model, firstSample(feeds));
    const tokens = await tokensPerSample(model, s, firstSample(feeds));
    expect(tokens).toBe(17); // 16 patches + CLS
    const costs = unitCosts(s, tokens);
    // MLP FLOPs by the cost model = neurons * per-neuron cost
    const mlp = s.mlps.reduce((a, m, i) => a + m.width * costs.neuron.get(s.blocks[i]!.index)!, 0);
    expect(mlp).toBeLessThan(flops);
    const layout = maskLayout(s);
    const scores = magnitudeScores(s, layout);
    const mask = selectFlops(layout, scores, costs, flops, 0.7 * flops);
    let removed = 0;
    layout.units.forEach((u, i) => {
      if (mask[i] === 0) removed += (u.kind === 'head' ? costs.head : costs.neuron).get(u.block)!;
    });
    expect(removed).toBeGreaterThanOrEqual(0.3 * flops);
    const ratio = selectMlpRatio(layout, scores, 0.25, 'global');
    const kept = layout.units.filter((u, i) => u.kind === 'neuron' && ratio[i] === 1).length;
    expect(kept).toBe(4 * 128 - 128);
  });
});
