import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Session } from '../../src/runtime/session.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { MetricAccumulator } from '../../src/validate/metrics.js';
import { CLASSES, tinyClassifier, tinySamples, writeTestData } from '../helpers/tiny-classifier.js';
import { tempDir } from '../helpers/tmp.js';

/** onnxruntime's SoftmaxCrossEntropyLoss (mean reduction) as the independent reference. */
async function ortCrossEntropy(scores: Float32Array, dims: number[], labels: BigInt64Array): Promise<number> {
  const g = new Graph('ce');
  const s = g.addInput('scores', { kind: 'tensor', dtype: DataType.FLOAT, shape: dims });
  const l = g.addInput('labels', { kind: 'tensor', dtype: DataType.INT64, shape: dims.slice(0, -1) });
  // the op wants classes on axis 1: [N, C, d1...]
  const perm = dims.length === 3 ? [0, 2, 1] : [0, 1];
  const t = g.addNode('Transpose', [s], ['st'], { attributes: { perm: { type: 'ints', value: perm } } });
  const loss = g.addNode('SoftmaxCrossEntropyLoss', [t.output(0), l], ['loss'], { attributes: { ignore_index: { type: 'int', value: -100 } } });
  g.outputs.push(loss.output(0));
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  const session = await Session.create(m);
  const out = await session.run({ scores: { dtype: DataType.FLOAT, dims, data: scores }, labels: { dtype: DataType.INT64, dims: dims.slice(0, -1), data: labels } });
  await session.release();
  return out.loss!.data[0] as number;
}

describe('MetricAccumulator', () => {
  it('nll matches onnxruntime SoftmaxCrossEntropyLoss within 1e-6, per position, with ignored labels', async () => {
    const dims = [3, 5, 7];
    const scores = Float32Array.from({ length: 105 }, (_, i) => Math.sin(i * 1.7) * 4);
    const labels = BigInt64Array.from({ length: 15 }, (_, i) => BigInt(i % 4 === 3 ? -100 : (i * 3) % 7));
    const acc = new MetricAccumulator();
    acc.add({ dtype: DataType.FLOAT, dims, data: scores }, { dtype: DataType.INT64, dims: [3, 5], data: labels }, 'logits');
    const r = acc.result(['nll', 'perplexity', 'top1']);
    const ref = await ortCrossEntropy(scores, dims, labels);
    expect(Math.abs(r.nll! - ref)).toBeLessThan(1e-6);
    // the reference loss is float32: compare perplexity relatively
    expect(Math.abs(r.perplexity! / Math.exp(ref) - 1)).toBeLessThan(1e-6);
    expect(acc.count).toBe(12); // 15 positions, 3 of them (i % 4 === 3) ignored
    // top1 by the definition, computed directly
    let correct = 0;
    let n = 0;
    for (let p = 0; p < 15; p++) {
      const label = Number(labels[p]);
      if (label < 0) continue;
      const row = [...scores.subarray(p * 7, p * 7 + 7)];
      if (row.indexOf(Math.max(...row)) === label) correct++;
      n++;
    }
    expect(r.top1).toBe(correct / n);
  });

  it('rejects labels whose shape does not fit the output', () => {
    const acc = new MetricAccumulator();
    expect(() => acc.add({ dtype: DataType.FLOAT, dims: [2, 3], data: new Float32Array(6) }, { dtype: DataType.INT64, dims: [3], data: new BigInt64Array(3) }, 'logits')).toThrow(/labels of shape \[3\] do not fit output 'logits' of shape \[2,3\]/);
  });
});

describe('evaluate', () => {
  it('scores a model over a dataset; the same numbers whatever the batch size', async () => {
    const dir = tempDir();
    const { x, labels } = tinySamples(37);
    writeTestData(path.join(dir, 'eval'), x, labels);
    const model = tinyClassifier();
    const ds = openDataset(path.join(dir, 'eval'));
    const a = await evaluate(model, ds, { metrics: ['top1', 'nll'], batchSize: 1 });
    const b = await evaluate(model, ds, { metrics: ['top1', 'nll'], batchSize: 16 });
    expect(a.samples).toBe(37);
    expect(a.metrics.top1).toBe(b.metrics.top1);
    expect(Math.abs(a.metrics.nll! - b.metrics.nll!)).toBeLessThan(1e-6);
    // reference: the classifier computed in float64 here
    const W = model.graph.value('W')!.initializer!.toFloat32();
    const bias = model.graph.value('b')!.initializer!.toFloat32();
    let correct = 0;
    let nll = 0;
    x.forEach((row, i) => {
      const z = Array.from({ length: CLASSES }, (_, c) => row.reduce((s, v, k) => s + v * W[k * CLASSES + c]!, bias[c]!));
      const max = Math.max(...z);
      nll += Math.log(z.reduce((s, v) => s + Math.exp(v - max), 0)) + max - z[labels[i]!]!;
      if (z.indexOf(max) === labels[i]) correct++;
    });
    expect(a.metrics.top1).toBe(correct / 37);
    expect(Math.abs(a.metrics.nll! - nll / 37)).toBeLessThan(1e-5);
  });
});
