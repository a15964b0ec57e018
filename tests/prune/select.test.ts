import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { calibrationBatch, firstSample, measureFlops, tokensPerSample, unitCosts, type UnitCosts } from '../../src/prune/cost.js';
import { magnitudeScores, MaskRunner } from '../../src/prune/importance.js';
import type { MaskLayout } from '../../src/prune/mask.js';
import { flopCandidates, refineWidths, selectFlopsVerified } from '../../src/prune/select.js';
import { fixtures } from '../helpers/fixtures.js';

const vit = fixtures().find((f) => f.name === 'vit_mnist')!;

function removedFlops(layout: MaskLayout, costs: UnitCosts, mask: Float32Array): number {
  let removed = 0;
  layout.units.forEach((u, i) => {
    if (mask[i] === 0) removed += (u.kind === 'head' ? costs.head : costs.neuron).get(u.block)!;
  });
  return removed;
}

describe('FLOP-budget selection refined on the calibration KL', () => {
  it('moves neurons between MLPs while the KL falls, keeping the budget, the heads and the order within each MLP', { timeout: 120_000 }, async () => {
    const model = loadModel(vit.model);
    const structure = discoverStructure(model);
    const { feeds, count } = calibrationBatch(openDataset(vit.calibration), model, 16);
    const runner = await MaskRunner.create(model, feeds, count, { threads: 2, variantsPerRun: 16 });
    try {
      const layout = runner.layout;
      const flops = await measureFlops(model, firstSample(feeds), 2);
      const costs = unitCosts(structure, await tokensPerSample(model, structure, firstSample(feeds), 2));
      const scores = magnitudeScores(structure, layout);
      const target = 0.8 * flops;
      const candidates = flopCandidates(layout, scores, costs, flops, target).filter((c) => c.feasible);
      const start = candidates.sort((a, b) => a.lost - b.lost)[0]!.mask;
      const [before] = await runner.evaluate([start]);
      const r = await refineWidths(runner, scores, costs, start, before!.kl);
      // the global order's split of the neurons is not the KL's best one: at least one move is taken
      expect(r.rounds).toBeGreaterThan(0);
      expect(r.kl).toBeLessThan(before!.kl);
      const [after] = await runner.evaluate([r.mask]);
      expect(after!.kl).toBeCloseTo(r.kl, 8);
      expect(removedFlops(layout, costs, r.mask)).toBeGreaterThanOrEqual(flops - target);
      const widths = (m: Float32Array) => [...layout.neurons.keys()].map((b) => layout.units.filter((u, i) => u.block === b && u.kind === 'neuron' && m[i] === 1).length);
      expect(widths(r.mask)).not.toEqual(widths(start));
      layout.units.forEach((u, i) => {
        if (u.kind === 'head') expect(r.mask[i]).toBe(start[i]);
      });
      // within each MLP the kept neurons are its highest-scored ones
      for (const block of layout.neurons.keys()) {
        const idx = layout.units.map((u, i) => ({ u, i })).filter((x) => x.u.block === block && x.u.kind === 'neuron');
        const lowestKept = Math.min(...idx.filter((x) => r.mask[x.i] === 1).map((x) => scores[x.i]!));
        const highestRemoved = Math.max(-Infinity, ...idx.filter((x) => r.mask[x.i] === 0).map((x) => scores[x.i]!));
        expect(lowestKept).toBeGreaterThanOrEqual(highestRemoved);
      }
      // refined selection: closer than every unrefined candidate, and still within the budget
      const refined = await selectFlopsVerified(runner, scores, costs, flops, target, { refine: true });
      const plain = await selectFlopsVerified(runner, scores, costs, flops, target);
      const [rk, pk] = await runner.evaluate([refined, plain]);
      const all = await runner.evaluate(candidates.map((c) => c.mask));
      expect(rk!.kl).toBeLessThan(pk!.kl);
      expect(pk!.kl).toBeCloseTo(Math.min(...all.map((x) => x.kl)), 8);
      expect(removedFlops(layout, costs, refined)).toBeGreaterThanOrEqual(flops - target);
    } finally {
      await runner.release();
    }
  });
});
