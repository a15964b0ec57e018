import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { measureFlops } from '../../src/prune/cost.js';

const int = (value: number) => ({ type: 'int' as const, value });

describe('measureFlops', () => {
  it('counts 2 * output elements * reduced dimension for MatMul, Gemm and FusedMatMul, transposed or not', async () => {
    const g = new Graph('flops');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [2, 3, 5] });
    const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [5, 7], new Array(35).fill(0.1)));
    // MatMul [2,3,5] x [5,7] -> [2,3,7], reduces 5
    const y = g.addNode('MatMul', [x, w], ['y']).output(0);
    const y2 = g.addNode('Reshape', [y, g.addInitializer(Tensor.from('s', DataType.INT64, [2], [6n, 7n]))], ['y2']).output(0);
    // Gemm transA: [6,7]^T [6,7] -> [7,7], reduces 6
    const gram = g.addNode('Gemm', [y2, y2], ['gram'], { attributes: { transA: int(1) } }).output(0);
    // FusedMatMul transA on a batch: [2,3,5]^T(last two) x [2,3,7] -> [2,5,7], reduces 3
    const f = g.addNode('FusedMatMul', [x, y], ['f'], { domain: 'com.microsoft', attributes: { transA: int(1) } }).output(0);
    // FusedMatMul transB: [2,3,7] x [2,5,7]^T -> [2,3,5], reduces 7
    const f2 = g.addNode('FusedMatMul', [y, f], ['f2'], { domain: 'com.microsoft', attributes: { transB: int(1) } }).output(0);
    g.outputs.push(gram, f2);
    const m = new Model(g);
    m.opsetImports = new Map([['', 17], ['com.microsoft', 1]]);
    const flops = await measureFlops(m, { x: { dtype: DataType.FLOAT, dims: [2, 3, 5], data: new Float32Array(30).fill(1) } });
    const expected = 2 * (2 * 3 * 7) * 5 + 2 * (7 * 7) * 6 + 2 * (2 * 5 * 7) * 3 + 2 * (2 * 3 * 5) * 7;
    expect(flops).toBe(expected);
  });
});
