import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { FLOAT16_MAX, convertToFloat16, toFloat16 } from '../../src/export/fp16.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { quantize } from '../../src/passes/quantize.js';
import type { QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { Session } from '../../src/runtime/session.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { outputSqnr } from './fp16-helpers.js';

const fixture = (name: string) => ({ file: path.join(ROOT, 'fixtures', `${name}.onnx`), calib: path.join(ROOT, 'calibration', name, 'calib') });
const dir = tempDir();

/** Float initializers of every graph, by name: their element type after conversion. */
function initializerTypes(m: Model): Map<string, DataType> {
  const out = new Map<string, DataType>();
  const visit = (g: Graph): void => {
    for (const v of g.initializers) out.set(v.name, v.initializer!.dtype);
    for (const n of g.nodes) n.subgraphs().forEach(visit);
  };
  visit(m.graph);
  return out;
}

describe('toFloat16', () => {
  it('rounds to nearest even, clamps beyond ±65504 and counts what it clamped or flushed', () => {
    const r = { tensors: 0, elements: 0, clamped: 0, flushed: 0 };
    const t = toFloat16(Tensor.from('t', DataType.FLOAT, [6], [1, -3.4028234663852886e38, 70000, 1e-12, 1 + 2 ** -11, 0]), r);
    expect(t.dtype).toBe(DataType.FLOAT16);
    // IEEE half bit patterns written out by hand: 1.0, -65504, 65504, 0, 1.0 (a tie rounds to even), 0
    expect([...(t.toTypedArray() as Uint16Array)]).toEqual([0x3c00, 0xfbff, 0x7bff, 0x0000, 0x3c00, 0x0000]);
    expect(r).toEqual({ tensors: 1, elements: 6, clamped: 2, flushed: 1 });
    expect(FLOAT16_MAX).toBe(65504);
  });
});

describe('quantize --scheme fp16 on the bundled models', () => {
  for (const name of ['vit_mnist', 'bert_spam', 'gpt_moby']) {
    it(`${name}: float16 weights, float32 inputs/outputs, norms kept in float32, SQNR >= 40 dB vs float after a save/load round trip`, async () => {
      const { file, calib } = fixture(name);
      const float = loadModel(file);
      const { model, report } = await pipeline([quantize({ scheme: 'fp16', cacheDir: false })]).apply(float, { calibration: calib });
      const summary = report.passes[0]!.summary as unknown as QuantizeSummary;
      // structure: every float weight of a node that runs in float16 is float16 now
      const kept = new Set(summary.float16!.kept.map((k) => k.op));
      const types = initializerTypes(model);
      const floatBefore = [...initializerTypes(float)].filter(([, t]) => t === DataType.FLOAT).map(([n]) => n);
      const stillFloat = floatBefore.filter((n) => types.get(n) === DataType.FLOAT);
      for (const n of stillFloat) expect(model.graph.value(n)!.uses().every((u) => u.node.opType === 'Cast' || kept.has(u.node.opType)), n).toBe(true);
      expect(floatBefore.filter((n) => types.get(n) === DataType.FLOAT16).length).toBeGreaterThan(floatBefore.length / 2);
      const matmulWeights = [...model.graph.nodes].filter((n) => n.opType === 'MatMul' || n.opType === 'Gemm').map((n) => n.input(1)!).filter((v) => v.initializer);
      expect(matmulWeights.length).toBeGreaterThan(0);
      for (const w of matmulWeights) expect(w.initializer!.dtype, w.name).toBe(DataType.FLOAT16);
      // norms stay float32 (fused LayerNormalization in vit_mnist, decomposed in bert/gpt)
      expect(name === 'vit_mnist' ? kept.has('LayerNormalization') : kept.has('Pow') && kept.has('ReduceMean') && kept.has('Sqrt')).toBe(true);
      expect(model.graph.inputs.map((v) => v.dtype)).toEqual(float.graph.inputs.map((v) => v.dtype));
      expect(model.graph.outputs.map((v) => v.name)).toEqual(float.graph.outputs.map((v) => v.name));
      // size: about half
      expect(summary.weightBytesAfter).toBeLessThan(0.6 * summary.weightBytesBefore);
      // numbers, measured here after a save/load round trip
      const out = path.join(dir, `${name}.fp16.onnx`);
      saveModel(model, out);
      const { sqnr, types: outTypes } = await outputSqnr(float, loadModel(out), openDataset(calib), 16);
      for (const [o, db] of Object.entries(sqnr)) {
        expect(db, `${name} ${o}`).toBeGreaterThanOrEqual(40);
        expect(outTypes[o]).toBe(DataType.FLOAT);
      }
      // the pass's own check (the same 16 samples, in batches of 4) agrees with the independent one
      expect(Math.abs(summary.outputs[0]!.sqnr - sqnr[summary.outputs[0]!.name]!)).toBeLessThan(0.5);
      expect(report.quality!.sqnr).toBeGreaterThanOrEqual(40);
    });
  }

  it('keepIoTypes false: float inputs and outputs become float16 too, and float32 datasets still run it', async () => {
    const { file, calib } = fixture('vit_mnist');
    const float = loadModel(file);
    const { model } = await pipeline([quantize({ scheme: 'fp16', keepIoTypes: false, cacheDir: false })]).apply(float, { calibration: calib });
    expect(model.graph.inputs.map((v) => v.dtype)).toEqual([DataType.FLOAT16]);
    expect(model.graph.outputs.map((v) => v.dtype)).toEqual([DataType.FLOAT16]);
    const { sqnr, types } = await outputSqnr(float, model, openDataset(calib));
    expect(types[model.graph.outputs[0]!.name]).toBe(DataType.FLOAT16);
    expect(Object.values(sqnr)[0]).toBeGreaterThanOrEqual(40);
  });

  it('a model without float32 weights is refused in one sentence', async () => {
    const { file } = fixture('bert_spam');
    const once = await pipeline([quantize({ scheme: 'fp16', cacheDir: false })]).apply(loadModel(file), { floor: false });
    await expect(pipeline([quantize({ scheme: 'fp16', cacheDir: false })]).apply(once.model, { floor: false })).rejects.toThrow(/already has float16 weights; convert the float32 model instead/);
  });
});

describe('quantize --scheme q4f16', () => {
  it('gpt_moby: MatMulNBits with float16 scales on a float16 graph, as close to float as w4 is (within 0.5 dB)', async () => {
    const { file, calib } = fixture('gpt_moby');
    const float = loadModel(file);
    const run = (scheme: 'w4' | 'q4f16') => pipeline([quantize({ scheme, cacheDir: false })]).apply(float, { calibration: calib });
    const q = await run('q4f16');
    const w = await run('w4');
    const nbits = [...q.model.graph.nodes].filter((n) => n.opType === 'MatMulNBits');
    expect(nbits.length).toBeGreaterThan(0);
    for (const n of nbits) expect(n.input(2)!.initializer!.dtype).toBe(DataType.FLOAT16);
    const a = await outputSqnr(float, q.model, openDataset(calib));
    const b = await outputSqnr(float, w.model, openDataset(calib));
    const o = float.graph.outputs[0]!.name;
    expect(Math.abs(a.sqnr[o]! - b.sqnr[o]!)).toBeLessThan(0.5);
    expect(a.types[o]).toBe(DataType.FLOAT);
  });
});

describe('convertToFloat16 on subgraphs', () => {
  it('an If whose branches share a float weight: converted once, both branches run in float16 and match float', async () => {
    const g = new Graph('main');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [4, 4] });
    const cond = g.addInput('cond', { kind: 'tensor', dtype: DataType.BOOL, shape: [] });
    const weights = Array.from({ length: 16 }, (_, i) => Math.sin(i + 1));
    const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [4, 4], weights));
    const branch = (name: string, op: 'MatMul' | 'Add'): Graph => {
      const b = new Graph(name);
      b.parent = g;
      const y = b.addNode(op, [x, w], [`${name}_y`]).output(0);
      y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: undefined };
      b.outputs.push(y);
      return b;
    };
    const node = g.addNode('If', [cond], ['y'], { attributes: { then_branch: { type: 'graph', value: branch('then', 'MatMul') }, else_branch: { type: 'graph', value: branch('else', 'Add') } } });
    for (const sg of node.subgraphs()) sg.parent = g;
    node.output(0).type = { kind: 'tensor', dtype: DataType.FLOAT, shape: undefined };
    g.outputs.push(node.output(0));
    const float = new Model(g);
    float.opsetImports = new Map([['', 17]]);
    const half = float.clone();
    convertToFloat16(half, { keepIoTypes: true });
    expect(half.graph.value('w')!.initializer!.dtype).toBe(DataType.FLOAT16);
    expect(initializerTypes(half).size).toBe(1);
    const xs = Float32Array.from({ length: 16 }, (_, i) => (i - 7.5) / 4);
    for (const c of [1, 0]) {
      const feeds = { x: { dtype: DataType.FLOAT, dims: [4, 4], data: xs }, cond: { dtype: DataType.BOOL, dims: [], data: Uint8Array.of(c) } };
      const sf = await Session.create(float);
      const sh = await Session.create(half);
      const a = (await sf.run(feeds))['y']!.data as Float32Array;
      const b = (await sh.run(feeds))['y']!.data as Float32Array;
      await sf.release();
      await sh.release();
      expect(b).toBeInstanceOf(Float32Array);
      // float16 keeps 11 significant bits: relative error below 2^-10 per element, 4-term sums a few times that
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `cond ${c} [${i}]`).toBeLessThan(4e-3 * Math.max(1, Math.abs(a[i]!)));
    }
  });
});
