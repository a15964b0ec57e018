import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { medianLatencies } from '../../src/runtime/latency.js';

/** y = x W repeated `depth` times: more depth, more work per run. */
function chain(depth: number): Model {
  const g = new Graph('chain');
  let v = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [64, 256] });
  const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [256, 256], new Array(256 * 256).fill(1 / 256)));
  for (let i = 0; i < depth; i++) v = g.addNode('MatMul', [v, w], [`h${i}`]).output(0);
  g.outputs.push(v);
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

describe('medianLatencies', () => {
  it('times each model and ranks a model with 40 times the work as slower', async () => {
    const feeds = { x: { dtype: DataType.FLOAT, dims: [64, 256], data: new Float32Array(64 * 256).fill(1) } };
    const [small, large] = await medianLatencies([chain(1), chain(40)], feeds, { rounds: 5, threads: 1 });
    expect(small).toBeGreaterThan(0);
    expect(large).toBeGreaterThan(5 * small!);
  });

  it('stops when aborted', async () => {
    const feeds = { x: { dtype: DataType.FLOAT, dims: [64, 256], data: new Float32Array(64 * 256).fill(1) } };
    const ac = new AbortController();
    ac.abort();
    await expect(medianLatencies([chain(1)], feeds, { rounds: 3, signal: ac.signal })).rejects.toThrow();
  });
});
