import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { writeTensorFile } from '../../src/onnx/tensor-file.js';

export const FEATURES = 6;
export const CLASSES = 3;

/** logits = x @ W + b with fixed weights: small enough to check results by hand. */
export function tinyClassifier(): Model {
  const g = new Graph('tiny');
  const x = g.addInput('features', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', FEATURES] });
  const w = g.addInitializer(Tensor.from('W', DataType.FLOAT, [FEATURES, CLASSES], Array.from({ length: FEATURES * CLASSES }, (_, i) => Math.sin(i + 1))));
  const b = g.addInitializer(Tensor.from('b', DataType.FLOAT, [CLASSES], [0.1, -0.2, 0.05]));
  const mm = g.addNode('MatMul', [x, w], ['xw']);
  const y = g.addNode('Add', [mm.output(0), b], ['logits']).output(0);
  y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', CLASSES] };
  g.outputs.push(y);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/** Deterministic pseudo-random features and labels. */
export function tinySamples(n: number): { x: Float32Array[]; labels: number[] } {
  let s = 12345;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const x = Array.from({ length: n }, () => Float32Array.from({ length: FEATURES }, rnd));
  return { x, labels: x.map((_, i) => i % CLASSES) };
}

/** Writes samples in the ONNX test-data layout. */
export function writeTestData(dir: string, x: Float32Array[], labels: number[] | undefined, name = 'features'): void {
  x.forEach((row, i) => {
    const d = path.join(dir, `test_data_set_${i}`);
    fs.mkdirSync(d, { recursive: true });
    writeTensorFile(path.join(d, 'input_0.pb'), Tensor.from(name, DataType.FLOAT, [1, row.length], row));
    if (labels) writeTensorFile(path.join(d, 'label.pb'), Tensor.from('label', DataType.INT64, [1], [labels[i]!]));
  });
}
