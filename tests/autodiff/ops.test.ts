// Every op with a backward rule, checked against central finite differences in float64.
import { describe, expect, it } from 'vitest';
import { checkGradients } from '../../src/autodiff/check.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { TinyGraph, a, awayFromZero, positive } from './helpers.js';

interface Case {
  name: string;
  /** Returns the model and the tensors to check against. */
  build(): { model: Model; wrt: string[]; feeds: TinyGraph['feeds'] };
}

const cases: Case[] = [];
const add = (name: string, build: Case['build']): void => void cases.push({ name, build });

/** One op applied to inputs built by `inputs`; every float input is checked. */
function simple(name: string, opset: number, make: (t: TinyGraph) => { out: import('../../src/ir/value.js').Value; wrt: string[] }): void {
  add(name, () => {
    const t = new TinyGraph(opset);
    const { out, wrt } = make(t);
    return { model: t.model(out), wrt, feeds: t.feeds };
  });
}

// --- matrix products
simple('MatMul activation x weight', 17, (t) => ({ out: t.op('MatMul', [t.input('x', [2, 3, 4]), t.weight('w', [4, 5])]), wrt: ['x', 'w'] }));
simple('MatMul batched', 17, (t) => ({ out: t.op('MatMul', [t.input('x', [2, 3, 4]), t.input('y', [2, 4, 5])]), wrt: ['x', 'y'] }));
simple('MatMul broadcast batch', 17, (t) => ({ out: t.op('MatMul', [t.input('x', [2, 1, 3, 4]), t.input('y', [3, 4, 5])]), wrt: ['x', 'y'] }));
simple('MatMul 1-D left', 17, (t) => ({ out: t.op('MatMul', [t.input('x', [4]), t.input('y', [2, 4, 5])]), wrt: ['x', 'y'] }));
simple('MatMul 1-D right', 17, (t) => ({ out: t.op('MatMul', [t.input('x', [2, 3, 4]), t.input('y', [4])]), wrt: ['x', 'y'] }));
simple('MatMul 1-D both', 17, (t) => ({ out: t.op('MatMul', [t.input('x', [4]), t.input('y', [4])]), wrt: ['x', 'y'] }));
for (const [ta, tb] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
  simple(`Gemm transA=${ta} transB=${tb}`, 17, (t) => ({
    out: t.op('Gemm', [t.input('x', ta ? [4, 3] : [3, 4]), t.weight('w', tb ? [5, 4] : [4, 5]), t.weight('b', [5])], { alpha: a.float(0.7), beta: a.float(1.3), transA: a.int(ta!), transB: a.int(tb!) }),
    wrt: ['x', 'w', 'b'],
  }));
}
simple('Gemm bias [3,5]', 17, (t) => ({ out: t.op('Gemm', [t.input('x', [3, 4]), t.weight('w', [4, 5]), t.weight('b', [3, 5])]), wrt: ['x', 'w', 'b'] }));

