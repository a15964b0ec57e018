import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { EXTERNAL_KEEP_LIMIT, Tensor } from '../../src/ir/tensor.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { tempDir } from '../helpers/tmp.js';

describe('external tensors in memory', () => {
  it('large ones are read at each use and not kept; small ones are kept after the first read', () => {
    const dir = tempDir();
    const g = new Graph('g');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 4] });
    const big = EXTERNAL_KEEP_LIMIT / 4;
    const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [4, big / 4], Float32Array.from({ length: big }, (_, i) => i % 97)));
    const b = g.addInitializer(Tensor.from('b', DataType.FLOAT, [1024], Float32Array.from({ length: 1024 }, (_, i) => i)));
    const y = g.addNode('Add', [g.addNode('MatMul', [x, w], 1).output(0), g.addNode('Slice', [b], 1).output(0)], ['y']).output(0);
    g.outputs.push(y);
    const file = path.join(dir, 'm.onnx');
    saveModel(new Model(g), file, { externalData: true });
    const m = loadModel(file);
    const wt = m.graph.value('w')!.initializer!;
    const bt = m.graph.value('b')!.initializer!;
    const first = wt.toFloat32();
    expect(wt.isExternal).toBe(true);
    expect(wt.toFloat32()).toEqual(first);
    expect(first[98]).toBe(1);
    expect(bt.toFloat32()[5]).toBe(5);
    expect(bt.isExternal).toBe(false);
  });
});
