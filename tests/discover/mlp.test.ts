import { describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import { stringAttr } from '../../src/ir/attribute.js';
import type { Value } from '../../src/ir/value.js';
import { buildTransformer, GraphWriter } from '../helpers/transformer-builder.js';

const H = 8;
const W = 16;

/** x -> fc1 -> act -> fc2 -> x + . */
function mlpModel(act: (w: GraphWriter, h: Value) => Value, opset = 17) {
  const w = new GraphWriter();
  const x = w.input('x', ['batch', H]);
  const linear = (name: string, input: Value, inF: number, outF: number) =>
    w.op(`/${name}`, 'Add', [w.initializer(`${name}.bias`, [outF]), w.op(`/${name}`, 'MatMul', [input, w.initializer(`${name}.w`, [inF, outF])])]);
  const y = w.op('', 'Add', [x, linear('fc2', act(w, linear('fc1', x, H, W)), W, H)]);
  return w.finish(y, ['batch', H], opset);
}

const activationOf = (act: (w: GraphWriter, h: Value) => Value, opset?: number) => {
  const s = discoverStructure(mlpModel(act, opset));
  return { activation: s.mlps[0]?.activation, unmatched: s.unmatched };
};

describe('MLP activations', () => {
  it('names fused GELU ops: Gelu (opset 20, both forms), com.microsoft Gelu and FastGelu', () => {
    expect(activationOf((w, h) => w.op('/act', 'Gelu', [h]), 20).activation).toBe('gelu');
    expect(activationOf((w, h) => w.op('/act', 'Gelu', [h], { approximate: stringAttr('tanh') }), 20).activation).toBe('gelu_tanh');
    expect(activationOf((w, h) => w.op('/act', 'Gelu', [h], {}, 'com.microsoft')).activation).toBe('gelu');
    expect(activationOf((w, h) => w.op('/act', 'FastGelu', [h], {}, 'com.microsoft')).activation).toBe('gelu_tanh');
  });

  it("names the erf GELU in Hugging Face's order: x * 0.5 * (1 + erf(x * (1/sqrt2)))", () => {
    const hf = (w: GraphWriter, h: Value) => {
      const erf = w.op('/act', 'Erf', [w.op('/act', 'Mul', [h, w.scalar('/act', Math.SQRT1_2)])]);
      return w.op('/act', 'Mul', [w.op('/act', 'Mul', [h, w.scalar('/act', 0.5)]), w.op('/act', 'Add', [w.scalar('/act', 1), erf])]);
    };
    expect(activationOf(hf)).toEqual({ activation: 'gelu', unmatched: [] });
  });

  it('names SiLU, quick GELU (x * sigmoid(1.702 x)) and ReLU', () => {
    expect(activationOf((w, h) => w.op('/act', 'Mul', [w.op('/act', 'Sigmoid', [h]), h])).activation).toBe('silu');
    expect(activationOf((w, h) => w.op('/act', 'Mul', [h, w.op('/act', 'Sigmoid', [w.op('/act', 'Mul', [w.scalar('/act', 1.702), h])])])).activation).toBe('quick_gelu');
    expect(activationOf((w, h) => w.op('/act', 'Relu', [h])).activation).toBe('relu');
  });

  it('records a reason for an activation it does not know', () => {
    const r = activationOf((w, h) => w.op('/act', 'Mul', [h, w.op('/act', 'Exp', [w.op('/act', 'Neg', [h])])]));
    expect(r.activation).toBeUndefined();
    expect(r.unmatched).toEqual([
      { node: '/fc1/MatMul', opType: 'MatMul', reason: "the activation between 'fc1' and 'fc2' is not recognised (ops Neg, Exp, Mul)" },
    ]);
  });

  it('records a reason when an activation value is also read outside the MLP', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const h = w.op('/fc1', 'MatMul', [x, w.initializer('fc1.w', [H, W])]);
    const a = w.op('/act', 'Relu', [h]);
    const y = w.op('/fc2', 'MatMul', [a, w.initializer('fc2.w', [W, H])]);
    const side = w.op('/side', 'ReduceSum', [a]);
    w.g.outputs.push(side);
    const s = discoverStructure(w.finish(y, ['batch', H]));
    expect(s.mlps).toEqual([]);
    expect(s.unmatched[0]!.reason).toBe("the activation value '/act/Relu_output_0' is also read by '/side/ReduceSum'");
  });

  it('finds GeGLU: gelu(gate(x)) * up(x), then down', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const gate = w.op('/gate', 'MatMul', [x, w.initializer('gate.w', [H, W])]);
    const up = w.op('/up', 'MatMul', [x, w.initializer('up.w', [H, W])]);
    const y = w.op('/down', 'MatMul', [w.op('', 'Mul', [w.op('/act', 'Gelu', [gate], {}, 'com.microsoft'), up]), w.initializer('down.w', [W, H])]);
    const s = discoverStructure(w.finish(y, ['batch', H]));
    expect(s.mlps.map((m) => [m.activation, m.gate?.name, m.fc1.name, m.fc2.name, m.width])).toEqual([['geglu', 'gate', 'up', 'down', W]]);
  });

  it('does not take a classifier head (pooler -> tanh -> classifier) for an MLP', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', H]);
    const pooled = w.op('/pooler', 'Tanh', [w.op('/pooler', 'Gemm', [x, w.initializer('pooler.weight', [H, H])], { transB: { type: 'int', value: 1 } })]);
    const y = w.op('/classifier', 'Gemm', [pooled, w.initializer('classifier.weight', [2, H])], { transB: { type: 'int', value: 1 } });
    const s = discoverStructure(w.finish(y, ['batch', 2]));
    expect([s.linears.length, s.mlps.length, s.unmatched.length]).toEqual([2, 0, 0]);
  });

  it('reports a transformer MLP whose fc1 weight is not a constant', () => {
    const { model } = buildTransformer({ blocks: 2 });
    const fc1 = model.graph.nodes.find((n) => n.name === '/blocks.1/mlp/fc1/MatMul')!;
    fc1.setInput(1, new GraphWriter(1, model.graph).input('fc1_weight', [32, 64]));
    const s = discoverStructure(model);
    expect(s.blocks.map((b) => b.mlp?.activation)).toEqual(['gelu', undefined]);
    expect(s.unmatched).toEqual([
      { node: '/blocks.1/mlp/fc1/MatMul', opType: 'MatMul', reason: "second input is not a constant (it comes from graph input 'fc1_weight')" },
    ]);
  });
});