// --- elementwise, with broadcasting
for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
  const div = op === 'Div';
  simple(`${op} [2,3,4] & [4]`, 17, (t) => ({ out: t.op(op, [t.input('x', [2, 3, 4]), t.input('y', [4], div ? positive : undefined)]), wrt: ['x', 'y'] }));
  simple(`${op} [3,1] & [2,3,4]`, 17, (t) => ({ out: t.op(op, [t.input('x', [3, 1], div ? undefined : undefined), t.input('y', [2, 3, 4], div ? positive : undefined)]), wrt: ['x', 'y'] }));
  simple(`${op} scalar & [2,3]`, 17, (t) => ({ out: t.op(op, [t.input('x', [2, 3]), t.input('y', [], div ? positive : undefined)]), wrt: ['x', 'y'] }));
}
simple('Mul x * x', 17, (t) => {
  const x = t.input('x', [2, 3]);
  return { out: t.op('Mul', [x, x]), wrt: ['x'] };
});
simple('Sum of three', 17, (t) => ({ out: t.op('Sum', [t.input('x', [2, 3]), t.input('y', [3]), t.input('z', [2, 1])]), wrt: ['x', 'y', 'z'] }));
simple('Pow x^2 (constant)', 17, (t) => ({ out: t.op('Pow', [t.input('x', [2, 3]), t.constant('two', DataType.FLOAT, [], [2])]), wrt: ['x'] }));
simple('Pow x^3 (constant)', 17, (t) => ({ out: t.op('Pow', [t.input('x', [2, 3]), t.constant('three', DataType.FLOAT, [], [3])]), wrt: ['x'] }));
simple('Pow x^y', 17, (t) => ({ out: t.op('Pow', [t.input('x', [2, 3], positive), t.input('y', [3])]), wrt: ['x', 'y'] }));
const unary: [string, ((x: number) => number) | undefined][] = [
  ['Sqrt', positive],
  ['Reciprocal', awayFromZero],
  ['Neg', undefined],
  ['Abs', awayFromZero],
  ['Exp', undefined],
  ['Log', positive],
  ['Erf', undefined],
  ['Tanh', undefined],
  ['Sigmoid', undefined],
  ['Relu', awayFromZero],
];
for (const [op, map] of unary) simple(op, 17, (t) => ({ out: t.op(op, [t.input('x', [2, 3, 4], map)]), wrt: ['x'] }));
simple('Gelu (opset 20)', 20, (t) => ({ out: t.op('Gelu', [t.input('x', [2, 3, 4])]), wrt: ['x'] }));
simple('Gelu tanh (opset 20)', 20, (t) => ({ out: t.op('Gelu', [t.input('x', [2, 3, 4])], { approximate: a.str('tanh') }), wrt: ['x'] }));
simple('com.microsoft Gelu', 17, (t) => ({ out: t.op('Gelu', [t.input('x', [2, 3, 4])], {}, 1, 'com.microsoft'), wrt: ['x'] }));
simple('com.microsoft FastGelu with bias', 17, (t) => ({ out: t.op('FastGelu', [t.input('x', [2, 3, 4]), t.weight('b', [4])], {}, 1, 'com.microsoft'), wrt: ['x', 'b'] }));
simple('Dropout at inference', 13, (t) => ({ out: t.op('Dropout', [t.input('x', [2, 3]), t.constant('ratio', DataType.FLOAT, [], [0.1])]), wrt: ['x'] }));
simple('Clip with min and max', 17, (t) => ({
  out: t.op('Clip', [t.input('x', [4, 5], (x) => x * 2), t.input('lo', [], () => -0.55), t.input('hi', [], () => 0.45)]),
  wrt: ['x', 'lo', 'hi'],
}));
simple('Clip with max only', 17, (t) => ({ out: t.op('Clip', [t.input('x', [4, 5]), undefined, t.constant('hi', DataType.FLOAT, [], [0.3])]), wrt: ['x'] }));
simple('Where', 17, (t) => {
  const cond = t.constant('c', DataType.BOOL, [3, 1], [1, 0, 1]);
  return { out: t.op('Where', [cond, t.input('x', [2, 3, 4]), t.input('y', [4])]), wrt: ['x', 'y'] };
});
simple('Cast float -> double -> float', 17, (t) => {
  const d = t.op('Cast', [t.input('x', [2, 3])], { to: a.int(DataType.DOUBLE) });
  return { out: t.op('Cast', [t.op('Mul', [d, d])], { to: a.int(DataType.FLOAT) }), wrt: ['x'] };
});
simple('Identity', 17, (t) => ({ out: t.op('Mul', [t.op('Identity', [t.input('x', [2, 3])]), t.weight('w', [3])]), wrt: ['x', 'w'] }));

