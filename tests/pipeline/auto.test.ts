import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { modelToBytes } from '../../src/onnx/save.js';
import { fromRecipe } from '../../src/pipeline/recipe.js';
import { autoCompress, trialRecipe } from '../../src/search/auto.js';
import type { Trial } from '../../src/report/compress-report.js';

describe('auto mode', () => {
  const model = loadModel('fixtures/vit_mnist.onnx');
  const calibration = openDataset('calibration/vit_mnist/calib');
  const data = openDataset('calibration/vit_mnist/eval');

  it('when no trial passes, relaxes the most sensitive layers first, says so and keeps the closest', async () => {
    const seen: Trial[] = [];
    // top1 of at least 99.9%: the float model itself scores 97.4%, so nothing can pass
    const r = await autoCompress(model, { calibration, data, limit: { kind: 'min', value: 0.999 }, schemes: ['w4'], maxTrials: 3, prune: false, latencyRuns: 0, onTrial: (t) => seen.push(t) });
    expect(r.report.chosen).toBeNull();
    expect(r.report.trials).toEqual(seen);
    expect(seen.map((t) => t.exclude.length)).toEqual([0, 1, 2]);
    expect(seen.every((t) => !t.pass)).toBe(true);
    // the float layers are the ones with the lowest SQNR in the first trial
    expect(seen[1]!.bytes).toBeGreaterThan(seen[0]!.bytes);
    const best = Math.max(...seen.map((t) => t.accuracy!));
    expect(r.report.accuracy!.after).toBeCloseTo(best, 10);
    expect(r.report.accuracy!.pass).toBe(false);
    // the kept model is the one the trial's recipe builds
    const kept = seen.find((t) => t.accuracy === best)!;
    const again = await fromRecipe(trialRecipe('w4', kept.exclude, kept.embeddings)).apply(model, { calibration });
    expect(Buffer.compare(Buffer.from(modelToBytes(again.model)), Buffer.from(modelToBytes(r.model)))).toBe(0);
  });
});
