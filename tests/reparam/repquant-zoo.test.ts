import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel } from '../../src/onnx/index.js';
import { readTensorFile, writeTensorFile } from '../../src/onnx/tensor-file.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import type { QuantizeOptions } from '../../src/quantize/scheme.js';
import { channelGrid, repQuantReparam } from '../../src/reparam/repquant.js';
import { smoothQuant } from '../../src/reparam/smoothquant.js';
import { Session } from '../../src/runtime/session.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { runBoth } from '../helpers/compare.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { relativeError } from './relative-error.js';

const dir = tempDir();

// ---- RepQuant on RMSNorm (Llama-style decoder from the zoo): the zero-point shift without β ----

const llamaFile = path.join(ROOT, 'fixtures', 'zoo', 'llama_moby.onnx');
const llamaCalib = path.join(ROOT, 'calibration', 'zoo', 'llama_moby', 'calib');
const haveLlama = fs.existsSync(llamaFile) && fs.existsSync(llamaCalib);

describe.skipIf(!haveLlama)('RepQuant on RMSNorm (no β): the shift follows the norm as an Add', () => {
  it('folds every RMSNorm, leaves float outputs unchanged, and per-tensor codes of the folded activation equal per-channel codes of the original', async () => {
    const original = loadModel(llamaFile);
    const model = original.clone();
    const bits = 4;
    const r = await repQuantReparam(model, openDataset(llamaCalib), { bits, observer: 'minmax', cacheDir: false });
    expect(r.skipped).toEqual([]);
    expect(r.folded).toHaveLength(5);
    const [batch] = batches(bindDataset(openDataset(llamaCalib), original), 16);
    const [a, b] = await runBoth(original, model, batch!.feeds);
    expect(relativeError(a, b)).toBeLessThanOrEqual(1e-5);

    // independent check: per-channel min/max of each original norm output over the same 16
    // samples (minmax observer) give the per-channel grid; the folded model's tensor that the
    // linears read, quantized with the one per-tensor grid RepQuant returned, must give the same codes
    for (const f of r.folded) {
      const read = [...r.activations.keys()].filter((k) => k !== f.name && r.activations.get(k) === r.activations.get(f.name));
      expect(read.length).toBeGreaterThan(0);
      const so = await Session.create(original, { expose: [f.name] });
      const sf = await Session.create(model, { expose: read });
      const y = (await so.run(batch!.feeds))[f.name]!;
      const outs = await sf.run(batch!.feeds);
      await so.release();
      await sf.release();
      const n = y.dims[y.dims.length - 1]!;
      const yd = y.data as Float32Array;
      const lo = new Float64Array(n).fill(Infinity);
      const hi = new Float64Array(n).fill(-Infinity);
      for (let i = 0; i < yd.length; i++) {
        lo[i % n] = Math.min(lo[i % n]!, yd[i]!);
        hi[i % n] = Math.max(hi[i % n]!, yd[i]!);
      }
      const grid = channelGrid(lo, hi, bits);
      const act = r.activations.get(f.name)!;
      expect(act.scale).toBeCloseTo(Math.fround(grid.scale), 6);
      expect(act.zeroPoint).toBe(grid.zeroPoint);
      for (const name of read) {
        const yp = outs[name]!.data as Float32Array;
        expect(yp.length).toBe(yd.length);
        let mismatches = 0;
        for (let i = 0; i < yd.length; i++) {
          const c = i % n;
          const qc = Math.min(grid.qmax, Math.max(0, Math.round(yd[i]! / grid.scales[c]!) + grid.zeroPoints[c]!));
          const qt = Math.min(grid.qmax, Math.max(0, Math.round(yp[i]! / act.scale) + act.zeroPoint));
          if (qc !== qt) mismatches++;
        }
        // a value within float rounding of a rounding tie may fall either way
        expect(mismatches / yd.length).toBeLessThanOrEqual(1e-3);
      }
    }
    // the shift sits in an Add after each RMSNorm
    expect(model.graph.nodes.filter((n) => n.name.includes('/fold_shift'))).toHaveLength(5);
  });

  it('the quantize pass with RepQuant runs on it: the bias the fold adds to a bias-free linear keeps the linear output\'s name, so every layer is compared with the float model', async () => {
    // before the fold kept the name, the per-layer check asked the unfolded model for
    // '<MatMul output>_biased' and the pass stopped ("the model has no tensor named ... to expose")
    const { report } = await pipeline([quantize({ scheme: 'w8a8', method: 'repquant', cacheDir: false, verifySamples: 4 })]).apply(loadModel(llamaFile), { calibration: openDataset(llamaCalib) });
    const s = report.passes[0]!.summary as unknown as QuantizeSummary;
    expect(s.reparam!.folded).toHaveLength(5);
    expect(s.layers.length).toBeGreaterThan(0);
    for (const l of s.layers) expect(l.sqnr, l.name).toBeGreaterThan(15);
    expect(s.outputs[0]!.sqnr).toBeGreaterThan(20);
  });
});

