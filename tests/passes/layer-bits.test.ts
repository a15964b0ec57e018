import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { UserError } from '../../src/errors.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { quantize, type QuantizePassOptions, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { fromRecipe, parseRecipe } from '../../src/pipeline/recipe.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { builtFixture } from '../quantize/built-fixture.js';

const { dir, built, modelFile, calibDir } = builtFixture({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 16, opset: 17, mask: 'additive-input', seed: 5 }, 16);

async function run(options: QuantizePassOptions) {
  const { model, report } = await pipeline([quantize(options)]).apply(loadModel(modelFile), { calibration: openDataset(calibDir) });
  return { model, summary: report.passes[0]!.summary as unknown as QuantizeSummary, entries: report.entries };
}

/** Bits of each MatMulNBits node, keyed by the layer name its weight initializer carries. */
function nbitsByLayer(model: Model): Map<string, number> {
  const out = new Map<string, number>();
  for (const n of model.graph.nodes) {
    if (n.opType !== 'MatMulNBits') continue;
    out.set(n.input(1)!.name.replace(/\.weight_packed$/, ''), n.intAttr('bits', 0));
  }
  return out;
}

/** Layers still computed as a float MatMul/Gemm on a constant weight. */
function floatLayers(model: Model): number {
  return model.graph.nodes.filter((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && n.input(1)?.initializer?.dtype === DataType.FLOAT).length;
}

describe('quantize layerBits', () => {
  it('writes 4-bit, 8-bit and float layers in one weight-only model, which runs in onnxruntime', async () => {
    const plain = await run({ scheme: 'w4' });
    const names = plain.summary.layers.map((l) => l.name);
    const eight = names.filter((n) => n.startsWith('blocks.1.'));
    expect(eight.length).toBeGreaterThan(1);
    const floatOne = names.find((n) => n.startsWith('blocks.0.'))!;
    const { model, summary, entries } = await run({ scheme: 'w4', layerBits: { 'blocks.1.*': 8, [floatOne]: 'float' } });
    const bits = nbitsByLayer(model);
    for (const n of names) {
      if (n === floatOne) expect(bits.has(n), n).toBe(false);
      else expect(bits.get(n), n).toBe(eight.includes(n) ? 8 : 4);
    }
    expect(floatLayers(model)).toBe(1);
    expect(summary.layers.find((l) => l.name === eight[0])!.bits).toBe(8);
    expect(summary.excluded).toEqual([{ name: floatOne, pattern: `layerBits ${floatOne}` }]);
    expect(entries.some((e) => e.target === floatOne && /layerBits/.test(e.message))).toBe(true);
    // more bits where asked: a larger model, closer to float than all-4-bit
    expect(summary.weightBytesAfter).toBeGreaterThan(plain.summary.weightBytesAfter);
    expect(summary.outputs[0]!.sqnr).toBeGreaterThan(plain.summary.outputs[0]!.sqnr);
    for (const n of eight) expect(summary.layers.find((l) => l.name === n)!.sqnr!).toBeGreaterThan(plain.summary.layers.find((l) => l.name === n)!.sqnr!);
    // saved and loaded again it runs in onnxruntime with the same outputs
    const file = path.join(dir, 'mixed.onnx');
    saveModel(model, file);
    const [a, b] = await runBoth(model, loadModel(file), built.feeds(2));
    expect(sameOutputs(a, b)).toBe(true);
  });

  it('takes the first matching pattern, and exclude over layerBits', async () => {
    const { model, summary } = await run({ scheme: 'w8', exclude: ['blocks.0.*'], layerBits: { 'blocks.1.*': 4, '*': 8 } });
    for (const l of summary.layers) expect(l.bits, l.name).toBe(l.name.startsWith('blocks.1.') ? 4 : 8);
    expect(summary.layers.some((l) => l.name.startsWith('blocks.0.'))).toBe(false);
    expect([...nbitsByLayer(model).values()].sort()).toEqual(summary.layers.map((l) => l.bits).sort());
  });

  it('names a pattern that matches no layer, and rejects bad bits', async () => {
    await expect(run({ scheme: 'w4', layerBits: { 'blocks.9.*': 8 } })).rejects.toThrow(UserError);
    await expect(run({ scheme: 'w4', layerBits: { 'blocks.1.*': 8, 'blocks.9.*': 8 } })).rejects.toThrow(/layerBits pattern 'blocks\.9\.\*' matches no layer/);
    await expect(run({ scheme: 'w4', layerBits: { 'blocks.1.*': 9 } })).rejects.toThrow(/^pass 'quantize': option 'layerBits': pattern 'blocks\.1\.\*' must map to one of .* not 9$/);
    await expect(run({ scheme: 'dynamic', layerBits: { 'blocks.1.*': 4 } })).rejects.toThrow(/scheme dynamic/);
    await expect(run({ scheme: 'w4', layerBits: { '*': 'float' } })).rejects.toThrow(/nothing is left to quantize/);
  });

  it('recipes accept layerBits (YAML and JSON) with the same checks', async () => {
    const yaml = `passes:\n  - pass: quantize\n    scheme: w4\n    layerBits:\n      'blocks.1.*': 8\n      blocks.0.mlp.*: float\n`;
    const r = parseRecipe(yaml, 'r.yaml');
    expect(r.passes[0]).toEqual({ pass: 'quantize', scheme: 'w4', layerBits: { 'blocks.1.*': 8, 'blocks.0.mlp.*': 'float' } });
    expect(parseRecipe(JSON.stringify(r), 'r.json')).toEqual(r);
    const viaRecipe = await fromRecipe(r).apply(loadModel(modelFile), { calibration: openDataset(calibDir) });
    const direct = await run({ scheme: 'w4', layerBits: { 'blocks.1.*': 8, 'blocks.0.mlp.*': 'float' } });
    expect(nbitsByLayer(viaRecipe.model)).toEqual(nbitsByLayer(direct.model));
    const bad = (layerBits: unknown): (() => unknown) => () => parseRecipe(JSON.stringify({ passes: [{ pass: 'quantize', scheme: 'w4', layerBits }] }), 'r.json');
    expect(bad({ 'blocks.1.*': 16 })).toThrow(/r\.json: passes\[0\]: pass 'quantize': option 'layerBits': pattern 'blocks\.1\.\*' must map to one of .*not 16/);
    expect(bad(['blocks.1.*'])).toThrow(/pass 'quantize': option 'layerBits' must be a mapping/);
    expect(bad({ '/blocks.(/': 8 })).toThrow(/option 'layerBits': pattern \/blocks\.\(\/ is not a valid regular expression/);
    // a pattern that matches nothing is only known against the model: the run names it
    await expect(fromRecipe(bad({ 'nothing.*': 8 })() as never).apply(loadModel(modelFile), { calibration: openDataset(calibDir) })).rejects.toThrow(/'nothing\.\*' matches no layer/);
  });
});
