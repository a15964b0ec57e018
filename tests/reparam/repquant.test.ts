import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import type { QuantizeOptions } from '../../src/quantize/scheme.js';
import { channelGrid, gridFold, repQuantReparam } from '../../src/reparam/repquant.js';
import { smoothQuant } from '../../src/reparam/smoothquant.js';
import { Session } from '../../src/runtime/session.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { cli } from '../helpers/cli.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { relativeError } from './relative-error.js';

const dir = tempDir();
const outlierFile = path.join(ROOT, 'fixtures', 'vit_mnist_outlier.onnx');
const vitFile = path.join(ROOT, 'fixtures', 'vit_mnist.onnx');
const have = fs.existsSync(outlierFile) && fs.existsSync(vitFile);
// 32 calibration images, as RepQ-ViT calibrates on one batch of 32
const calibDir = path.join(dir, 'calib32');
if (have) {
  for (let i = 0; i < 32; i++) fs.cpSync(path.join(ROOT, 'calibration/vit_mnist/calib', `test_data_set_${i}`), path.join(calibDir, `test_data_set_${i}`), { recursive: true });
}
const evalData = () => openDataset(path.join(ROOT, 'calibration/vit_mnist/eval'));

async function quantized(file: string, options: QuantizeOptions): Promise<{ model: Model; summary: QuantizeSummary }> {
  // w4a4 RTN on the outlier fixture is broken on purpose (RepQuant is what repairs it): no quality floor here
  const { model, report } = await pipeline([quantize({ cacheDir: false, verifySamples: 4, ...options })]).apply(loadModel(file), { calibration: openDataset(calibDir), floor: false });
  return { model, summary: report.passes[0]!.summary as unknown as QuantizeSummary };
}
async function integerKernels(m: Model): Promise<number> {
  const opt = path.join(dir, `opt-${Math.random().toString(36).slice(2)}.onnx`);
  const s = await Session.create(m, { optimizedModelPath: opt });
  await s.release();
  return loadModel(opt).graph.nodes.filter((n) => n.opType === 'MatMulIntegerToFloat' || n.opType === 'QLinearMatMul').length;
}
const top1 = async (m: Model): Promise<number> => (await evaluate(m, evalData(), { metrics: ['top1'], batchSize: 100 })).metrics.top1!;

describe('RepQuant grid reparameterization', () => {
  it('per-tensor codes of the folded activation equal per-channel codes of the original (integer zero point)', () => {
    let seed = 11;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const n = 16;
    const lo = Array.from({ length: n }, (_, c) => -(0.1 + rand()) * (c === 3 ? 80 : 1));
    const hi = Array.from({ length: n }, (_, c) => (0.1 + 2 * rand()) * (c === 9 ? 50 : 1));
    for (const bits of [8, 6, 4]) {
      const grid = channelGrid(lo, hi, bits);
      expect(Number.isInteger(grid.zeroPoint)).toBe(true);
      expect(grid.zeroPoint).toBeGreaterThanOrEqual(0);
      expect(grid.zeroPoint).toBeLessThanOrEqual(grid.qmax);
      const { scale: r, shift: t } = gridFold(grid);
      let mismatches = 0;
      for (let k = 0; k < 2000; k++) {
        const c = k % n;
        const y = lo[c]! + (hi[c]! - lo[c]!) * (1.2 * rand() - 0.1);
        const yp = (y - t[c]!) / r[c]!;
        const qc = Math.min(grid.qmax, Math.max(0, Math.round(y / grid.scales[c]!) + grid.zeroPoints[c]!));
        const qt = Math.min(grid.qmax, Math.max(0, Math.round(yp / grid.scale) + grid.zeroPoint));
        // the dequantized values agree too, up to the factor r that the next weights absorb
        if (qc !== qt) mismatches++;
        else expect(Math.abs((qt - grid.zeroPoint) * grid.scale * r[c]! + t[c]! - (qc - grid.zeroPoints[c]!) * grid.scales[c]!)).toBeLessThan(1e-9 * (hi[c]! - lo[c]!) * 1e3);
      }
      // ties of round() may fall either way after the float shift; codes out of the per-channel range clamp alike
      expect(mismatches).toBeLessThanOrEqual(2);
    }
  });
});

