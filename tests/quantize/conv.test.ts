import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { constantTensor } from '../../src/discover/constants.js';
import { convToPatchMatMul } from '../../src/export/patch-matmul.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { quantize, type QuantizePassOptions, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { findConvs } from '../../src/quantize/conv.js';
import { Session } from '../../src/runtime/session.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { ROOT } from '../helpers/fixtures.js';
import { writeSamples } from '../helpers/samples.js';
import { tempDir } from '../helpers/tmp.js';
import { relativeError } from '../reparam/relative-error.js';

// Conv patch embeddings under every scheme: the zoo ViTs (torchvision, HF ViT, HF DeiT, HF ViT
// after onnxruntime's optimizer) and the bundled vit_mnist. A patch embedding is rewritten as
// the equal MatMul over patches and then quantized like every other linear layer.

const dir = tempDir();
const vits = [
  { name: 'tv_vit_mnist', file: 'fixtures/zoo/tv_vit_mnist.onnx', data: 'calibration/zoo/tv_vit_mnist', trained: true },
  { name: 'hf_vit', file: 'fixtures/zoo/hf_vit.onnx', data: 'calibration/zoo/hf_vit', trained: false },
  { name: 'hf_vit.ort', file: 'fixtures/zoo/hf_vit.ort.onnx', data: 'calibration/zoo/hf_vit', trained: false },
  { name: 'hf_deit', file: 'fixtures/zoo/hf_deit.onnx', data: 'calibration/zoo/hf_deit', trained: false },
  { name: 'vit_mnist', file: 'fixtures/vit_mnist.onnx', data: 'calibration/vit_mnist', trained: true },
].filter((v) => fs.existsSync(path.join(ROOT, v.file)));

/** Output SQNR floors (dB) of quantize-pass.test.ts, which every scheme must clear here too. */
const floors = { w8a8: 25, w4a4: 6, dynamic: 25, w4: 12 } as const;

async function run(file: string, calib: string, options: QuantizePassOptions) {
  const { model, report } = await pipeline([quantize(options)]).apply(loadModel(file), { calibration: openDataset(calib) });
  return { model, summary: report.passes[0]!.summary as unknown as QuantizeSummary };
}

/** The graph onnxruntime actually runs (saved through optimizedModelFilePath). */
async function optimized(model: Model): Promise<Graph> {
  const file = path.join(dir, `opt-${Math.random().toString(36).slice(2)}.onnx`);
  const s = await Session.create(model, { optimizedModelPath: file });
  await s.release();
  return loadModel(file).graph;
}

/** Nodes that still compute in float with a constant float weight (Conv, MatMul, Gemm). */
function floatWeightOps(model: Model): string[] {
  return model.graph.nodes.filter((n) => ['Conv', 'ConvTranspose', 'MatMul', 'Gemm'].includes(n.opType) && constantTensor(n.input(1))?.dtype === DataType.FLOAT).map((n) => n.name);
}