// --- reductions and normalization
simple('ReduceSum axes input keepdims', 13, (t) => ({ out: t.op('ReduceSum', [t.input('x', [2, 3, 4]), t.ints('axes', [1])]), wrt: ['x'] }));
simple('ReduceSum keepdims=0 two axes', 13, (t) => ({ out: t.op('ReduceSum', [t.input('x', [2, 3, 4]), t.ints('axes', [0, -1])], { keepdims: a.int(0) }), wrt: ['x'] }));
simple('ReduceSum all', 13, (t) => ({ out: t.op('ReduceSum', [t.input('x', [2, 3, 4])], { keepdims: a.int(0) }), wrt: ['x'] }));
simple('ReduceMean axes attribute (opset 13)', 13, (t) => ({ out: t.op('ReduceMean', [t.input('x', [2, 3, 4])], { axes: a.ints([-1]) }), wrt: ['x'] }));
simple('ReduceMean axes input (opset 18) keepdims=0', 18, (t) => ({ out: t.op('ReduceMean', [t.input('x', [2, 3, 4]), t.ints('axes', [1, 2])], { keepdims: a.int(0) }), wrt: ['x'] }));
simple('ReduceMax', 13, (t) => ({ out: t.op('ReduceMax', [t.input('x', [2, 3, 4])], { axes: a.ints([2]), keepdims: a.int(0) }), wrt: ['x'] }));
simple('ReduceMax all (opset 18)', 18, (t) => ({ out: t.op('ReduceMax', [t.input('x', [2, 3, 4])], { keepdims: a.int(1) }), wrt: ['x'] }));
simple('ReduceMin keepdims', 13, (t) => ({ out: t.op('ReduceMin', [t.input('x', [2, 3, 4])], { axes: a.ints([1]) }), wrt: ['x'] }));
simple('Softmax last axis', 13, (t) => ({ out: t.op('Softmax', [t.input('x', [2, 3, 5])], { axis: a.int(-1) }), wrt: ['x'] }));
simple('Softmax axis 1', 13, (t) => ({ out: t.op('Softmax', [t.input('x', [2, 3, 5])], { axis: a.int(1) }), wrt: ['x'] }));
simple('LogSoftmax', 13, (t) => ({ out: t.op('LogSoftmax', [t.input('x', [2, 5])], { axis: a.int(-1) }), wrt: ['x'] }));
simple('LayerNormalization last axis', 17, (t) => ({
  out: t.op('LayerNormalization', [t.input('x', [2, 3, 6]), t.weight('g', [6], undefined, (x) => 1 + 0.3 * x), t.weight('b', [6])], { axis: a.int(-1), epsilon: a.float(1e-5) }),
  wrt: ['x', 'g', 'b'],
}));
simple('LayerNormalization axis 1', 17, (t) => ({
  out: t.op('LayerNormalization', [t.input('x', [2, 3, 4]), t.weight('g', [3, 4], undefined, (x) => 1 + 0.3 * x)], { axis: a.int(1) }),
  wrt: ['x', 'g'],
}));
simple('SimplifiedLayerNormalization (RMS)', 17, (t) => ({
  out: t.op('SimplifiedLayerNormalization', [t.input('x', [2, 3, 6]), t.weight('g', [6], undefined, (x) => 1 + 0.3 * x)], { axis: a.int(-1), epsilon: a.float(1e-6) }),
  wrt: ['x', 'g'],
}));

// --- data movement
simple('Reshape', 17, (t) => ({ out: t.op('Mul', [t.op('Reshape', [t.input('x', [2, 3, 4]), t.ints('s', [0, -1, 2])]), t.weight('w', [2])]), wrt: ['x'] }));
simple('Flatten', 17, (t) => ({ out: t.op('Flatten', [t.input('x', [2, 3, 4])], { axis: a.int(2) }), wrt: ['x'] }));
simple('Transpose', 17, (t) => ({ out: t.op('MatMul', [t.op('Transpose', [t.input('x', [2, 3, 4])], { perm: a.ints([2, 0, 1]) }), t.weight('w', [3, 2])]), wrt: ['x'] }));
simple('Transpose without perm', 17, (t) => ({ out: t.op('Transpose', [t.input('x', [2, 3, 4])]), wrt: ['x'] }));
simple('Squeeze and Unsqueeze', 17, (t) => ({
  out: t.op('Unsqueeze', [t.op('Squeeze', [t.input('x', [2, 1, 4]), t.ints('a1', [1])]), t.ints('a2', [0, 3])]),
  wrt: ['x'],
}));
simple('Concat', 17, (t) => ({ out: t.op('Concat', [t.input('x', [2, 3]), t.input('y', [2, 2]), t.input('z', [2, 1])], { axis: a.int(-1) }), wrt: ['x', 'z'] }));
add('Split with sizes, one output unused', () => {
  const t = new TinyGraph(17);
  const [p, q] = t.ops('Split', [t.input('x', [2, 7]), t.ints('sizes', [3, 4])], { axis: a.int(1) }, 2);
  void q;
  return { model: t.model(t.op('Mul', [p!, p!])), wrt: ['x'], feeds: t.feeds };
});
add('Split even, both used', () => {
  const t = new TinyGraph(17);
  const [p, q] = t.ops('Split', [t.input('x', [2, 6])], { axis: a.int(-1) }, 2);
  return { model: t.model(p!, q!), wrt: ['x'], feeds: t.feeds };
});
simple('Slice constant, steps 1', 17, (t) => ({ out: t.op('Slice', [t.input('x', [3, 6, 4]), t.ints('st', [1, -5]), t.ints('en', [3, Number.MAX_SAFE_INTEGER]), t.ints('ax', [0, 1])]), wrt: ['x'] }));
simple('Slice step 2', 17, (t) => ({ out: t.op('Slice', [t.input('x', [3, 7]), t.ints('st', [1]), t.ints('en', [7]), t.ints('ax', [-1]), t.ints('sp', [2])]), wrt: ['x'] }));
simple('Slice step -1', 17, (t) => ({ out: t.op('Slice', [t.input('x', [3, 5]), t.ints('st', [-1]), t.ints('en', [-Number.MAX_SAFE_INTEGER]), t.ints('ax', [1]), t.ints('sp', [-1])]), wrt: ['x'] }));
simple('Slice with run-time ends', 17, (t) => {
  const x = t.input('x', [3, 6]);
  const dim = t.op('Gather', [t.op('Shape', [x]), t.ints('one', [1])], { axis: a.int(0) });
  const end = t.op('Sub', [dim, t.ints('two', [2])]);
  return { out: t.op('Slice', [x, t.ints('st', [1]), end, t.ints('ax', [1])]), wrt: ['x'] };
});
simple('Gather scalar index (CLS token)', 17, (t) => ({ out: t.op('Gather', [t.input('x', [2, 5, 3]), t.constant('i', DataType.INT64, [], [0])], { axis: a.int(1) }), wrt: ['x'] }));
simple('Gather 2-D indices', 17, (t) => ({ out: t.op('Gather', [t.input('x', [2, 5, 3]), t.constant('i', DataType.INT64, [2, 2], [4, 1, -2, 0])], { axis: a.int(1) }), wrt: ['x'] }));
simple('Gather repeated indices (opset 16+)', 17, (t) => ({ out: t.op('Gather', [t.input('x', [6, 3]), t.constant('i', DataType.INT64, [4], [1, 3, 1, 5])], { axis: a.int(0) }), wrt: ['x'] }));
simple('Expand', 17, (t) => ({ out: t.op('Expand', [t.input('x', [3, 1]), t.ints('s', [2, 3, 4])]), wrt: ['x'] }));
simple('shape arithmetic carries no gradient', 17, (t) => {
  const x = t.input('x', [2, 3, 4]);
  const shape = t.op('Concat', [t.op('Unsqueeze', [t.op('Gather', [t.op('Shape', [x]), t.constant('z', DataType.INT64, [], [0])], { axis: a.int(0) }), t.ints('ax', [0])]), t.ints('rest', [-1])], { axis: a.int(0) });
  return { out: t.op('Reshape', [x, shape]), wrt: ['x'] };
});

