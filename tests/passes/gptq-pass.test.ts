// gptq() as a pass in chains: followed by a writer it leaves its levels in the plan (deferred),
// and quantize or flexround write them; a weight changed in between, a grid that disagrees, or a
// reparameterization after it is refused in one sentence before anything is written.
import { describe, expect, it } from 'vitest';
import { flexRound, gptq, loadModel, pipeline, prune, quantize, smoothQuant, type DecisionSummary, type Pass, type QuantizeSummary } from '../../src/index.js';
import { builtFixture } from '../quantize/built-fixture.js';
import { initializers, vitCalibration, vitFile } from './chain-helpers.js';

const { modelFile, calibration } = builtFixture({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 16, opset: 17, mask: 'additive-input', seed: 7 }, 16);
const opts = { cacheDir: false as const, verifySamples: 4 };

describe('gptq() pass in chains', () => {
  it('gptq → quantize writes what gptq alone writes; gptq → flexround with 0 steps writes GPTQ’s levels (FlexRound starts from them)', async () => {
    const alone = await pipeline([gptq({ bits: 3, ...opts })]).apply(loadModel(modelFile), { calibration });
    const thenQuantize = await pipeline([gptq({ bits: 3, ...opts }), quantize({ scheme: 'w3', ...opts })]).apply(loadModel(modelFile), { calibration });
    expect(initializers(thenQuantize.model)).toEqual(initializers(alone.model));
    const deferred = thenQuantize.report.passes[0]!;
    expect(deferred.pass).toBe('gptq');
    expect(deferred.modified).toBe(false);
    expect((deferred.summary as DecisionSummary).deferred).toBe(true);
    expect((deferred.summary as DecisionSummary).layers.length).toBe(12);
    // summaryOf gives the run that wrote the model: this gptq run wrote nothing
    expect(thenQuantize.report.summaryOf('gptq')).toBeUndefined();
    expect(thenQuantize.report.summaryOf('quantize')!.chain).toEqual(['gptq']);
    expect(thenQuantize.report.summaryOf('quantize')!.method).toBe('gptq');

    const chain = await pipeline([gptq({ bits: 3, ...opts }), flexRound({ bits: 3, iters: 0, ...opts })]).apply(loadModel(modelFile), { calibration });
    expect(initializers(chain.model)).toEqual(initializers(alone.model));
    const s = chain.report.summaryOf('flexround')!;
    expect(s.chain).toEqual(['gptq', 'flexround']);
    expect(s.flexround!.startedFromPlan).toBe(12);
    // FlexRound alone starts from GPTQ's levels by default (it runs GPTQ first), from round to nearest with start 'rtn'
    const byDefault = await pipeline([flexRound({ bits: 3, iters: 0, ...opts })]).apply(loadModel(modelFile), { calibration });
    expect(initializers(byDefault.model)).toEqual(initializers(alone.model));
    expect(byDefault.report.summaryOf('flexround')!.chain).toEqual(['gptq', 'flexround']);
    const rtnStart = await pipeline([flexRound({ bits: 3, iters: 0, start: 'rtn', ...opts })]).apply(loadModel(modelFile), { calibration });
    expect(initializers(rtnStart.model)).not.toEqual(initializers(alone.model));
    expect(rtnStart.report.summaryOf('flexround')!.chain).toEqual(['flexround']);
  });

  it('gptq → flexround learns from GPTQ’s start: each block starts below round to nearest’s error', async () => {
    // 256 calibration tokens are 2 per input of the MLP's 128: learning needs the data check off
    const r = await pipeline([gptq({ bits: 3, ...opts }), flexRound({ bits: 3, iters: 20, lr: 5e-3, minTokensPerInput: 0, ...opts })]).apply(loadModel(modelFile), { calibration });
    const alone = await pipeline([flexRound({ bits: 3, iters: 20, lr: 5e-3, start: 'rtn', ...opts })]).apply(loadModel(modelFile), { calibration });
    const blocks = r.report.summaryOf('flexround')!.flexround!.units.filter((u) => u.unit.startsWith('block '));
    const rtnStart = alone.report.summaryOf('flexround')!.flexround!.units.filter((u) => u.unit.startsWith('block '));
    expect(blocks).toHaveLength(2);
    // block 0 sees the same inputs in both runs: its starting error is GPTQ's, below round to nearest's
    expect(blocks[0]!.lossBefore).toBeLessThan(rtnStart[0]!.lossBefore);
    for (const b of blocks) expect(Math.min(b.lossAfter, b.lossBefore)).toBeLessThanOrEqual(b.lossBefore);
    expect(r.report.entries.some((e) => e.pass === 'quantize' && /starts 12 of 12 layer\(s\) from the levels gptq decided/.test(e.message))).toBe(true);
  });

  it('with too few calibration tokens per input, FlexRound keeps GPTQ’s levels (the same bytes), says why, and still learns from round to nearest', async () => {
    const alone = await pipeline([gptq({ bits: 3, ...opts })]).apply(loadModel(modelFile), { calibration });
    // 16 samples of 16 tokens: 256 tokens, 2 per input of the widest linear (the MLP's 128); the default asks for 8
    const r = await pipeline([flexRound({ bits: 3, iters: 20, lr: 5e-3, ...opts })]).apply(loadModel(modelFile), { calibration });
    expect(initializers(r.model)).toEqual(initializers(alone.model));
    const blocks = r.report.summaryOf('flexround')!.flexround!.units.filter((u) => u.unit.startsWith('block '));
    expect(blocks.map((b) => [b.unit, b.kept, b.notLearned])).toEqual([0, 1].map((i) => [`block ${i}`, 'initial', '256 calibration tokens, 2.0 per input of its widest linear (128); learning away from the start needs 8']));
    expect(r.report.entries.some((e) => /^flexround block 1: kept the start, not learned: 256 calibration tokens/.test(e.message))).toBe(true);
    // 2 tokens per input are enough at a threshold of 2: the blocks learn (or keep the start by the loss), with no such note
    const two = await pipeline([flexRound({ bits: 3, iters: 20, lr: 5e-3, minTokensPerInput: 2, ...opts })]).apply(loadModel(modelFile), { calibration });
    expect(two.report.summaryOf('flexround')!.flexround!.units.filter((u) => u.unit.startsWith('block ') && u.notLearned === undefined)).toHaveLength(2);
    // from round to nearest the check does not apply: the blocks learn
    const rtn = await pipeline([flexRound({ bits: 3, iters: 20, lr: 5e-3, start: 'rtn', ...opts })]).apply(loadModel(modelFile), { calibration });
    const rtnBlocks = rtn.report.summaryOf('flexround')!.flexround!.units.filter((u) => u.unit.startsWith('block '));
    expect(rtnBlocks.every((b) => b.notLearned === undefined && b.lossAfter < b.lossBefore)).toBe(true);
  });

  it('refuses a decision whose weight changed, a grid that disagrees, a writer that would drop it (fp16), and a reparameterization after it', async () => {
    const pruned = pipeline([gptq({ bits: 4, ...opts }), prune({ method: 'magnitude', ratio: 0.25 }), quantize({ scheme: 'w4', ...opts })]).apply(loadModel(modelFile), { calibration });
    await expect(pruned).rejects.toThrow(/^pass 'quantize': the gptq decision for layer '.+' \(pass 'gptq'\) was made on a (weight '.+' that a later pass has changed|layer that a later pass has removed or replaced); run gptq after the passes that change weights/);
    const bits = pipeline([gptq({ bits: 4, ...opts }), quantize({ scheme: 'w3', ...opts })]).apply(loadModel(modelFile), { calibration });
    await expect(bits).rejects.toThrow(/^pass 'quantize': layer '.+': pass 'gptq' decided it on a 4-bit symmetric, 32 inputs per scale, mse search grid, but pass 'quantize' \(scheme w3\) uses a 3-bit symmetric, 32 inputs per scale, mse search grid; give both passes the same bits/);
    const fp16 = pipeline([gptq({ bits: 4, ...opts }), quantize({ scheme: 'fp16', ...opts })]).apply(loadModel(modelFile), { calibration });
    await expect(fp16).rejects.toThrow(/^pass 'quantize': scheme fp16 writes no integer weights, so the gptq decisions of pass 'gptq' \(12 layer\(s\)\) would be lost/);
    const reparam = pipeline([gptq({ bits: 4, aBits: 8, ...opts }), smoothQuant({ cacheDir: false }), quantize({ scheme: 'w8a8', weightBits: 4, ...opts })]).apply(loadModel(modelFile), { calibration });
    await expect(reparam).rejects.toThrow(/^pass 'smoothquant': smoothquant changes the weights that pass 'gptq' already decided \(12 layer\(s\), '.+' first\); run smoothquant before gptq$/);
  });

  it('a decision survives passes that change no weight, also on a patch embedding whose rewritten weight is named anew by each graph', async () => {
    // a pass that changes nothing but takes a name, so the next new name in this graph differs from the one a copy would give
    const takeAName: Pass = { name: 'take-a-name', run: (m) => (m.graph.uniqueName(m.graph.initializers[0]!.name), { model: m, modified: false }) };
    const calib = vitCalibration(8);
    const alone = await pipeline([gptq({ bits: 4, ...opts })]).apply(loadModel(vitFile), { calibration: calib });
    const chain = await pipeline([gptq({ bits: 4, ...opts }), takeAName, quantize({ scheme: 'w4', ...opts })]).apply(loadModel(vitFile), { calibration: calib });
    const s = chain.report.summaryOf('quantize')!;
    expect(s.convs.map((c) => c.form)).toContain('patch MatMul');
    expect(chain.report.entries.some((e) => /from the plan: \d+ layer\(s\) decided by gptq; 0 by round to nearest/.test(e.message))).toBe(true);
    const [x, y] = [alone, chain].map((r) => r.model.graph.initializers.map((v) => Buffer.from(v.initializer!.bytes).toString('base64')).sort());
    expect(y).toEqual(x);
  });
});
