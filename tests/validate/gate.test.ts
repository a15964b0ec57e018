import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { gate, type GateResult } from '../../src/validate/gate.js';
import { gateJson, gateTable } from '../../src/validate/gate-report.js';
import { CLASSES, FEATURES, tinyClassifier, tinySamples, writeTestData } from '../helpers/tiny-classifier.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const { x } = tinySamples(60);
// labels are the baseline's own predictions: its top1 is 1, and any moved argmax costs the candidate
const labels = logits(tinyClassifier()).map((z) => z.indexOf(Math.max(...z)));
writeTestData(path.join(dir, 'eval'), x, labels);
writeTestData(path.join(dir, 'unlabelled'), x.slice(0, 10), undefined);
const dataset = openDataset(path.join(dir, 'eval'));

/** The tiny classifier with deterministic noise of amplitude `eps` added to W. */
function perturbed(eps: number, at: (i: number) => number = (i) => Math.cos(i * 7.3)): Model {
  const m = tinyClassifier();
  const w = m.graph.value('W')!;
  w.initializer = Tensor.from('W', DataType.FLOAT, [FEATURES, CLASSES], Array.from(w.initializer!.toFloat32(), (v, i) => v + eps * at(i)));
  return m;
}

/** Logits of the classifier for every sample, in float64 from the float32 weights. */
function logits(m: Model): number[][] {
  const W = m.graph.value('W')!.initializer!.toFloat32();
  const b = m.graph.value('b')!.initializer!.toFloat32();
  return x.map((row) => Array.from({ length: CLASSES }, (_, c) => row.reduce((s, v, k) => s + v * W[k * CLASSES + c]!, b[c]!)));
}

/** Every gate metric by its definition, in float64. */
function reference(baseline: Model, candidate: Model): Record<string, { baseline: number; candidate: number }> {
  const zb = logits(baseline);
  const zc = logits(candidate);
  const argmax = (z: number[]): number => z.indexOf(Math.max(...z));
  const nll = (z: number[], label: number): number => Math.log(z.reduce((s, v) => s + Math.exp(v), 0)) - z[label]!;
  const mean = (f: (i: number) => number): number => x.reduce((s, _, i) => s + f(i), 0) / x.length;
  let signal = 0;
  let noise = 0;
  zb.forEach((z, i) =>
    z.forEach((v, c) => {
      signal += v * v;
      noise += (v - zc[i]![c]!) ** 2;
    }),
  );
  const cos = (a: number[], b: number[]): number => a.reduce((s, v, k) => s + v * b[k]!, 0) / Math.hypot(...a) / Math.hypot(...b);
  const nllB = mean((i) => nll(zb[i]!, labels[i]!));
  const nllC = mean((i) => nll(zc[i]!, labels[i]!));
  return {
    top1: { baseline: mean((i) => +(argmax(zb[i]!) === labels[i])), candidate: mean((i) => +(argmax(zc[i]!) === labels[i])) },
    nll: { baseline: nllB, candidate: nllC },
    perplexity: { baseline: Math.exp(nllB), candidate: Math.exp(nllC) },
    agreement: { baseline: 1, candidate: mean((i) => +(argmax(zb[i]!) === argmax(zc[i]!))) },
    cosine: { baseline: 1, candidate: mean((i) => cos(zb[i]!, zc[i]!)) },
    sqnr: { baseline: Infinity, candidate: 10 * Math.log10(signal / noise) },
  };
}

const ALL = ['top1', 'nll', 'perplexity', 'agreement', 'cosine', 'sqnr'] as const;
const STRICT = {
  top1: { kind: 'max-drop', value: 0.005, relative: false },
  nll: { kind: 'max-drop', value: 0.02, relative: true },
  perplexity: { kind: 'max-drop', value: 0.02, relative: true },
  agreement: { kind: 'min', value: 0.99 },
  cosine: { kind: 'min', value: 0.999 },
  sqnr: { kind: 'min', value: 30 },
} as const;

const byName = (r: GateResult) => Object.fromEntries(r.metrics.map((m) => [m.metric, m]));

