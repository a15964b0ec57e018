import * as fs from 'node:fs';
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

  it('large inline weights of a loaded file are read from it at each use; the model saves and runs the same', async () => {
    const dir = tempDir();
    const g = new Graph('g');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 512] });
    const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [512, 512], Float32Array.from({ length: 512 * 512 }, (_, i) => ((i * 7) % 13) / 13 - 0.5)));
    const b = g.addInitializer(Tensor.from('b', DataType.FLOAT, [512], Float32Array.from({ length: 512 }, (_, i) => i / 512)));
    g.outputs.push(g.addNode('Add', [g.addNode('MatMul', [x, w], 1).output(0), b], ['y']).output(0));
    const file = path.join(dir, 'inline.onnx');
    saveModel(new Model(g), file);
    const m = loadModel(file);
    const wt = m.graph.value('w')!.initializer!;
    expect(wt.isExternal).toBe(true);
    expect(wt.external!.file).toBe(path.resolve(file));
    expect(m.graph.value('b')!.initializer!.isExternal).toBe(false);
    // a small tensor's bytes are not a view into a buffer of the whole file (which would keep it alive)
    const small = m.graph.value('b')!.initializer!.bytes;
    expect(small.buffer.byteLength).toBeLessThan(wt.byteLength);
    expect(m.loadedWithExternalData).toBe(false);
    expect(Array.from(wt.toFloat32())).toEqual(Array.from(w.initializer!.toFloat32()));
    // saved again: inline (as loaded), the same values
    const again = path.join(dir, 'again.onnx');
    saveModel(m, again);
    expect(fs.existsSync(`${again}.data`)).toBe(false);
    expect(Array.from(loadModel(again).graph.value('w')!.initializer!.toFloat32())).toEqual(Array.from(w.initializer!.toFloat32()));
  });
});
