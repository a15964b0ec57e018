import type { Report } from '../../src/report/report.js';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { flexRound } from '../../src/passes/flexround.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import type { QuantizeOptions } from '../../src/quantize/scheme.js';
import { Session } from '../../src/runtime/session.js';
import { Trainer } from '../../src/autodiff/optimizer.js';
import { ACT_LOG_RATE, fakeQuantActivation } from '../../src/quantize/flexround-weights.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { bakeFlexRound, flexRoundLayer, zeroDeltas } from '../../src/quantize/flexround.js';
import { dequantizeWeight, quantizeWeight } from '../../src/quantize/weight-quantizer.js';
import { Random } from '../../src/autodiff/random.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { builtFixture } from './built-fixture.js';

const { dir, built, modelFile, calibration } = builtFixture({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 16, opset: 17, mask: 'additive-input', seed: 5 }, 16);

function randn(rng: Random, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * rng.normal();
  return out;
}

/** A layer's weight ([n, k], scale 0.1) and `rows` inputs ([rows, k]) from seed `seed`, and the generator for more. */
function layerProblem(seed: number, n: number, k: number, rows: number): { rng: Random; n: number; k: number; rows: number; w: Float32Array; x: Float32Array } {
  const rng = new Random(seed);
  const w = randn(rng, n * k, 0.1);
  return { rng, n, k, rows, w, x: randn(rng, rows * k) };
}