// --- straight-through estimators (checked against the frozen-residual surrogate)
simple('Round (STE)', 17, (t) => ({ out: t.op('Mul', [t.op('Round', [t.op('Mul', [t.input('x', [3, 4]), t.constant('k', DataType.FLOAT, [], [3.3])])]), t.weight('w', [4])]), wrt: ['x'] }));
simple('QuantizeLinear -> DequantizeLinear per-tensor (STE)', 17, (t) => {
  const x = t.input('x', [4, 6], (v, i) => (i === 3 ? 40 : v)); // one element saturates
  const s = t.input('s', [], () => 0.05);
  const zp = t.constant('zp', DataType.INT8, [], [3]);
  return { out: t.op('DequantizeLinear', [t.op('QuantizeLinear', [x, s, zp]), s, zp]), wrt: ['x', 's'] };
});
simple('QuantizeLinear -> DequantizeLinear per-axis uint8 (STE)', 17, (t) => {
  const x = t.input('x', [4, 6]);
  const s = t.input('s', [6], (v) => 0.01 + 0.002 * Math.abs(v));
  const zp = t.constant('zp', DataType.UINT8, [6], [128, 120, 130, 128, 127, 125]);
  return { out: t.op('DequantizeLinear', [t.op('QuantizeLinear', [x, s, zp], { axis: a.int(1) }), s, zp], { axis: a.int(1) }), wrt: ['x', 's'] };
});
simple('DequantizeLinear of a constant int8 weight (learned scale)', 17, (t) => {
  const q = t.constant('q', DataType.INT8, [3, 4], [1, -2, 3, 7, -8, 100, -120, 5, 0, 9, 11, -3]);
  const s = t.input('s', [4], (v) => 0.02 + 0.01 * Math.abs(v));
  return { out: t.op('MatMul', [t.input('x', [2, 3]), t.op('DequantizeLinear', [q, s], { axis: a.int(1) })]), wrt: ['x', 's'] };
});

describe('gradient rules against finite differences (float64)', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const { model, wrt, feeds } = c.build();
      const r = await checkGradients(model, { wrt, feeds, threads: 1 });
      if (r.maxError > 1e-3) console.log(c.name, r.worst);
      expect(r.precision).toBe('double');
      // not a trivial pass: some gradient is not zero
      expect(r.entries.some((e) => Math.abs(e.analytic) > 1e-6)).toBe(true);
      expect(r.maxError).toBeLessThanOrEqual(1e-3);
    });
  }
});