describe.skipIf(!have)('RepQuant and SmoothQuant on the outlier fixture', () => {
  it('the outlier fixture computes the same function as vit_mnist, with post-LN ranges 30-100x the others', async () => {
    const a = loadModel(vitFile);
    const b = loadModel(outlierFile);
    const [batch] = batches(bindDataset(openDataset(calibDir), a), 16);
    const [x, y] = await runBoth(a, b, batch!.feeds);
    expect(relativeError(x, y)).toBeLessThanOrEqual(1e-5);
  });

  it('the reparameterizations alone leave float outputs unchanged (<= 1e-5 relative)', async () => {
    const original = loadModel(outlierFile);
    const [batch] = batches(bindDataset(openDataset(calibDir), original), 16);
    const rq = loadModel(outlierFile);
    const r = await repQuantReparam(rq, openDataset(calibDir), { bits: 4, observer: 'percentile', cacheDir: false });
    // the 8 block norms, and ln_f, which the classifier reads through the CLS Gather
    expect(r.folded).toHaveLength(9);
    // the block norms carry the 30-100x channels; ln_f has none
    for (const f of r.folded) if (!f.name.startsWith('/ln_f/')) expect(f.maxRatio / f.minRatio).toBeGreaterThan(10);
    const sq = loadModel(outlierFile);
    const s = await smoothQuant(sq, openDataset(calibDir), 0.5, { cacheDir: false });
    expect(s.folded).toHaveLength(9);
    for (const m of [rq, sq]) {
      const [x, y] = await runBoth(original, m, batch!.feeds);
      expect(relativeError(x, y)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('w8a8: per-tensor RTN loses clearly, RepQuant stays within 0.5 points of float, SmoothQuant recovers too', async () => {
    const float = await top1(loadModel(outlierFile));
    const rtnModel = (await quantized(outlierFile, { scheme: 'w8a8' })).model;
    const rtn = await top1(rtnModel);
    const { model: rq, summary } = await quantized(outlierFile, { scheme: 'w8a8', method: 'repquant' });
    const sq = await top1((await quantized(outlierFile, { scheme: 'w8a8', method: 'smoothquant' })).model);
    const repq = await top1(rq);
    expect(float - rtn).toBeGreaterThan(0.05);
    expect(float - repq).toBeLessThanOrEqual(0.005);
    expect(float - sq).toBeLessThanOrEqual(0.01);
    expect(summary.reparam!.folded).toHaveLength(9);
    expect(summary.reparam!.skipped).toEqual([]);
    // the folded activations are quantized per tensor: scalar scale, integer uint8 zero point
    // (ln_f's is the CLS token its Gather selects, what the classifier reads)
    for (const name of summary.reparam!.folded) {
      const q = rq.graph.nodes.find((n) => n.opType === 'QuantizeLinear' && (n.input(0)!.name === name || n.input(0)!.producer()?.input(0)?.name === name))!;
      expect(q.input(1)!.initializer!.dims).toEqual([]);
      expect(q.input(2)!.initializer!.toNumbers()[0]).toSatisfy(Number.isInteger);
    }
    // onnxruntime runs as many linears with integer kernels as in the plain w8a8 model
    expect(await integerKernels(rq)).toBe(await integerKernels(rtnModel));
    expect(await integerKernels(rq)).toBeGreaterThanOrEqual(summary.layers.length - 1);
    // and it round-trips
    const file = path.join(dir, 'rq.onnx');
    saveModel(rq, file);
    const [batch] = batches(bindDataset(openDataset(calibDir), rq), 8);
    const [x, y] = await runBoth(rq, loadModel(file), batch!.feeds);
    expect(sameOutputs(x, y)).toBe(true);
  });

  it('w4a4: activation codes are clipped to 4 bits, RepQuant beats RTN', async () => {
    const rtn = await quantized(outlierFile, { scheme: 'w4a4' });
    const rq = await quantized(outlierFile, { scheme: 'w4a4', method: 'repquant' });
    for (const { model } of [rtn, rq]) {
      const clips = model.graph.nodes.filter((n) => n.opType === 'Clip' && n.input(0)?.producer()?.opType === 'QuantizeLinear');
      expect(clips.length).toBeGreaterThan(0);
      for (const c of clips) expect(c.input(2)!.initializer!.toNumbers()[0]).toBe(15);
    }
    // the patch embedding stays at 8 bits (docs/quantize.md), every other layer is at 4
    const patch = rq.summary.convs.map((c) => c.name);
    expect(patch).toEqual(['patch_embed']);
    expect(rq.summary.layers.filter((l) => !patch.includes(l.name)).every((l) => l.bits === 4)).toBe(true);
    expect(rq.summary.layers.find((l) => l.name === 'patch_embed')!.bits).toBe(8);
    expect(await top1(rq.model)).toBeGreaterThan((await top1(rtn.model)) + 0.05);
  });
});

describe.skipIf(!have)('quantize CLI: --method', () => {
  it('repquant at w6a6 with GPTQ writes a model; smoothquant with a weight-only scheme or a bad alpha is exit 2', () => {
    const out = path.join(dir, 'cli-rq.onnx');
    const r = cli('quantize', outlierFile, '-o', out, '--calib', calibDir, '--scheme', 'w6a6', '--method', 'repquant', '--repquant-bounds', 'percentile', '--reconstruct', 'gptq', '--no-cache', '--json');
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.method).toBe('repquant');
    expect(j.activationBits).toBe(6);
    expect(j.reconstruct).toBe('gptq');
    expect(j.report.some((e: { message: string }) => /GPTQ \(damping [^)]*\) of \d+ weight/.test(e.message))).toBe(true);
    expect(j.reparam.folded).toHaveLength(9);
    expect(fs.existsSync(out)).toBe(true);
    const bad = cli('quantize', outlierFile, '-o', path.join(dir, 'x.onnx'), '--calib', calibDir, '--scheme', 'w4', '--method', 'smoothquant');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/needs a static scheme/);
    expect(cli('quantize', outlierFile, '-o', path.join(dir, 'x.onnx'), '--calib', calibDir, '--method', 'smoothquant', '--alpha', '2').stderr).toMatch(/--alpha must be/);
    // flexround learns the rounding itself: asking for GPTQ reconstruction on top is refused
    const both = cli('quantize', outlierFile, '-o', path.join(dir, 'x.onnx'), '--calib', calibDir, '--scheme', 'w4', '--method', 'flexround', '--reconstruct', 'gptq');
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/does not combine with --reconstruct gptq/);
  });
});
