import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { flexRound } from '../../src/passes/flexround.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { bakeFlexRound, flexRoundLayer, zeroDeltas } from '../../src/quantize/flexround.js';
import { dequantizeWeight, quantizeWeight } from '../../src/quantize/weight-quantizer.js';
import { Random } from '../../src/autodiff/random.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { writeSamples } from '../helpers/samples.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTransformer } from '../helpers/transformer-builder.js';

const dir = tempDir();
const built = buildTransformer({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 16, opset: 17, mask: 'additive-input', seed: 5 });
const calibDir = path.join(dir, 'calib');
writeSamples(calibDir, () => built.feeds(1), 16);
const modelFile = path.join(dir, 'model.onnx');
saveModel(built.model, modelFile);
const calibration = openDataset(calibDir);

function randn(rng: Random, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * rng.normal();
  return out;
}

const summaryOf = (r: { report: { passes: { summary?: Record<string, unknown> }[] } }): QuantizeSummary => r.report.passes[0]!.summary as unknown as QuantizeSummary;

describe('FlexRound', () => {
  it('bakes to the starting grid bit for bit when every log-offset is zero (ties round to even, like onnxruntime)', async () => {
    const rng = new Random(1);
    const n = 8;
    const k = 48;
    const w = randn(rng, n * k, 0.05);
    // exact ties on the minmax grid of the first group: weights at ±2.5 and 1.5 steps
    const amax = Math.max(...Array.from(w.subarray(0, 16), Math.abs));
    const step = Math.fround(amax / 7);
    w[3] = Math.fround(2.5 * step);
    w[4] = Math.fround(-2.5 * step);
    w[5] = Math.fround(1.5 * step);
    const q = await quantizeWeight(w, n, k, { bits: 4, symmetric: true, blockSize: 16, search: 'mse' });
    const q2 = await quantizeWeight(w, n, k, { bits: 4, symmetric: true, blockSize: 16, search: 'minmax' });
    for (const start of [q, q2]) {
      const b = bakeFlexRound(w, start, zeroDeltas(start));
      expect(b.levels).toEqual(start.levels);
      expect(b.scales).toEqual(start.scales);
      expect(b.zeroPoints).toEqual(start.zeroPoints);
    }
  });

  it('layer-wise learning lowers the layer output error below round to nearest', async () => {
    const rng = new Random(2);
    const n = 16;
    const k = 64;
    const rows = 512;
    const w = randn(rng, n * k, 0.1);
    const x = randn(rng, rows * k);
    for (let r = 0; r < rows; r++) x[r * k + 3] *= 8; // an outlier input channel
    const q = await quantizeWeight(w, n, k, { bits: 3, symmetric: true, blockSize: 0, search: 'mse' });
    const r = await flexRoundLayer(w, q, x, { iters: 500, lr: 3e-3, batch: 128 });
    expect(r.kept).toBe('learned');
    expect(r.lossAfter).toBeLessThan(0.95 * r.lossBefore);
    // the result is an ordinary grid: levels in range, scales positive
    expect(Math.max(...r.weight.levels)).toBeLessThanOrEqual(3);
    expect(Math.min(...r.weight.levels)).toBeGreaterThanOrEqual(-4);
    expect(dequantizeWeight(r.weight).every(Number.isFinite)).toBe(true);
  });

  for (const scheme of ['w4', 'w8a8'] as const) {
    it(`${scheme}: zero iterations give the RTN model bit for bit`, async () => {
      const rtn = await pipeline([quantize({ scheme, cacheDir: false, verifySamples: 2 })]).apply(loadModel(modelFile), { calibration });
      const fr = await pipeline([quantize({ scheme, method: 'flexround', flexround: { iters: 0 }, cacheDir: false, verifySamples: 2 })]).apply(loadModel(modelFile), { calibration });
      const a = rtn.model.graph.initializers.map((v) => [v.name, Buffer.from(v.initializer!.bytes).toString('base64')]);
      const b = fr.model.graph.initializers.map((v) => [v.name, Buffer.from(v.initializer!.bytes).toString('base64')]);
      expect(b).toEqual(a);
      const [ya, yb] = await runBoth(rtn.model, fr.model, built.feeds(3));
      expect(sameOutputs(ya, yb)).toBe(true);
    });
  }

  it('flexRound() pass: layer-wise w3 beats RTN on the calibration output SQNR, exports plain MatMulNBits, round-trips', async () => {
    const rtn = summaryOf(await pipeline([quantize({ scheme: 'w3', cacheDir: false, verifySamples: 8 })]).apply(loadModel(modelFile), { calibration }));
    const r = await pipeline([flexRound({ bits: 3, iters: 60, lr: 5e-3, mode: 'layer', verifySamples: 8 })]).apply(loadModel(modelFile), { calibration });
    const s = summaryOf(r);
    expect(r.report.passes[0]!.pass).toBe('flexround');
    expect(s.method).toBe('flexround');
    expect(s.flexround!.units.length).toBe(12);
    expect(s.flexround!.units.filter((u) => u.kept === 'learned').length).toBeGreaterThan(6);
    expect(s.outputs[0]!.sqnr).toBeGreaterThan(rtn.outputs[0]!.sqnr);
    const ops = new Set(r.model.graph.nodes.map((n) => n.opType));
    expect(ops.has('MatMulNBits')).toBe(true);
    expect([...r.model.graph.nodes].some((n) => /flexround/i.test(n.name) || n.inputs.some((v) => v && /flexround/i.test(v.name)))).toBe(false);
    const file = path.join(dir, 'fr.onnx');
    saveModel(r.model, file);
    const [a, b] = await runBoth(r.model, loadModel(file), built.feeds(2));
    expect(sameOutputs(a, b)).toBe(true);
  });

  it('block-wise mode learns through the reconstruction engine and keeps the export ordinary', async () => {
    const rtn = summaryOf(await pipeline([quantize({ scheme: 'w3', cacheDir: false, verifySamples: 8 })]).apply(loadModel(modelFile), { calibration }));
    const r = await pipeline([flexRound({ bits: 3, iters: 40, lr: 5e-3, mode: 'block', verifySamples: 8 })]).apply(loadModel(modelFile), { calibration });
    const s = summaryOf(r);
    expect(s.flexround!.mode).toBe('block');
    expect(s.flexround!.units.filter((u) => u.unit.startsWith('block ')).length).toBe(2);
    expect(s.outputs[0]!.sqnr).toBeGreaterThan(rtn.outputs[0]!.sqnr);
  });

  it('rejects a bad iteration count in one sentence', async () => {
    await expect(pipeline([flexRound({ bits: 4, iters: -1 })]).apply(loadModel(modelFile), { calibration })).rejects.toThrow(/iterations/);
  });
});
