import { describe, expect, it } from 'vitest';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Value } from '../../src/ir/value.js';
import { discoverStructure } from '../../src/discover/index.js';
import { applyFold, findFoldSites } from '../../src/reparam/fold.js';
import { runBoth } from '../helpers/compare.js';
import { relativeError } from './relative-error.js';

const E = 8;
const B = 2;
const S = 5;

function values(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1);
}

/**
 * One norm (a LayerNormalization, or onnxruntime's SimplifiedLayerNormalization = RMSNorm,
 * which has no β) read by: Reshape to [B·S, E] -> Gemm (transB); Slice of tokens 1..2 -> MatMul;
 * Shape; and two readers that do move the channel axis, which must get the original values
 * back: Reshape to [B, S·E] and Transpose [2, 0, 1].
 */
function normWithViews(rms: boolean, ifBranch = false): Model {
  const g = new Graph('views');
  const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [B, S, E] });
  const gamma = g.addInitializer(Tensor.from('gamma', DataType.FLOAT, [E], values(E, 1).map((v) => 1 + 0.5 * v)));
  const beta = g.addInitializer(Tensor.from('beta', DataType.FLOAT, [E], values(E, 2)));
  const norm = rms
    ? g.addNode('SimplifiedLayerNormalization', [x, gamma], ['y'], { attributes: { epsilon: { type: 'float', value: 1e-5 }, axis: { type: 'int', value: -1 } } })
    : g.addNode('LayerNormalization', [x, gamma, beta], ['y'], { attributes: { epsilon: { type: 'float', value: 1e-5 }, axis: { type: 'int', value: -1 } } });
  const y = norm.output(0);
  const c = (name: string, dims: number[], data: number[], dtype = DataType.INT64): Value => g.addInitializer(Tensor.from(name, dtype, dims, data));
  const flat = g.addNode('Reshape', [y, c('flat_shape', [2], [-1, E])], ['flat']).output(0);
  const gemm = g.addNode('Gemm', [flat, c('w1', [4, E], values(4 * E, 3), DataType.FLOAT), c('b1', [4], values(4, 4), DataType.FLOAT)], ['out_gemm'], { attributes: { transB: { type: 'int', value: 1 } } });
  const sliced = g.addNode('Slice', [y, c('starts', [1], [1]), c('ends', [1], [3]), c('axes', [1], [1])], ['tokens']).output(0);
  const mm = g.addNode('MatMul', [sliced, c('w2', [E, 3], values(3 * E, 5), DataType.FLOAT)], ['out_matmul']);
  const shape = g.addNode('Shape', [y], ['dims']).output(0);
  const dims = g.addNode('Cast', [shape], ['out_dims'], { attributes: { to: { type: 'int', value: DataType.FLOAT } } });
  const merged = g.addNode('Reshape', [y, c('merged_shape', [2], [B, S * E])], ['out_merged']);
  const moved = g.addNode('Transpose', [y], ['out_moved'], { attributes: { perm: { type: 'ints', value: [2, 0, 1] } } });
  for (const n of [gemm, mm, dims, merged, moved]) g.outputs.push(n.output(0));
  if (ifBranch) {
    // an If whose branches read y from the enclosing graph
    const branch = (op: string): Graph => {
      const b = new Graph(op);
      // a layout op inside the branch must not be followed: the restore has to live in the enclosing graph
      const swapped = b.addNode('Transpose', [y], [`${op}_swapped`], { attributes: { perm: { type: 'ints', value: [1, 0, 2] } } }).output(0);
      const out = b.addNode(op, [swapped], [`${op}_y`]).output(0);
      out.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: [S, B, E] };
      b.outputs.push(out);
      return b;
    };
    const cond = c('cond', [], [1], DataType.BOOL);
    const node = g.addNode('If', [cond], ['out_if'], { attributes: { then_branch: { type: 'graph', value: branch('Neg') }, else_branch: { type: 'graph', value: branch('Abs') } } });
    g.outputs.push(node.output(0));
  }
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

describe('fold through layout readers', () => {
  for (const rms of [false, true]) {
    it(`${rms ? 'RMSNorm (no β, the shift becomes an Add)' : 'LayerNorm'}: Reshape/Slice keeping the channel axis and Shape are followed, readers that move it get y back; outputs change by <= 1e-5 relative`, async () => {
      const original = normWithViews(rms);
      const model = original.clone();
      const structure = discoverStructure(model);
      expect(structure.norms).toHaveLength(1);
      const { sites, skipped } = findFoldSites(structure);
      expect(skipped).toEqual([]);
      expect(sites).toHaveLength(1);
      const site = sites[0]!;
      expect(site.shiftBy).toBe(rms ? 'add' : 'bias');
      expect(site.linears.map((l) => l.node.opType).sort()).toEqual(['Gemm', 'MatMul']);
      expect(site.views.map((v) => v.name).sort()).toEqual(['flat', 'tokens', 'y']);
      expect(site.restore.map((r) => r.node.opType).sort()).toEqual(['Reshape', 'Transpose']);
      const scale = values(E, 7).map((v) => Math.exp(v * 3));
      const shift = values(E, 8);
      applyFold(model, site, { scale, shift });
      const feeds: Record<string, ArrayTensor> = { x: { dtype: DataType.FLOAT, dims: [B, S, E], data: Float32Array.from(values(B * S * E, 9), (v) => 3 * v) } };
      const [a, b] = await runBoth(original, model, feeds);
      expect(relativeError(a, b)).toBeLessThanOrEqual(1e-5);
      // the rewrite did change what the linears read: their weights are new
      for (const l of site.linears) expect(l.node.input(1)!.name).toMatch(/weight_folded/);
    });
  }
});

describe('fold with a reader inside a subgraph', () => {
  it('an If branch reading the norm output is handed y back from the enclosing graph; outputs change by <= 1e-5 relative', async () => {
    const original = normWithViews(false, true);
    const model = original.clone();
    const { sites } = findFoldSites(discoverStructure(model));
    expect(sites).toHaveLength(1);
    expect(sites[0]!.restore.map((r) => r.node.opType).sort()).toEqual(['Reshape', 'Transpose', 'Transpose', 'Transpose']);
    applyFold(model, sites[0]!, { scale: values(E, 7).map((v) => Math.exp(v * 3)), shift: values(E, 8) });
    const feeds: Record<string, ArrayTensor> = { x: { dtype: DataType.FLOAT, dims: [B, S, E], data: Float32Array.from(values(B * S * E, 9), (v) => 3 * v) } };
    const [a, b] = await runBoth(original, model, feeds);
    expect(relativeError(a, b)).toBeLessThanOrEqual(1e-5);
  });
});
