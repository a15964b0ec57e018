import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { tensorFromArray } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { loadModel, saveModel, writeTensorFile } from '../../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import type { Scheme } from '../../src/quantize/scheme.js';
import { Session } from '../../src/runtime/session.js';
import { cli } from '../helpers/cli.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { builtFixture } from './built-fixture.js';

const { dir, built, modelFile, calibDir } = builtFixture({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 16, opset: 17, mask: 'additive-input', seed: 3 }, 24);
const linears = 2 * 6;

async function run(scheme: Scheme, extra: object = {}) {
  const { model, report } = await pipeline([quantize({ scheme, ...extra })]).apply(loadModel(modelFile), { calibration: openDataset(calibDir) });
  return { model, summary: report.passes[0]!.summary as unknown as QuantizeSummary };
}

async function optimizedOps(model: Model): Promise<Record<string, number>> {
  const file = path.join(dir, `opt-${Math.random().toString(36).slice(2)}.onnx`);
  const s = await Session.create(model, { optimizedModelPath: file });
  await s.release();
  const ops: Record<string, number> = {};
  for (const n of loadModel(file).graph.nodes) ops[n.opType] = (ops[n.opType] ?? 0) + 1;
  return ops;
}

// SQNR floors (dB) for this random-weight model; each scheme must clear its own
const floors: Record<Scheme, number> = { w8a8: 25, w6a6: 15, w4a4: 6, dynamic: 25, w8: 30, w4: 12, w3: 6, w2: 0, fp16: 40, q4f16: 12 };

describe('quantize pass', () => {
  for (const scheme of ['w8a8', 'dynamic', 'w8', 'w4', 'w3'] as Scheme[]) {
    it(`${scheme}: every linear quantized, output close to float, round trip exact`, async () => {
      const { model, summary } = await run(scheme);
      expect(summary.layers).toHaveLength(linears);
      expect(summary.verifiedSamples).toBeGreaterThan(0);
      expect(summary.outputs[0]!.sqnr).toBeGreaterThan(floors[scheme]);
      for (const l of summary.layers) expect(l.sqnr, l.name).toBeGreaterThan(floors[scheme] - 6);
      expect(summary.weightBytesAfter).toBeLessThan(summary.weightBytesBefore / (scheme === 'w4' || scheme === 'w3' ? 4 : 2.5));
      // no float MatMul is left reading a constant weight
      expect(model.graph.nodes.filter((n) => n.opType === 'MatMul' && n.input(1)?.initializer?.dtype === DataType.FLOAT)).toHaveLength(0);
      const file = path.join(dir, `${scheme}.onnx`);
      saveModel(model, file);
      const [a, b] = await runBoth(model, loadModel(file), built.feeds(2));
      expect(sameOutputs(a, b)).toBe(true);
    });
  }

  it('w8a8 and dynamic layouts are fused by onnxruntime into integer kernels', async () => {
    const w8a8 = await optimizedOps((await run('w8a8')).model);
    expect(w8a8.MatMulIntegerToFloat ?? 0).toBe(linears);
    expect(w8a8.DequantizeLinear ?? 0).toBe(0);
    const dyn = await optimizedOps((await run('dynamic')).model);
    expect((dyn.MatMulIntegerToFloat ?? 0) + (dyn.DynamicQuantizeMatMul ?? 0)).toBe(linears);
    const w4 = await optimizedOps((await run('w4')).model);
    expect(w4.MatMulNBits).toBe(linears);
  });

  it('--exclude keeps matching layers in float and the report lists them', async () => {
    const { model, summary } = await run('w8a8', { exclude: ['*.mlp.*'] });
    expect(summary.excluded.map((e) => e.name).sort()).toEqual(['blocks.0.mlp.fc1', 'blocks.0.mlp.fc2', 'blocks.1.mlp.fc1', 'blocks.1.mlp.fc2']);
    expect(summary.layers).toHaveLength(linears - 4);
    expect(model.graph.nodes.filter((n) => n.opType === 'MatMul' && n.input(1)?.initializer?.dtype === DataType.FLOAT)).toHaveLength(4);
    const regex = await run('w4', { exclude: ['/attn\\.(query|key)$/'] });
    expect(regex.summary.excluded).toHaveLength(4);
  });
});

describe('quantize: bad input', () => {
  it('refuses a model that is already quantized, naming the node', async () => {
    const { model } = await run('w4');
    await expect(pipeline([quantize({ scheme: 'w8a8' })]).apply(model, { calibration: openDataset(calibDir) })).rejects.toThrow(/already quantized \(it has a MatMulNBits node/);
  });

  it('refuses a model with no quantizable layer', async () => {
    const g = new Graph('relu');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 4] });
    g.outputs.push(g.addNode('Relu', [x], ['y']).output(0));
    const m = new Model(g);
    await expect(pipeline([quantize({ scheme: 'w8' })]).apply(m)).rejects.toThrow(/has no quantizable layer/);
  });

  it('w8a8 without calibration data is an error', async () => {
    await expect(pipeline([quantize({ scheme: 'w8a8' })]).apply(loadModel(modelFile))).rejects.toThrow(/needs calibration data/);
  });

  it('from the CLI: Inf in calibration data, same input and output, bad scheme, data not fitting: exit 2', () => {
    const inf = path.join(dir, 'inf', 'test_data_set_0');
    fs.mkdirSync(inf, { recursive: true });
    const feeds = built.feeds(1);
    const x = feeds.x!;
    const big = Float32Array.from(x.data as Float32Array, (v, i) => (i === 5 ? Infinity : v));
    writeTensorFile(path.join(inf, 'input_0.pb'), tensorFromArray('x', { ...x, data: big }));
    writeTensorFile(path.join(inf, 'input_1.pb'), tensorFromArray('attention_mask', feeds.attention_mask!));
    const r = cli('quantize', modelFile, '-o', path.join(dir, 'inf.onnx'), '--calib', path.dirname(inf));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/test_data_set_0: tensor 'x' contains Inf/);
    expect(fs.existsSync(path.join(dir, 'inf.onnx'))).toBe(false);
    expect(cli('quantize', modelFile, '-o', modelFile, '--calib', calibDir).stderr).toMatch(/is the input model/);
    expect(cli('quantize', modelFile, '-o', path.join(dir, 'x.onnx'), '--scheme', 'w5').code).toBe(2);
    const wrong = path.join(dir, 'wrong', 'test_data_set_0');
    fs.mkdirSync(wrong, { recursive: true });
    writeTensorFile(path.join(wrong, 'input_0.pb'), tensorFromArray('x', { dtype: DataType.FLOAT, dims: [1, 3], data: new Float32Array(3) }));
    const w = cli('quantize', modelFile, '-o', path.join(dir, 'w.onnx'), '--calib', path.dirname(wrong));
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/tensor 'x' has shape \[1,3\]/);
  });

  it('from the CLI: writes the model and a JSON report', () => {
    const out = path.join(dir, 'cli-w8a8.onnx');
    const r = cli('quantize', modelFile, '-o', out, '--calib', calibDir, '--scheme', 'w8a8', '--json');
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.layers).toHaveLength(linears);
    expect(j.fileBytesAfter).toBeLessThan(j.fileBytesBefore);
    expect(fs.existsSync(out)).toBe(true);
  });
});