describe.skipIf(vits.length === 0)('Conv patch embeddings of the zoo ViTs', () => {
  for (const v of vits) {
    const file = path.join(ROOT, v.file);
    const calib = path.join(ROOT, v.data, 'calib');

    it(`${v.name}: the MatMul over patches computes the Conv (onnxruntime, within 1e-5 relative)`, async () => {
      const original = loadModel(file);
      const rewritten = original.clone();
      const [conv] = findConvs(rewritten).convs;
      expect(conv?.patch, conv?.notPatch).toBeDefined();
      const l = convToPatchMatMul(rewritten.graph, conv!);
      expect(l.inFeatures).toBe(conv!.k);
      expect(rewritten.graph.nodes.filter((n) => n.opType === 'Conv')).toHaveLength(0);
      const saved = path.join(dir, `${v.name}-patch.onnx`);
      saveModel(rewritten, saved);
      // the Conv output tensor keeps its name: compare it too, not only the logits
      const convOut = conv!.node.output(0).name;
      const [batch] = batches(bindDataset(openDataset(calib), original), 16);
      const sa = await Session.create(original, { expose: [convOut] });
      const sb = await Session.create(loadModel(saved), { expose: [convOut] });
      const a = await sa.run(batch!.feeds);
      const b = await sb.run(batch!.feeds);
      await sa.release();
      await sb.release();
      expect(relativeError(a, b)).toBeLessThanOrEqual(1e-5);
    });

    it(`${v.name} w8a8: the patch embedding runs as an integer kernel, output and top-1 within the limits`, async () => {
      const { model, summary } = await run(file, calib, { scheme: 'w8a8' });
      const name = summary.convs[0]?.name;
      expect(summary.convs).toEqual([{ name, form: 'patch MatMul' }]);
      expect(summary.skipped).toEqual([]);
      // nothing computes in float on a constant weight: a Conv left float fails here
      expect(floatWeightOps(model)).toEqual([]);
      const g = await optimized(model);
      expect(g.nodes.filter((n) => /Conv/.test(n.opType))).toEqual([]);
      expect(g.nodes.some((n) => n.opType === 'MatMulIntegerToFloat' && n.input(1)?.name === `${name}.weight_quantized`)).toBe(true);
      const patch = summary.layers.find((l) => l.name === name)!;
      expect(patch.bits).toBe(8);
      expect(patch.sqnr).toBeGreaterThan(floors.w8a8);
      expect(summary.outputs[0]!.sqnr).toBeGreaterThan(floors.w8a8);
      if (v.trained) {
        // tests/fixtures/quantized-fixtures.test.ts: top-1 may fall by at most 0.005
        const evalData = openDataset(path.join(ROOT, v.data, 'eval'));
        const before = (await evaluate(loadModel(file), evalData, { metrics: ['top1'], batchSize: 64 })).metrics.top1!;
        const after = (await evaluate(model, evalData, { metrics: ['top1'], batchSize: 64 })).metrics.top1!;
        expect(before - after).toBeLessThanOrEqual(0.005);
      }
      const saved = path.join(dir, `${v.name}-w8a8.onnx`);
      saveModel(model, saved);
      const [batch] = batches(bindDataset(openDataset(calib), model), 2);
      const [x, y] = await runBoth(model, loadModel(saved), batch!.feeds);
      expect(sameOutputs(x, y)).toBe(true);
    });

    it(`${v.name} dynamic and w4: DynamicQuantizeMatMul / MatMulNBits on the patches`, async () => {
      for (const [scheme, op, suffix] of [
        ['dynamic', /^(DynamicQuantizeMatMul|MatMulIntegerToFloat)$/, 'weight_quantized'],
        ['w4', /^MatMulNBits$/, 'weight_packed'],
      ] as const) {
        const { model, summary } = await run(file, calib, { scheme });
        const name = summary.convs[0]!.name;
        expect(summary.convs[0]!.form).toBe('patch MatMul');
        expect(floatWeightOps(model)).toEqual([]);
        const g = await optimized(model);
        expect(g.nodes.filter((n) => /Conv/.test(n.opType))).toEqual([]);
        expect(g.nodes.some((n) => op.test(n.opType) && n.inputs.some((i) => i?.name === `${name}.${suffix}`)), scheme).toBe(true);
        expect(summary.layers.find((l) => l.name === name)!.bits).toBe(scheme === 'w4' ? 4 : 8);
        expect(summary.outputs[0]!.sqnr, scheme).toBeGreaterThan(floors[scheme]);
      }
    });
  }
});

const tv = vits.find((v) => v.name === 'tv_vit_mnist');
describe.skipIf(!tv)('Conv patch embedding: GPTQ, FlexRound, low-bit static, exclusion', () => {
  const file = path.join(ROOT, tv?.file ?? '');
  const calib = path.join(ROOT, tv?.data ?? '', 'calib');

  it('w4 with GPTQ and with FlexRound lowers the patch layer error below round to nearest', async () => {
    const rtn = await run(file, calib, { scheme: 'w4' });
    const gptq = await run(file, calib, { scheme: 'w4', method: 'gptq' });
    const flex = await run(file, calib, { scheme: 'w4', method: 'flexround', flexround: { mode: 'layer', iters: 40 } });
    const sqnr = (s: QuantizeSummary): number => s.layers.find((l) => l.name === 'conv_proj')!.sqnr!;
    expect(sqnr(gptq.summary)).toBeGreaterThan(sqnr(rtn.summary));
    expect(flex.summary.flexround!.units.map((u) => u.unit)).toContain('conv_proj');
    expect(sqnr(flex.summary)).toBeGreaterThan(sqnr(rtn.summary));
  });

  it('w4a4 keeps the patch embedding at 8-bit weights and input; --exclude keeps it float and says so', async () => {
    const low = await run(file, calib, { scheme: 'w4a4' });
    expect(low.summary.layers.find((l) => l.name === 'conv_proj')!.bits).toBe(8);
    // the blocks' linears at 4 bits; outside the blocks (the head) 8, outerBits' default
    const inBlocks = low.summary.layers.filter((l) => l.name.includes('encoder_layer'));
    expect(inBlocks.length).toBeGreaterThan(0);
    expect(inBlocks.every((l) => l.bits === 4)).toBe(true);
    // 4-bit inputs are clipped to 16 codes after their QuantizeLinear; the patches' is not
    const q = low.model.graph.nodes.find((n) => n.opType === 'QuantizeLinear' && n.input(0)?.name === 'conv_proj.patches')!;
    expect(q).toBeDefined();
    expect(q.output(0).consumers().some((n) => n.opType === 'Clip')).toBe(false);
    expect(low.model.graph.nodes.filter((n) => n.opType === 'Clip').length).toBeGreaterThan(0);
    const ex = await run(file, calib, { scheme: 'w8a8', exclude: ['conv_proj'] });
    expect(ex.summary.excluded).toEqual([{ name: 'conv_proj', pattern: 'conv_proj' }]);
    expect(floatWeightOps(ex.model)).toEqual(['/conv_proj/Conv']);
    const fl = await run(file, calib, { scheme: 'w4', layerBits: { conv_proj: 'float' } });
    expect(fl.summary.excluded.map((e) => e.name)).toEqual(['conv_proj']);
  });
});

