import { describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { GraphWriter } from '../helpers/transformer-builder.js';

describe('linear layers', () => {
  it('finds MatMul + Add with the bias on either side, and names it after the torch scope', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 4, 8]);
    const w1 = w.initializer('onnx::MatMul_1', [8, 16]);
    const b1 = w.initializer('fc1.bias', [16]);
    const h = w.op('/fc1', 'Add', [b1, w.op('/fc1', 'MatMul', [x, w1])]);
    const w2 = w.initializer('onnx::MatMul_2', [16, 8]);
    const b2 = w.initializer('fc2.bias', [8]);
    const y = w.op('/fc2', 'Add', [w.op('/fc2', 'MatMul', [h, w2]), b2]);
    const s = discoverStructure(w.finish(y, ['batch', 4, 8]));
    expect(s.linears.map((l) => [l.name, l.inFeatures, l.outFeatures, l.transB, l.bias?.name, l.weight.name])).toEqual([
      ['fc1', 8, 16, false, 'fc1.bias', 'onnx::MatMul_1'],
      ['fc2', 16, 8, false, 'fc2.bias', 'onnx::MatMul_2'],
    ]);
    expect(s.linears[0]!.output).toBe(h);
    expect(s.linears[0]!.biasAdd?.output(0)).toBe(h);
    expect(s.unmatched).toEqual([]);
  });

  it('reads Gemm with transB=1 as [out, in] and transB=0 as [in, out]', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 8]);
    const a = w.op('/a', 'Gemm', [x, w.initializer('a.weight', [16, 8]), w.initializer('a.bias', [16])], { transB: { type: 'int', value: 1 } });
    const b = w.op('/b', 'Gemm', [a, w.initializer('b.weight', [16, 4])]);
    const s = discoverStructure(w.finish(b, ['batch', 4]));
    expect(s.linears.map((l) => [l.name, l.inFeatures, l.outFeatures, l.transB, l.bias?.name])).toEqual([
      ['a', 8, 16, true, 'a.bias'],
      ['b', 16, 4, false, undefined],
    ]);
  });

  it('sees a weight through Constant nodes and through the Identity torch writes for shared initializers', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 4]);
    const shared = w.initializer('shared.weight', [4, 4]);
    const viaIdentity = w.op('', 'Identity', [shared]);
    const viaConstant = w.constant('', Tensor.from('value', DataType.FLOAT, [4, 4], new Array(16).fill(0.5)));
    const y = w.op('/b', 'MatMul', [w.op('/a', 'MatMul', [x, viaIdentity]), viaConstant]);
    const s = discoverStructure(w.finish(y, ['batch', 4]));
    expect(s.linears).toHaveLength(2);
    expect(s.linears[0]!.weight).toBe(shared);
    expect(s.linears[1]!.weight).toBe(viaConstant);
  });

  it('records why a MatMul or Gemm is not a linear layer', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 4]);
    const wIn = w.input('w', [4, 4]);
    const a = w.op('/a', 'MatMul', [x, wIn]);
    const b = w.op('/b', 'MatMul', [a, w.initializer('w3', [2, 4, 4])]);
    const c = w.op('/c', 'Gemm', [b, w.initializer('c.weight', [4, 4])], { alpha: { type: 'float', value: 2 } });
    const s = discoverStructure(w.finish(c, ['batch', 4]));
    expect(s.linears).toEqual([]);
    expect(s.unmatched).toEqual([
      { node: '/a/MatMul', opType: 'MatMul', reason: "second input is not a constant (it comes from graph input 'w')" },
      { node: '/b/MatMul', opType: 'MatMul', reason: "weight 'w3' has shape [2,4,4], not [in, out]" },
      { node: '/c/Gemm', opType: 'Gemm', reason: 'alpha=2, beta=1: only 1 and 1 are recognised' },
    ]);
  });

  it('takes no bias from an Add whose other operand is not a constant of the output width', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 4]);
    const mm = w.op('/a', 'MatMul', [x, w.initializer('w', [4, 4])]);
    const y = w.op('', 'Add', [mm, w.initializer('not_a_bias', [3, 4])]);
    const s = discoverStructure(w.finish(y, [3, 4]));
    expect(s.linears[0]!.bias).toBeUndefined();
    expect(s.linears[0]!.output).toBe(mm);
  });
});