const summaryOf = (r: { report: Report }): QuantizeSummary => r.report.passes[0]!.summary as QuantizeSummary;

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
    const { n, k, rows, w, x } = layerProblem(2, 16, 64, 512);
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

  it('layer-wise, given the float model\'s rows, aims at their float output (AdaRound\'s asymmetric target; loss within 1e-5 relative of a JS sum)', async () => {
    const { rng, n, k, rows, w, x: xf } = layerProblem(3, 8, 32, 256);
    const xq = xf.map((v) => v + 0.05 * rng.normal()); // the inputs a quantized model gives: the float ones, perturbed
    const q = await quantizeWeight(w, n, k, { bits: 3, symmetric: true, blockSize: 0, search: 'mse' });
    const wq = dequantizeWeight(q);
    // mean over rows and outputs of (xq·Ŵᵀ − xf·Wᵀ)², Ŵ the start
    let sum = 0;
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < n; j++) {
        let yq = 0;
        let yf = 0;
        for (let i = 0; i < k; i++) {
          yq += xq[r * k + i]! * wq[j * k + i]!;
          yf += xf[r * k + i]! * w[j * k + i]!;
        }
        sum += (yq - yf) ** 2;
      }
    }
    const asym = await flexRoundLayer(w, q, xq, { iters: 200, lr: 3e-3, batch: 64, floatInputs: xf });
    expect(Math.abs(asym.lossBefore - sum / (rows * n)) / (sum / (rows * n))).toBeLessThan(1e-5);
    const own = await flexRoundLayer(w, q, xq, { iters: 1, lr: 1e-9 });
    expect(own.lossBefore).toBeLessThan(asym.lossBefore); // against its own inputs the start looks better than it is
    expect(asym.kept).toBe('learned');
    expect(asym.lossAfter).toBeLessThan(asym.lossBefore);
    await expect(flexRoundLayer(w, q, xq, { iters: 1, floatInputs: xf.subarray(0, k * 10) })).rejects.toThrow(/10 float input rows for 256 quantized ones/);
  });

  const zeroCases: [string, QuantizeOptions][] = [
    ['w4', { scheme: 'w4' }],
    ['w2', { scheme: 'w2' }],
    ['w8a8', { scheme: 'w8a8' }],
    ['w4a8 (learned activation steps)', { scheme: 'w8a8', weightBits: 4 }],
  ];
  for (const [label, options] of zeroCases) {
    it(`${label}: zero iterations give the RTN model bit for bit`, async () => {
      const rtn = await pipeline([quantize({ ...options, cacheDir: false, verifySamples: 2 })]).apply(loadModel(modelFile), { calibration });
      const fr = await pipeline([quantize({ ...options, method: 'flexround', flexround: { iters: 0, start: 'rtn' }, cacheDir: false, verifySamples: 2 })]).apply(loadModel(modelFile), { calibration });
      const a = rtn.model.graph.initializers.map((v) => [v.name, Buffer.from(v.initializer!.bytes).toString('base64')]);
      const b = fr.model.graph.initializers.map((v) => [v.name, Buffer.from(v.initializer!.bytes).toString('base64')]);
      expect(b).toEqual(a);
      const [ya, yb] = await runBoth(rtn.model, fr.model, built.feeds(3));
      expect(sameOutputs(ya, yb)).toBe(true);
    });
  }

  it('flexRound() pass: layer-wise w3 beats RTN on the calibration output SQNR, exports plain MatMulNBits, round-trips', async () => {
    const rtn = summaryOf(await pipeline([quantize({ scheme: 'w3', cacheDir: false, verifySamples: 8 })]).apply(loadModel(modelFile), { calibration }));
    const r = await pipeline([flexRound({ bits: 3, iters: 60, lr: 5e-3, mode: 'layer', start: 'rtn', verifySamples: 8 })]).apply(loadModel(modelFile), { calibration });
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

  it('w4a8 block-wise learns the activation step sizes: they move from the calibrated ones, the export uses them, the calibration loss falls', async () => {
    const iters = 40;
    const rtn = await pipeline([quantize({ scheme: 'w8a8', weightBits: 4, cacheDir: false, verifySamples: 16 })]).apply(loadModel(modelFile), { calibration });
    const r = await pipeline([flexRound({ bits: 4, aBits: 8, iters, lr: 1e-2, mode: 'block', start: 'rtn', verifySamples: 16 })]).apply(loadModel(modelFile), { calibration });
    const off = await pipeline([flexRound({ bits: 4, aBits: 8, iters, lr: 1e-2, mode: 'block', start: 'rtn', verifySamples: 16, learnActivations: false })]).apply(loadModel(modelFile), { calibration });
    const s = summaryOf(r);
    // per block: q/k/v input, attention output, MLP input, MLP hidden
    expect(s.flexround!.activations.length).toBe(2 * 4);
    expect(summaryOf(off).flexround!.activations).toEqual([]);
    const blocks = s.flexround!.units.filter((u) => u.unit.startsWith('block '));
    expect(blocks).toHaveLength(2);
    for (const b of blocks) {
      expect(b.kept).toBe('learned');
      expect(b.lossAfter).toBeLessThan(b.lossBefore);
    }
    const moved = s.flexround!.activations.filter((a) => a.learned !== a.start);
    expect(moved.length).toBeGreaterThan(s.flexround!.activations.length / 2);
    for (const a of s.flexround!.activations) {
      expect(a.learned / a.start).toBeGreaterThan(0.5);
      expect(a.learned / a.start).toBeLessThan(2);
    }
    // the exported QuantizeLinear of each input carries the learned step; without learning, the calibrated one
    const scaleOf = (m: typeof r.model, input: string): number => {
      const qn = m.graph.nodes.find((n) => n.opType === 'QuantizeLinear' && n.input(0)!.name === input)!;
      return qn.input(1)!.initializer!.toFloat32()[0]!;
    };
    for (const a of s.flexround!.activations) {
      expect(scaleOf(r.model, a.name)).toBe(a.learned);
      expect(scaleOf(rtn.model, a.name)).toBe(a.start);
      expect(scaleOf(off.model, a.name)).toBe(a.start);
    }
    // the model's output on the calibration samples is closer to the float model's than RTN's
    expect(s.outputs[0]!.sqnr).toBeGreaterThan(summaryOf(rtn).outputs[0]!.sqnr);
  });

  it('w2: FlexRound output loads and runs in onnxruntime (2-bit MatMulNBits) and beats RTN on calibration SQNR', async () => {
    const rtn = summaryOf(await pipeline([quantize({ scheme: 'w2', cacheDir: false, verifySamples: 8 })]).apply(loadModel(modelFile), { calibration }));
    const r = await pipeline([flexRound({ bits: 2, iters: 40, lr: 1e-2, mode: 'block', verifySamples: 8 })]).apply(loadModel(modelFile), { calibration });
    const nbits = r.model.graph.nodes.filter((n) => n.opType === 'MatMulNBits');
    expect(nbits).toHaveLength(12);
    for (const n of nbits) expect(n.attributes.get('bits')).toEqual({ type: 'int', value: 2 });
    expect(summaryOf(r).outputs[0]!.sqnr).toBeGreaterThan(rtn.outputs[0]!.sqnr);
    const file = path.join(dir, 'w2.onnx');
    saveModel(r.model, file);
    const s = await Session.create(loadModel(file));
    try {
      const out = Object.values(await s.run(built.feeds(2)))[0]!;
      expect(Array.from(out.data as Float32Array).every(Number.isFinite)).toBe(true);
    } finally {
      await s.release();
    }
  });

  it('rejects a bad iteration count in one sentence, when the pass is built', () => {
    expect(() => flexRound({ bits: 4, iters: -1 })).toThrow(/^pass 'flexround': option 'iters' must be a number in \[0, inf\], not -1$/);
    expect(() => flexRound({ bits: 4, iters: 2.5 })).toThrow(/^pass 'flexround': option 'iters' must be a whole number, not 2\.5$/);
  });
});