describe('gate over the tiny classifier', () => {
  it('each metric matches a float64 reference; small noise on W passes every limit', async () => {
    const baseline = tinyClassifier();
    const candidate = perturbed(1e-3);
    const r = await gate({ baseline, candidate, dataset, metrics: ALL, limits: STRICT, batchSize: 16 });
    const ref = reference(baseline, candidate);
    const got = byName(r);
    expect(r.samples).toBe(60);
    expect(r.positions).toBe(60);
    expect(r.output).toBe('logits');
    for (const m of ALL) {
      const tol = m === 'sqnr' ? 1e-2 : m === 'top1' || m === 'agreement' ? 0 : 1e-5;
      expect(Math.abs(got[m]!.candidate - ref[m]!.candidate), `${m} candidate`).toBeLessThanOrEqual(tol);
      if (m === 'sqnr') expect(got[m]!.baseline).toBe(Infinity);
      else expect(Math.abs(got[m]!.baseline - ref[m]!.baseline), `${m} baseline`).toBeLessThanOrEqual(tol);
      expect(got[m]!.delta).toBe(got[m]!.candidate - got[m]!.baseline);
      expect(got[m]!.pass, got[m]!.message).toBe(true);
    }
    expect(got.sqnr!.candidate).toBeGreaterThan(30);
    expect(got.top1!.baseline).toBe(1);
    expect(r.pass).toBe(true);
  });

  it('large noise on W fails top1, agreement, cosine and sqnr', async () => {
    const baseline = tinyClassifier();
    const candidate = perturbed(1);
    const r = await gate({ baseline, candidate, dataset, metrics: ALL, limits: STRICT });
    const got = byName(r);
    const ref = reference(baseline, candidate);
    expect(r.pass).toBe(false);
    for (const m of ALL) expect(Math.abs(got[m]!.candidate - ref[m]!.candidate), m).toBeLessThan(m === 'sqnr' ? 1e-3 : 1e-5);
    expect(got.top1!.delta).toBeLessThan(-0.005);
    expect(got.top1!.threshold).toBeCloseTo(got.top1!.baseline - 0.005, 12);
    expect(got.nll!.threshold).toBeCloseTo(got.nll!.baseline * 1.02, 12);
    for (const m of ['top1', 'agreement', 'cosine', 'sqnr'] as const) expect(got[m]!.pass, m).toBe(false);
    // this noise makes the logits larger: nll on the positions still right falls, so nll passes
    expect(got.nll!.pass).toBe(got.nll!.candidate <= got.nll!.baseline * 1.02);
    expect(gateJson(r).failed).toEqual(ALL.filter((m) => !got[m]!.pass));
  });

  it('degradation is measured in each metric’s own direction: a fall in top1, a rise in nll', async () => {
    const limits = { top1: { kind: 'max-drop', value: 0.005, relative: false }, nll: { kind: 'max-drop', value: 0.02, relative: true } } as const;
    // W negated: the model prefers its worst class, so top1 falls and nll rises; both fail
    const worse = perturbed(-2, (i) => Math.sin(i + 1));
    const down = byName(await gate({ baseline: tinyClassifier(), candidate: worse, dataset, metrics: ['top1', 'nll'], limits }));
    expect(down.top1!.delta).toBeLessThan(-0.5);
    expect(down.nll!.delta).toBeGreaterThan(0.5);
    expect([down.top1!.pass, down.nll!.pass]).toEqual([false, false]);
    expect(down.nll!.message).toMatch(/^nll rose by [\d.]+ from [\d.]+ to [\d.]+, more than the allowed max-drop 2% \(nll must be ≤ [\d.]+\)$/);
    // the other way round the candidate is better in both: a rise in top1 and a fall in nll are no loss
    const up = byName(await gate({ baseline: worse, candidate: tinyClassifier(), dataset, metrics: ['top1', 'nll'], limits }));
    expect(up.top1!.delta).toBeGreaterThan(0.5);
    expect(up.nll!.delta).toBeLessThan(-0.5);
    expect([up.top1!.pass, up.nll!.pass]).toEqual([true, true]);
  });

  it('the same numbers whatever the batch size (streaming sums)', async () => {
    const candidate = perturbed(0.3);
    const opts = { baseline: tinyClassifier(), candidate, dataset, metrics: ALL, limits: { top1: { kind: 'min', value: 0 } } as const };
    const a = byName(await gate({ ...opts, batchSize: 1 }));
    const b = byName(await gate({ ...opts, batchSize: 64 }));
    for (const m of ALL) expect(Math.abs(a[m]!.candidate - b[m]!.candidate), m).toBeLessThan(1e-9);
    // metrics with no limit are reported, not checked
    expect(a.nll!.limit).toBeUndefined();
    expect(a.nll!.pass).toBe(true);
    expect(a.nll!.message).toMatch(/reported, not checked/);
  });

  it('a candidate computing NaN fails, it does not pass', async () => {
    const candidate = perturbed(1, (i) => (i === 4 ? NaN : 0));
    const r = await gate({ baseline: tinyClassifier(), candidate, dataset, metrics: ['cosine', 'sqnr', 'nll'], limits: { cosine: { kind: 'min', value: 0 }, sqnr: { kind: 'min', value: -100 }, nll: { kind: 'max', value: 1e9 } } });
    expect(r.pass).toBe(false);
    expect(r.metrics.every((m) => !m.pass)).toBe(true);
  });

  it('comparison metrics need no labels', async () => {
    const r = await gate({ baseline: tinyClassifier(), candidate: perturbed(1e-3), dataset: openDataset(path.join(dir, 'unlabelled')), metrics: ['agreement', 'sqnr'], limits: { agreement: { kind: 'max-drop', value: 0.01, relative: true }, sqnr: { kind: 'min', value: 30 } } });
    expect(r.pass).toBe(true);
    expect(r.samples).toBe(10);
    expect(r.metrics[0]!.candidate).toBe(1);
  });

  it('renders a table with a verdict and JSON where infinities are strings', async () => {
    const r = await gate({ baseline: tinyClassifier(), candidate: perturbed(1), dataset, metrics: ['top1', 'sqnr', 'agreement'], limits: { top1: { kind: 'max-drop', value: 0.005, relative: false }, sqnr: { kind: 'min', value: 30 } } });
    const table = gateTable(r);
    expect(table).toMatch(/^metric\s+baseline\s+candidate\s+delta\s+limit\s+bound\s+result$/m);
    expect(table).toMatch(/^top1\s+[\d.]+\s+[\d.]+\s+-[\d.]+\s+max-drop 0\.005\s+≥ [\d.]+\s+FAIL$/m);
    expect(table).toMatch(/^sqnr \(dB\)\s+inf \(ideal\)\s+[-\d.]+\s+-inf\s+min 30\s+≥ 30\s+FAIL$/m);
    expect(table).toMatch(/^agreement\s+1 \(ideal\)\s+[\d.]+\s+-[\d.]+\s+-\s+-\s+not checked$/m);
    expect(table).toMatch(/^FAIL: 2 of 2 limits failed$/m);
    const json = JSON.parse(JSON.stringify(gateJson(r)));
    expect(json).toMatchObject({ pass: false, failed: ['top1', 'sqnr'], samples: 60, positions: 60, output: 'logits' });
    expect(json.metrics.sqnr).toMatchObject({ baseline: 'Infinity', delta: '-Infinity', limit: { kind: 'min', value: 30, relative: false, text: 'min 30' }, threshold: 30, pass: false });
    expect(json.metrics.agreement.limit).toBeNull();
    expect(Object.keys(json.metrics.top1).sort()).toEqual(['against', 'baseline', 'candidate', 'delta', 'direction', 'limit', 'message', 'pass', 'threshold']);
  });
});

