import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { log2QuantReference, quantizeSoftmaxLog2 } from '../../src/export/softmax.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { Session } from '../../src/runtime/session.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const vitFile = path.join(ROOT, 'fixtures', 'vit_mnist.onnx');
const have = fs.existsSync(vitFile);
const calibDir = path.join(dir, 'calib16');
if (have) for (let i = 0; i < 16; i++) fs.cpSync(path.join(ROOT, 'calibration/vit_mnist/calib', `test_data_set_${i}`), path.join(calibDir, `test_data_set_${i}`), { recursive: true });

describe('log2 softmax export', () => {
  it('the exported chain computes the log√2 quantizer (reparameterized to log2) exactly', async () => {
    for (const bits of [8, 4]) {
      const g = new Graph('sm');
      const a = g.addInput('a', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 1, 1, 'n'] });
      const v = g.addInput('v', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 1, 'n', 1] });
      const mm = g.addNode('MatMul', [a, v], ['y'], { name: 'pv' });
      g.outputs.push(mm.output(0));
      const m = new Model(g);
      m.opsetImports = new Map([['', 17]]);
      quantizeSoftmaxLog2(g, { softmax: 'sm', pv: 'pv', v: 'v' }, bits);
      const n = 400;
      const probs = Float32Array.from({ length: n }, (_, i) => (i === 0 ? 0 : i === 1 ? 1 : Math.exp(-((i * 0.37) % 40))));
      const s = await Session.create(m);
      let mismatches = 0;
      for (let i = 0; i < n; i++) {
        const onehot = new Float32Array(n);
        onehot[i] = 1;
        const y = (await s.run({ a: { dtype: DataType.FLOAT, dims: [1, 1, 1, n], data: probs }, v: { dtype: DataType.FLOAT, dims: [1, 1, n, 1], data: onehot } })).y!.data as Float32Array;
        const ref = log2QuantReference(probs[i]!, bits);
        if (Math.abs(y[0]! - ref) > 1e-6 * Math.max(ref, 1e-30)) mismatches++;
      }
      await s.release();
      // a float32 log may land on the other side of a .5 tie than the float64 reference, rarely
      expect(mismatches).toBeLessThanOrEqual(2);
      expect(log2QuantReference(0, bits)).toBe(0);
      expect(log2QuantReference(1, bits)).toBe(1);
    }
  });
});

describe.skipIf(!have)('quantize --softmax', () => {
  async function run(softmax: 'uniform' | 'log2') {
    const { model, report } = await pipeline([quantize({ scheme: 'w8a8', method: 'repquant', repquantObserver: 'percentile', softmax, cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration: openDataset(calibDir) });
    return { model, summary: report.passes[0]!.summary as unknown as QuantizeSummary, report };
  }

  it('uniform: 8-bit QDQ on the probabilities and v, run by onnxruntime with integer kernels; the report gives the log2 alternative', async () => {
    const { model, summary, report } = await run('uniform');
    expect(summary.softmax!.mode).toBe('uniform');
    expect(summary.softmax!.attentions).toBe(4);
    expect(summary.softmax!.alternative.mode).toBe('log2');
    expect(summary.softmax!.alternative.outputSqnr).toBeGreaterThan(10);
    expect(report.entries.some((e) => /softmax of 4 attention\(s\) written in the uniform/.test(e.message))).toBe(true);
    const opt = path.join(dir, 'uniform-opt.onnx');
    const s = await Session.create(model, { optimizedModelPath: opt });
    await s.release();
    const ops = loadModel(opt).graph.nodes;
    // the four probabilities · v MatMuls run as integer kernels too
    // (by the quantized operand: onnxruntime merges equal scalar scales, so the patch embedding's 1/255 may be named after a Softmax)
    const pv = ops.filter((n) => (n.opType === 'MatMulIntegerToFloat' || n.opType === 'QLinearMatMul') && n.input(0)?.name.includes('Softmax'));
    expect(pv).toHaveLength(4);
    expect(ops.filter((n) => n.opType === 'MatMul')).toHaveLength(0);
  });

  it('log2: runs in onnxruntime, round-trips, and scores what the simulation scores', async () => {
    const { model, summary } = await run('log2');
    expect(summary.softmax!.mode).toBe('log2');
    expect(model.graph.nodes.filter((n) => n.opType === 'Log')).toHaveLength(4);
    const file = path.join(dir, 'log2.onnx');
    saveModel(model, file);
    const ev = openDataset(path.join(ROOT, 'calibration/vit_mnist/eval'));
    const a = await evaluate(model, ev, { metrics: ['top1'], batchSize: 100 });
    const b = await evaluate(loadModel(file), ev, { metrics: ['top1'], batchSize: 100 });
    expect(b.metrics.top1).toBe(a.metrics.top1);
    expect(a.metrics.top1).toBeGreaterThan(0.95);
  });
});