// ---- the outlier variant of torchvision's VisionTransformer ----

const tvFile = path.join(ROOT, 'fixtures', 'zoo', 'tv_vit_mnist.onnx');
const outlierFile = path.join(ROOT, 'fixtures', 'tv_vit_mnist_outlier.onnx');
const haveTv = fs.existsSync(tvFile) && fs.existsSync(outlierFile);

/**
 * tv_vit_mnist reads vit_mnist's digits with the grey channel replicated to 3 (same split, same
 * 0..1 scale: its own 64 evaluation samples are the first 64 of these). Writing them out gives
 * 500 evaluation samples, so 0.5 point is 2.5 samples, and RepQ-ViT's 32 calibration images.
 */
function threeChannel(split: 'calib' | 'eval', count: number): string {
  const out = path.join(dir, `tv-${split}`);
  for (let i = 0; i < count; i++) {
    const from = path.join(ROOT, 'calibration', 'vit_mnist', split, `test_data_set_${i}`);
    const to = path.join(out, `test_data_set_${i}`);
    fs.mkdirSync(to, { recursive: true });
    const x = readTensorFile(path.join(from, 'input_0.pb'));
    const grey = x.toFloat32();
    const rgb = new Float32Array(grey.length * 3);
    for (let c = 0; c < 3; c++) rgb.set(grey, c * grey.length);
    writeTensorFile(path.join(to, 'input_0.pb'), Tensor.from('pixel_values', DataType.FLOAT, [1, 3, 28, 28], rgb));
    fs.copyFileSync(path.join(from, 'label.pb'), path.join(to, 'label.pb'));
  }
  return out;
}
const calibDir = haveTv ? threeChannel('calib', 32) : '';
const evalDir = haveTv ? threeChannel('eval', 500) : '';

async function quantized(options: QuantizeOptions): Promise<{ model: Model; summary: QuantizeSummary }> {
  const { model, report } = await pipeline([quantize({ cacheDir: false, verifySamples: 4, ...options })]).apply(loadModel(outlierFile), { calibration: openDataset(calibDir) });
  return { model, summary: report.passes[0]!.summary as unknown as QuantizeSummary };
}
const top1 = async (m: Model): Promise<number> => (await evaluate(m, openDataset(evalDir), { metrics: ['top1'], batchSize: 100 })).metrics.top1!;

describe.skipIf(!haveTv)('RepQuant and SmoothQuant on the outlier variant of torchvision VisionTransformer', () => {
  it('the variant computes the same function as tv_vit_mnist', async () => {
    const [batch] = batches(bindDataset(openDataset(calibDir), loadModel(tvFile)), 16);
    const [x, y] = await runBoth(loadModel(tvFile), loadModel(outlierFile), batch!.feeds);
    expect(relativeError(x, y)).toBeLessThanOrEqual(1e-5);
  });

  it('the folds alone (through MHA\'s Transpose and the Shape readers, and the CLS Gather) leave float outputs unchanged (<= 1e-5 relative)', async () => {
    const original = loadModel(outlierFile);
    const [batch] = batches(bindDataset(openDataset(calibDir), original), 16);
    const rq = loadModel(outlierFile);
    const r = await repQuantReparam(rq, openDataset(calibDir), { bits: 8, observer: 'percentile', cacheDir: false });
    const sq = loadModel(outlierFile);
    const s = await smoothQuant(sq, openDataset(calibDir), 0.5, { cacheDir: false });
    for (const res of [r, s]) {
      expect(res.skipped).toEqual([]);
      expect(res.folded).toHaveLength(5);
    }
    for (const m of [rq, sq]) {
      const [x, y] = await runBoth(original, m, batch!.feeds);
      expect(relativeError(x, y)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('w8a8: per-tensor RTN loses, RepQuant stays within 0.5 point of float top-1', async () => {
    const float = await top1(loadModel(outlierFile));
    const rtn = await top1((await quantized({ scheme: 'w8a8' })).model);
    const { model, summary } = await quantized({ scheme: 'w8a8', method: 'repquant' });
    const repq = await top1(model);
    console.log(`tv_vit_mnist_outlier top1 on 500 samples: float ${(100 * float).toFixed(1)}, w8a8 rtn ${(100 * rtn).toFixed(1)}, w8a8 repquant ${(100 * repq).toFixed(1)}`);
    expect(summary.reparam!.folded).toHaveLength(5);
    expect(float - repq).toBeLessThanOrEqual(0.005);
    expect(float - rtn).toBeGreaterThan(0.005);
    // the in_proj MatMul reads the norm output through MHA's Transpose: its input is quantized with the folded per-tensor grid
    const q = model.graph.nodes.filter((n) => n.opType === 'QuantizeLinear' && n.input(0)!.producer()?.opType === 'Transpose');
    expect(q.length).toBe(2);
    for (const n of q) expect(n.input(1)!.initializer!.dims).toEqual([]);
  });
});
