import { describe, expect, it } from 'vitest';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { Session } from '../../src/runtime/session.js';

describe('session smoke', () => {
  it('runs a MatMul+Add and exposes an untyped intermediate', async () => {
    const g = new Graph('g');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 2] });
    const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [2, 3], [1, 2, 3, 4, 5, 6]));
    const b = g.addInitializer(Tensor.from('b', DataType.FLOAT, [3], [0.5, 0.5, 0.5]));
    const mm = g.addNode('MatMul', [x, w], ['mm']);
    const add = g.addNode('Add', [mm.output(0), b], ['y']);
    add.output(0).type = { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 3] };
    g.outputs.push(add.output(0));
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    const s = await Session.create(m, { expose: ['mm'] });
    const out = await s.run({ x: { dtype: DataType.FLOAT, dims: [1, 2], data: Float32Array.from([1, 1]) } });
    expect([...out.y!.data]).toEqual([5.5, 7.5, 9.5]);
    expect([...out.mm!.data]).toEqual([5, 7, 9]);
    await s.release();
  });

  it('returns per-node kernel times when profiling, and refuses endProfiling otherwise', async () => {
    const g = new Graph('g');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [64, 64] });
    const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [64, 64], new Array(64 * 64).fill(0.01)));
    const y = g.addNode('MatMul', [x, w], ['y'], { name: 'the_matmul' }).output(0);
    g.outputs.push(g.addNode('Relu', [y], ['z'], { name: 'the_relu' }).output(0));
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    const feeds = { x: { dtype: DataType.FLOAT, dims: [64, 64], data: new Float32Array(64 * 64).fill(1) } };
    const s = await Session.create(m, { profile: true, optimization: 'disabled' });
    try {
      for (let i = 0; i < 3; i++) await s.run(feeds);
      const t = s.endProfiling();
      expect(t.map((n) => [n.node, n.op]).sort()).toEqual([['the_matmul', 'MatMul'], ['the_relu', 'Relu']]);
      // one time per run, each node in each of the 3 runs
      for (const n of t) {
        expect(n.micros).toHaveLength(3);
        for (const us of n.micros) expect(us).toBeGreaterThan(0);
      }
      const total = (us: number[]) => us.reduce((a, b) => a + b, 0);
      expect(total(t[0]!.micros)).toBeGreaterThanOrEqual(total(t[1]!.micros));
      // the session runs on after profiling ends
      expect((await s.run(feeds)).z!.data[0]).toBeCloseTo(0.64, 5);
    } finally {
      await s.release();
    }
    const plain = await Session.create(m);
    try {
      expect(() => plain.endProfiling()).toThrow(/profile: true/);
    } finally {
      await plain.release();
    }
  });
});
