import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { modelToBytes } from '../../src/onnx/save.js';
import { fromRecipe } from '../../src/pipeline/recipe.js';
import { autoCompress, trialRecipe } from '../../src/search/auto.js';
import type { Scheme } from '../../src/quantize/scheme.js';
import type { Trial } from '../../src/report/compress-report.js';
import { evaluate } from '../../src/validate/evaluate.js';

const promoted = (t: Trial): string[] => Object.keys(t.layerBits);

describe('auto mode', () => {
  it('calibration data that does not fit the model is reported before any trial, naming the sample and tensor', async () => {
    const seen: Trial[] = [];
    const run = autoCompress(loadModel('fixtures/gpt_moby.onnx'), { calibration: openDataset('calibration/vit_mnist/calib'), data: openDataset('calibration/gpt_moby/eval'), limit: { kind: 'max-drop', value: 0.01, relative: false }, latencyRuns: 0, onTrial: (t) => seen.push(t) });
    await expect(run).rejects.toThrow(/^calibration\/vit_mnist\/calib\/test_data_set_0: tensor 'pixel_values' is not an input of the model \(its inputs are 'input_ids'\)/);
    expect(seen).toHaveLength(0);
  });

  it('when no trial passes, moves the most sensitive layers to float first, says so and keeps the closest', async () => {
    const model = loadModel('fixtures/vit_mnist.onnx');
    const calibration = openDataset('calibration/vit_mnist/calib');
    const data = openDataset('calibration/vit_mnist/eval');
    const seen: Trial[] = [];
    // top1 of at least 99.9%: the float model itself scores 97.4%, so nothing can pass
    const r = await autoCompress(model, { calibration, data, limit: { kind: 'min', value: 0.999 }, schemes: ['w4'], maxTrials: 4, prune: false, latencyRuns: 0, onTrial: (t) => seen.push(t) });
    expect(r.report.chosen).toBeNull();
    expect(r.report.trials).toEqual(seen);
    expect(seen.map((t) => promoted(t).length)).toEqual([0, 1, 2, 4]);
    expect(seen.every((t) => !t.pass && Object.values(t.layerBits).every((b) => b === 'float'))).toBe(true);
    // the ranking is by output SQNR with one layer alone quantized, lowest first, and the
    // float layers are its head
    const sqnr = r.ranking.map((x) => x.outputSqnr);
    expect(sqnr).toEqual([...sqnr].sort((a, b) => a - b));
    expect(promoted(seen[3]!)).toEqual(r.ranking.slice(0, 4).map((x) => x.name));
    expect(r.report.sensitivity).toEqual(r.ranking);
    expect(seen[1]!.bytes).toBeGreaterThan(seen[0]!.bytes);
    const best = Math.max(...seen.map((t) => t.accuracy!));
    // trial accuracies are on the selection half; the report's accuracy on the held-out half
    expect(r.report.selection!.accuracy!.after).toBeCloseTo(best, 10);
    expect(r.report.selection!.accuracy!.pass).toBe(false);
    expect(r.report.accuracy!.pass).toBe(false);
    // the kept model is the one the trial's recipe builds
    const kept = seen.find((t) => t.accuracy === best)!;
    expect(r.recipe).toEqual(trialRecipe({ scheme: kept.scheme as Scheme, layerBits: kept.layerBits, prune: kept.prune }));
    const again = await fromRecipe(r.recipe).apply(model, { calibration });
    expect(Buffer.compare(Buffer.from(modelToBytes(again.model)), Buffer.from(modelToBytes(r.model)))).toBe(0);
  });

  it('finds the fewest 8-bit layers on top of 4-bit that pass, smaller than 8-bit everywhere', async () => {
    const model = loadModel('fixtures/gpt_moby.onnx');
    const calibration = openDataset('calibration/gpt_moby/calib');
    // the search chooses on the (labelled) calibration samples, a small set that keeps the test
    // quick; the reported accuracy comes from the eval set
    const selection = calibration;
    const data = openDataset('calibration/gpt_moby/eval');
    const score = async (scheme: 'w4' | 'w8') => {
      const m = (await fromRecipe(trialRecipe({ scheme })).apply(model, { calibration })).model;
      return { top1: (await evaluate(m, selection, { metrics: ['top1'] })).metrics.top1!, bytes: modelToBytes(m).byteLength };
    };
    const [w4, w8] = [await score('w4'), await score('w8')];
    expect(w8.top1).toBeGreaterThan(w4.top1);
    // a floor between what 4-bit and 8-bit weights give: w4 fails, w8 passes
    const floor = w4.top1 + 0.6 * (w8.top1 - w4.top1);
    const r = await autoCompress(model, { calibration, data, limit: { kind: 'min', value: floor }, prune: false, latencyRuns: 0, maxTrials: 12, selection });
    const trials = r.report.trials;
    expect(trials[0]!.pass).toBe(false);
    const chosen = trials.find((t) => t.index === r.report.chosen)!;
    expect(chosen.pass).toBe(true);
    expect(chosen.accuracy!).toBeGreaterThanOrEqual(floor);
    expect(chosen.scheme).toBe('w4');
    const k = promoted(chosen).length;
    expect(k).toBeGreaterThan(0);
    expect(Object.values(chosen.layerBits).every((b) => b === 8)).toBe(true);
    expect(promoted(chosen)).toEqual(r.ranking.slice(0, k).map((x) => x.name));
    expect(chosen.bytes).toBeLessThan(w8.bytes);
    // bisection: one layer fewer was tried and failed
    expect(trials.some((t) => t.scheme === 'w4' && promoted(t).length === k - 1 && !t.pass)).toBe(true);
    // the saved model holds MatMulNBits of both widths
    const bits = new Set(r.model.graph.nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => n.intAttr('bits', 0)));
    expect([...bits].sort()).toEqual([4, 8]);
    expect(r.report.layers.filter((l) => l.bits === 8).length).toBe(promoted(chosen).filter((n) => r.report.layers.some((l) => l.name === n)).length);
  });
});
