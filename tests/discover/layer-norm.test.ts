import { describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Value } from '../../src/ir/value.js';
import { Session } from '../../src/runtime/session.js';
import { GraphWriter } from '../helpers/transformer-builder.js';

const H = 8;
const cast = (w: GraphWriter, x: Value, to: DataType): Value => w.op('/ln', 'Cast', [x], { to: { type: 'int', value: to } });
const mean = (w: GraphWriter, x: Value): Value => w.op('/ln', 'ReduceMean', [x], { axes: { type: 'ints', value: [-1] } });

describe('norms', () => {
  it('finds a decomposed LayerNorm written with Reciprocal and Mul, with Casts around it', async () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const xf = cast(w, x, DataType.DOUBLE);
    const d = w.op('/ln', 'Sub', [xf, mean(w, xf)]);
    const variance = mean(w, w.op('/ln', 'Mul', [d, d]));
    const root = w.op('/ln', 'Sqrt', [cast(w, w.op('/ln', 'Add', [variance, w.constant('/ln', Tensor.from('value', DataType.DOUBLE, [], [1e-6]))]), DataType.DOUBLE)]);
    const normed = cast(w, w.op('/ln', 'Mul', [d, w.op('/ln', 'Reciprocal', [root])]), DataType.FLOAT);
    const scale = w.initializer('ln.weight', [H]);
    const bias = w.initializer('ln.bias', [H]);
    const y = w.op('/ln', 'Add', [w.op('/ln', 'Mul', [scale, normed]), bias]);
    const model = w.finish(y, ['batch', H]);
    const s = discoverStructure(model);
    expect(s.unmatched).toEqual([]);
    expect(s.norms).toHaveLength(1);
    const n = s.norms[0]!;
    expect([n.kind, n.form, n.hidden, n.scale, n.bias, n.input, n.output]).toEqual(['layernorm', 'decomposed', H, scale, bias, x, y]);
    expect(n.epsilon).toBeCloseTo(1e-6, 12);
    // every node but the graph's Identity output belongs to the norm
    expect(new Set(n.nodes)).toEqual(new Set(model.graph.nodes.filter((m) => m.opType !== 'Constant' && m.opType !== 'Identity')));
    const session = await Session.create(model);
    await session.release();
  });

  it('finds RMSNorm as LLaMA exports it (Div(1, sqrt), Mul(x, .), Mul(weight, .)) and as T5 (Div(x, sqrt))', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const rms = (input: Value, llama: boolean): Value => {
      const root = w.op('/rms', 'Sqrt', [w.op('/rms', 'Add', [mean(w, w.op('/rms', 'Pow', [input, w.scalar('/rms', 2)])), w.scalar('/rms', 1e-6)])]);
      const normed = llama ? w.op('/rms', 'Mul', [input, w.op('/rms', 'Div', [w.scalar('/rms', 1), root])]) : w.op('/rms', 'Div', [input, root]);
      return w.op('/rms', 'Mul', [w.initializer(`rms${llama}.weight`, [H]), normed]);
    };
    const a = rms(x, true);
    const b = rms(a, false);
    const s = discoverStructure(w.finish(b, ['batch', H]));
    expect(s.unmatched).toEqual([]);
    expect(s.norms.map((n) => [n.kind, n.form, n.hidden, n.input, n.output, n.bias])).toEqual([
      ['rmsnorm', 'decomposed', H, x, a, undefined],
      ['rmsnorm', 'decomposed', H, a, b, undefined],
    ]);
  });

  it('finds a LayerNorm without scale and bias, its width read from the input shape', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 12]);
    const d = w.op('/ln', 'Sub', [x, mean(w, x)]);
    const root = w.op('/ln', 'Sqrt', [w.op('/ln', 'Add', [mean(w, w.op('/ln', 'Pow', [d, w.scalar('/ln', 2)])), w.scalar('/ln', 1e-5)])]);
    const y = w.op('/ln', 'Div', [d, root]);
    const s = discoverStructure(w.finish(y, ['batch', 12]));
    expect(s.norms.map((n) => [n.kind, n.hidden, n.scale, n.output])).toEqual([['layernorm', 12, undefined, y]]);
  });

  it('finds the fused ops: LayerNormalization, SimplifiedLayerNormalization, RMSNormalization', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const eps = (e: number) => ({ epsilon: { type: 'float' as const, value: e } });
    const a = w.op('/a', 'LayerNormalization', [x, w.initializer('a.weight', [H]), w.initializer('a.bias', [H])], eps(1e-12));
    const b = w.op('/b', 'SimplifiedLayerNormalization', [a, w.initializer('b.weight', [H])], eps(1e-6), 'com.microsoft');
    const c = w.op('/c', 'RMSNormalization', [b, w.initializer('c.weight', [H])]);
    const s = discoverStructure(w.finish(c, ['batch', H], 23));
    expect(s.norms.map((n) => [n.kind, n.form, n.hidden, n.input, n.output])).toEqual([
      ['layernorm', 'fused', H, x, a],
      ['rmsnorm', 'fused', H, a, b],
      ['rmsnorm', 'fused', H, b, c],
    ]);
    expect(s.norms.map((n) => n.epsilon)).toEqual([1e-12, 1e-6, 1e-5]);
  });

  it('records a reason when the variance matches but the normalization does not', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const root = w.op('/odd', 'Sqrt', [w.op('/odd', 'Add', [mean(w, w.op('/odd', 'Pow', [x, w.scalar('/odd', 2)])), w.scalar('/odd', 1e-6)])]);
    const y = w.op('/odd', 'Mul', [x, root]);
    const plainSqrt = w.op('/other', 'Sqrt', [y]);
    const s = discoverStructure(w.finish(plainSqrt, ['batch', H]));
    expect(s.norms).toEqual([]);
    expect(s.unmatched).toHaveLength(1);
    expect(s.unmatched[0]).toMatchObject({ node: '/odd/Sqrt', opType: 'Sqrt' });
    expect(s.unmatched[0]!.reason).toContain('not divided into the normalized value');
  });
});