describe('learned activation step (LSQ)', () => {
  it('the fake quantizer equals QuantizeLinear→DequantizeLinear at α = 0, and its step gradient is LSQ\'s (relative tolerance 1e-4)', async () => {
    const rng = new Random(8);
    const count = 64;
    const x = Float32Array.from({ length: count }, () => 3 * rng.normal());
    const c = Float32Array.from({ length: count }, () => rng.normal());
    const act = { scale: Math.fround(4 / 255), zeroPoint: 128 }; // [-4.27, 4.0]: some of x is clipped
    const g = new Graph('lsq');
    const xv = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [count] });
    const alpha = g.addInput('alpha', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1] });
    const xq = fakeQuantActivation(g, 'x', act, alpha);
    g.outputs.push(xq);
    const loss = g.addNode('ReduceSum', [g.addNode('Mul', [xq, g.addInitializer(Tensor.from('c', DataType.FLOAT, [count], c))], 1).output(0)], ['loss'], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0);
    g.outputs.push(loss);
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    // forward at α = 0 against QuantizeLinear/DequantizeLinear in onnxruntime
    const qdq = new Graph('qdq');
    const qx = qdq.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [count] });
    const sc = qdq.addInitializer(Tensor.from('s', DataType.FLOAT, [], [act.scale]));
    const zp = qdq.addInitializer(Tensor.from('z', DataType.UINT8, [], [act.zeroPoint]));
    qdq.outputs.push(qdq.addNode('DequantizeLinear', [qdq.addNode('QuantizeLinear', [qx, sc, zp], 1).output(0), sc, zp], ['y']).output(0));
    const qm = new Model(qdq);
    qm.opsetImports = new Map([['', 17]]);
    const feeds = { x: { dtype: DataType.FLOAT, dims: [count], data: x } };
    const [a, b] = await runBoth(m, qm, { ...feeds, alpha: { dtype: DataType.FLOAT, dims: [1], data: new Float32Array(1) } } as never);
    expect(Array.from(a[xq.name]!.data as Float32Array)).toEqual(Array.from(b.y!.data as Float32Array));
    // one SGD step of lr 1 from α = 0 moves α by minus the gradient
    const tr = await Trainer.create({ model: m, loss: 'loss', params: [{ name: 'alpha', dims: [1], init: new Float32Array(1) }], optimizer: { kind: 'sgd', lr: 1, schedule: 'constant' }, steps: 1 });
    try {
      await tr.step(feeds);
      const grad = -tr.parameters().get('alpha')![0]!;
      // LSQ: dx̂/ds = (q − z) − x/s inside the grid, (q − z) where clamped; ds/dα = s·ACT_LOG_RATE at α = 0
      let want = 0;
      for (let i = 0; i < count; i++) {
        const u = Math.round(x[i]! / act.scale) + act.zeroPoint;
        const q = Math.min(255, Math.max(0, u));
        const d = u === q ? q - act.zeroPoint - x[i]! / act.scale : q - act.zeroPoint;
        want += c[i]! * d * act.scale * ACT_LOG_RATE;
      }
      expect(Math.abs(grad - want)).toBeLessThanOrEqual(1e-4 * Math.abs(want));
    } finally {
      await tr.release();
    }
  });
});