// ---- a Conv that is not a patch embedding (3x3, stride 1, padded) ----

function convNet(): Model {
  const g = new Graph('convnet');
  const x = g.addInput('image', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 3, 8, 8] });
  let s = 7;
  const rnd = (): number => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
  const w = g.addInitializer(Tensor.from('stem.weight', DataType.FLOAT, [8, 3, 3, 3], Array.from({ length: 216 }, () => rnd() * 0.3)));
  const b = g.addInitializer(Tensor.from('stem.bias', DataType.FLOAT, [8], Array.from({ length: 8 }, () => rnd() * 0.1)));
  const conv = g.addNode('Conv', [x, w, b], ['stem_out'], { name: '/stem/Conv', attributes: { kernel_shape: { type: 'ints', value: [3, 3] }, pads: { type: 'ints', value: [1, 1, 1, 1] } } });
  const relu = g.addNode('Relu', [conv.output(0)], ['stem_relu']);
  const flat = g.addNode('Reshape', [relu.output(0), g.addInitializer(Tensor.from('flat_shape', DataType.INT64, [2], [0, 512]))], ['flat']);
  const fc = g.addNode('MatMul', [flat.output(0), g.addInitializer(Tensor.from('fc.weight', DataType.FLOAT, [512, 4], Array.from({ length: 2048 }, () => rnd() * 0.05)))], ['fc_out'], { name: '/fc/MatMul' });
  const y = g.addNode('Add', [fc.output(0), g.addInitializer(Tensor.from('fc.bias', DataType.FLOAT, [4], [0.1, -0.1, 0.2, 0]))], ['logits']).output(0);
  y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 4] };
  g.outputs.push(y);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

describe('a Conv that is not a patch embedding', () => {
  const convDir = path.join(dir, 'convnet');
  const modelFile = path.join(convDir, 'model.onnx');
  const calib = path.join(convDir, 'calib');
  fs.mkdirSync(convDir, { recursive: true });
  saveModel(convNet(), modelFile);
  let s = 11;
  const rnd = (): number => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
  writeSamples(calib, () => ({ image: { dtype: DataType.FLOAT, dims: [1, 3, 8, 8], data: Float32Array.from({ length: 192 }, () => rnd()) } }), 16);

  it('w8a8 writes it as QDQ that onnxruntime fuses into QLinearConv', async () => {
    const { model, summary } = await run(modelFile, calib, { scheme: 'w8a8' });
    expect(summary.convs).toEqual([{ name: 'stem', form: 'QLinearConv' }]);
    expect(summary.layers.map((l) => l.name)).toEqual(['stem', 'fc']);
    const g = await optimized(model);
    expect(g.nodes.filter((n) => n.opType === 'QLinearConv')).toHaveLength(1);
    expect(g.nodes.filter((n) => n.opType === 'Conv' || n.opType === 'FusedConv')).toHaveLength(0);
    expect(summary.layers[0]!.sqnr).toBeGreaterThan(floors.w8a8);
    expect(summary.outputs[0]!.sqnr).toBeGreaterThan(floors.w8a8);
  });

  it('dynamic and w4 keep it float and the report says why', async () => {
    for (const scheme of ['dynamic', 'w4'] as const) {
      const { model, summary } = await run(modelFile, calib, { scheme });
      expect(summary.convs).toEqual([]);
      expect(summary.skipped).toHaveLength(1);
      expect(summary.skipped[0]!.name).toBe('stem');
      expect(summary.skipped[0]!.reason).toMatch(/not a patch embedding .*stride \[1,1\] is not its kernel \[3,3\].*kept in float/);
      expect(floatWeightOps(model)).toEqual(['/stem/Conv']);
    }
  });
});
