import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { datasetView } from '../../src/data/split.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel } from '../../src/onnx/load.js';
import { modelToBytes } from '../../src/onnx/save.js';
import { fromRecipe } from '../../src/pipeline/recipe.js';
import { autoCompress, trialRecipe } from '../../src/search/auto.js';
import type { Scheme } from '../../src/quantize/scheme.js';
import { evaluate } from '../../src/validate/evaluate.js';

const model = loadModel('fixtures/bert_spam.onnx');
const calibration = openDataset('calibration/bert_spam/calib');
const data = openDataset('calibration/bert_spam/eval');
const limit = { kind: 'max-drop', value: 0.005, relative: false } as const;

type Format = 'float' | 'w4' | 'dynamic' | 'w8a8';
/** The format of a model, read from its operators (not from the trial that made it). */
function format(m: Model): Format {
  const ops = new Set(m.graph.nodes.map((n) => n.opType));
  if (ops.has('MatMulNBits')) return 'w4';
  if (ops.has('DynamicQuantizeLinear')) return 'dynamic';
  if (ops.has('QuantizeLinear')) return 'w8a8';
  return 'float';
}

/** Injected timings per format (no clock): the search must choose by them. */
function timer(ms: Record<Format, number>, seen: Model[][]) {
  return async (models: Model[]): Promise<number[]> => {
    seen.push(models);
    return models.map((m) => ms[format(m)]);
  };
}

describe('auto mode objectives', () => {
  it('latency: INT8 candidates (with pruning) are timed with float, and the fastest format wins, the smallest among ties', async () => {
    const seen: Model[][] = [];
    // shaped like this machine's medians on bert_spam (docs/compress.md): dynamic fastest, 4-bit weights slower than float
    const r = await autoCompress(model, { calibration, data, limit, objective: 'latency', latencyRuns: 0, timeModels: timer({ float: 0.5, w8a8: 0.44, dynamic: 0.37, w4: 0.6 }, seen) });
    const trials = r.report.trials;
    expect(new Set(trials.map((t) => t.scheme))).toEqual(new Set(['w8a8', 'dynamic', 'w4']));
    expect(trials.some((t) => t.prune !== null && t.scheme !== 'w4')).toBe(true);
    // one timing call: the float model first, then every passing trial's model
    expect(seen).toHaveLength(1);
    expect(seen[0]![0]).toBe(model);
    expect(seen[0]!.length).toBe(1 + trials.filter((t) => t.pass).length);
    for (const t of trials) expect(t.latencyMs ?? null).toBe(t.pass ? { w8a8: 0.44, dynamic: 0.37, w4: 0.6 }[t.scheme] : null);
    const chosen = trials.find((t) => t.index === r.report.chosen)!;
    expect(chosen.scheme).toBe('dynamic');
    expect(format(r.model)).toBe('dynamic');
    // the pruned and unpruned dynamic models tie; the smaller (pruned) one is kept
    const dynamics = trials.filter((t) => t.scheme === 'dynamic' && t.pass);
    expect(dynamics.length).toBeGreaterThan(1);
    expect(chosen.bytes).toBe(Math.min(...dynamics.map((t) => t.bytes)));
    expect(r.report.selection).toMatchObject({ objective: 'latency', floatMs: 0.5, margin: 0.05 });
    expect(r.report.selection!.reason).toContain('0.370 ms, float 0.500 ms');
    expect(r.report.entries.some((e) => /no passing model ran faster than float/.test(e.message))).toBe(false);
    // the kept model is the one its recipe builds
    expect(r.recipe).toEqual(trialRecipe({ scheme: chosen.scheme as Scheme, layerBits: chosen.layerBits, prune: chosen.prune }));
    const again = await fromRecipe(r.recipe).apply(model, { calibration });
    expect(Buffer.compare(Buffer.from(modelToBytes(again.model)), Buffer.from(modelToBytes(r.model)))).toBe(0);

    // the same search with 4-bit weights timed fastest keeps a 4-bit model, and warns when nothing beats float
    const slow = await autoCompress(model, { calibration, data, limit, objective: 'latency', latencyRuns: 0, timeModels: timer({ float: 0.3, w8a8: 0.44, dynamic: 0.37, w4: 0.31 }, []) });
    expect(format(slow.model)).toBe('w4');
    expect(slow.report.entries.some((e) => e.level === 'warning' && /no passing model ran faster than float by more than 5%/.test(e.message))).toBe(true);
  });

  it('size keeps the search as it was: pruned 4-bit first and kept, nothing timed, no INT8 trial', async () => {
    const seen: Model[][] = [];
    const r = await autoCompress(model, { calibration, data, limit, objective: 'size', latencyRuns: 0, timeModels: timer({ float: 1, w8a8: 1, dynamic: 1, w4: 1 }, seen) });
    expect(seen).toHaveLength(0);
    expect(r.report.trials.map((t) => t.label)).toEqual(['prune mlp 0.05 + w4']);
    expect(r.report.chosen).toBe(1);
    expect(r.report.trials[0]!.latencyMs).toBeUndefined();
    expect(r.report.selection).toMatchObject({ objective: 'size', floatMs: null, reason: 'the smallest passing model' });
  });

  it('the trials are judged on one half of --data and the reported accuracy comes from the other, disjoint half', async () => {
    const r = await autoCompress(model, { calibration, data, limit, latencyRuns: 0, prune: false, maxTrials: 1 });
    const s = r.report.selection!;
    expect(s.data).toBe(data.path);
    expect(s.holdout.data).toBe(data.path);
    expect(s.indices.filter((i) => s.holdout.indices.includes(i))).toEqual([]);
    expect(s.indices.length + s.holdout.indices.length).toBe(data.size);
    expect(s.accuracy!.samples).toBe(s.indices.length);
    expect(r.report.accuracy!.samples).toBe(s.holdout.indices.length);
    // independently: float and the kept model evaluated on each index list
    const top1 = async (m: Model, idx: number[]) => (await evaluate(m, datasetView(data, idx), { metrics: ['top1'] })).metrics.top1!;
    expect(s.accuracy!.before).toBe(await top1(model, s.indices));
    expect(s.accuracy!.after).toBe(await top1(r.model, s.indices));
    expect(s.accuracy!.after).toBe(r.report.trials[0]!.accuracy);
    expect(r.report.accuracy!.before).toBe(await top1(model, s.holdout.indices));
    expect(r.report.accuracy!.after).toBe(await top1(r.model, s.holdout.indices));
  });

  it('a separate selection set leaves all of --data for the reported accuracy; the same set twice is refused', async () => {
    const r = await autoCompress(model, { calibration, data, selection: calibration, limit, latencyRuns: 0, prune: false, maxTrials: 1 });
    expect(r.report.selection).toMatchObject({ data: calibration.path, holdout: { data: data.path } });
    expect(r.report.selection!.accuracy!.samples).toBe(calibration.size);
    expect(r.report.accuracy!.samples).toBe(data.size);
    await expect(autoCompress(model, { calibration, data, selection: openDataset(data.path), limit, latencyRuns: 0 })).rejects.toThrow(/the selection data and the evaluation data are the same \(calibration\/bert_spam\/eval\)/);
  });
});