describe('gate refuses bad input before running', () => {
  const ok = { kind: 'max-drop', value: 0.01, relative: false } as const;

  it('a label metric on an unlabelled dataset', async () => {
    await expect(gate({ baseline: tinyClassifier(), candidate: tinyClassifier(), dataset: openDataset(path.join(dir, 'unlabelled')), metrics: ['top1'], limits: ok })).rejects.toThrow(/has no labels .* which metric top1 needs; agreement, cosine, sqnr and kl compare with the baseline and need none/);
  });

  it('models with different inputs or outputs', async () => {
    const renamedInput = tinyClassifier();
    renamedInput.graph.renameValue(renamedInput.graph.inputs[0]!, 'x');
    await expect(gate({ baseline: tinyClassifier(), candidate: renamedInput, dataset, metrics: ['top1'], limits: ok })).rejects.toThrow(/the baseline and the candidate have different inputs: the candidate has no input 'features'/);
    const renamedOutput = tinyClassifier();
    renamedOutput.graph.renameValue(renamedOutput.graph.outputs[0]!, 'scores');
    await expect(gate({ baseline: tinyClassifier(), candidate: renamedOutput, dataset, metrics: ['top1'], limits: ok })).rejects.toThrow(/different outputs: the candidate has no output 'logits'/);
    const doubleInput = tinyClassifier();
    doubleInput.graph.inputs[0]!.type = { kind: 'tensor', dtype: DataType.DOUBLE, shape: ['batch', FEATURES] };
    await expect(gate({ baseline: tinyClassifier(), candidate: doubleInput, dataset, metrics: ['top1'], limits: ok })).rejects.toThrow(/different inputs: 'features' is float32\[batch,6\] in the baseline but float64\[batch,6\] in the candidate/);
    const wider = tinyClassifier();
    wider.graph.inputs[0]!.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 7] };
    await expect(gate({ baseline: tinyClassifier(), candidate: wider, dataset, metrics: ['top1'], limits: ok })).rejects.toThrow(/'features' is float32\[batch,6\] in the baseline but float32\[batch,7\] in the candidate/);
  });

  it('data that fits neither model names the model', async () => {
    writeTestData(path.join(dir, 'wrong-name'), x.slice(0, 2), [0, 1], 'input_ids');
    await expect(gate({ baseline: tinyClassifier(), candidate: tinyClassifier(), dataset: openDataset(path.join(dir, 'wrong-name')), metrics: ['top1'], limits: ok })).rejects.toThrow(/tensor 'input_ids' is not an input of the model .*\(checking the data against the baseline\)/);
  });

  it('unknown metrics and outputs, no metric, and unsuitable limits', async () => {
    const base = { baseline: tinyClassifier(), candidate: tinyClassifier(), dataset };
    await expect(gate({ ...base, metrics: ['f1' as 'top1'], limits: ok })).rejects.toThrow(/unknown metric 'f1'/);
    await expect(gate({ ...base, metrics: [], limits: ok })).rejects.toThrow(/at least one metric/);
    await expect(gate({ ...base, metrics: ['top1'], limits: ok, output: 'nope' })).rejects.toThrow(/the baseline has no output named 'nope'/);
    await expect(gate({ ...base, metrics: ['sqnr'], limits: ok })).rejects.toThrow(/no drop from it is finite/);
    await expect(gate({ ...base, metrics: ['nll'], limits: { kind: 'min', value: 1 } })).rejects.toThrow(/takes a ceiling/);
  });
});
