import { describe, expect, it } from 'vitest';
import { checkGradients } from '../../src/autodiff/check.js';
import { buildGradientGraph } from '../../src/autodiff/gradient.js';
import { defaultPatterns, type Pattern } from '../../src/autodiff/patterns.js';
import { toDouble } from '../../src/autodiff/precision.js';
import { withRules } from '../../src/autodiff/rules/index.js';
import * as ew from '../../src/autodiff/rules/elementwise.js';
import type { RuleContext } from '../../src/autodiff/rules/types.js';
import { UserError } from '../../src/errors.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Node } from '../../src/ir/node.js';
import type { Value } from '../../src/ir/value.js';
import { modelFromBytes, modelToBytes } from '../../src/onnx/index.js';
import { Session } from '../../src/runtime/session.js';
import { TinyGraph, a } from './helpers.js';

/** y = tanh(x @ w + b) * x2, loss = ReduceSum(y). */
function smallModel(opset = 17) {
  const t = new TinyGraph(opset);
  const x = t.input('x', [2, 3]);
  const h = t.op('Add', [t.op('MatMul', [x, t.weight('w', [3, 3])]), t.weight('b', [3])]);
  const y = t.op('Mul', [t.op('Tanh', [h]), x]);
  const loss = t.op('ReduceSum', [y], { keepdims: a.int(0) });
  return { model: t.model(loss), feeds: t.feeds, loss: loss.name, h: h.name };
}

describe('buildGradientGraph', () => {
  it('outputs the loss and one gradient per tensor, and promotes initializers to inputs', async () => {
    const { model, feeds, loss } = smallModel();
    const before = modelToBytes(model);
    const grad = buildGradientGraph(model, { loss, wrt: ['w', 'x'] });
    expect(modelToBytes(model)).toEqual(before); // the source is untouched
    expect(grad.promoted).toEqual(['w']);
    expect(grad.model.graph.outputs.map((v) => v.name)).toEqual([loss, grad.gradients.w, grad.gradients.x]);
    expect(grad.model.graph.inputs.map((v) => v.name).sort()).toEqual(['w', 'x']);
    // round trip through bytes, then run: gradient shapes match their tensors
    const s = await Session.create(modelFromBytes(modelToBytes(grad.model)));
    const w = model.graph.value('w')!.initializer!;
    const out = await s.run({ ...feeds, w: { dtype: DataType.FLOAT, dims: [3, 3], data: w.toFloat32() } });
    await s.release();
    expect(out[grad.gradients.w!]!.dims).toEqual([3, 3]);
    expect(out[grad.gradients.x!]!.dims).toEqual([2, 3]);
  });

  it('differentiates against an intermediate value (the gradient reaching it)', async () => {
    const { model, feeds, loss, h } = smallModel();
    const r = await checkGradients(model, { wrt: ['x'], feeds, loss });
    expect(r.maxError).toBeLessThan(1e-6);
    const grad = buildGradientGraph(model, { loss, wrt: [h] });
    const s = await Session.create(grad.model);
    const out = await s.run(feeds);
    await s.release();
    // d loss / d h = (1 - tanh(h)^2) * x
    const hv = (await runForward(model, feeds, h)).data as Float32Array;
    const x = feeds.x!.data as Float32Array;
    const g = out[grad.gradients[h]!]!.data as Float32Array;
    for (let i = 0; i < 6; i++) expect(g[i]).toBeCloseTo((1 - Math.tanh(hv[i]!) ** 2) * x[i]!, 5);
  });

  it('gives zeros for a tensor the loss does not depend on', async () => {
    const t = new TinyGraph(17);
    const x = t.input('x', [2, 3]);
    const z = t.input('z', [4]);
    const loss = t.op('ReduceSum', [t.op('Mul', [x, x])], { keepdims: a.int(0) });
    const m = t.model(loss, t.op('Neg', [z]));
    const grad = buildGradientGraph(m, { loss: loss.name, wrt: ['x', 'z'] });
    const s = await Session.create(grad.model);
    const out = await s.run(t.feeds);
    await s.release();
    expect([...(out[grad.gradients.z!]!.data as Float32Array)]).toEqual([0, 0, 0, 0]);
  });

  it('names the node and op that has no gradient rule', () => {
    const t = new TinyGraph(17);
    const x = t.input('x', [2, 3]);
    const y = t.g.addNode('Sin', [x], 1, { name: 'the_sine' }).output(0);
    const loss = t.op('ReduceSum', [y], { keepdims: a.int(0) });
    const m = t.model(loss);
    expect(() => buildGradientGraph(m, { loss: loss.name, wrt: ['x'] })).toThrow(UserError);
    expect(() => buildGradientGraph(m, { loss: loss.name, wrt: ['x'] })).toThrow(/node 'the_sine' \(Sin\).*no gradient rule/);
  });

  it('does not mind an op with no rule off the path between the tensors and the loss', () => {
    const t = new TinyGraph(17);
    const x = t.input('x', [2, 3]);
    const loss = t.op('ReduceSum', [t.op('Mul', [x, x])], { keepdims: a.int(0) });
    const m = t.model(loss, t.op('Sin', [x]));
    expect(() => buildGradientGraph(m, { loss: loss.name, wrt: ['x'] })).not.toThrow();
  });

  it('refuses models before opset 13, and names unknown tensors', () => {
    const { model, loss } = smallModel(12);
    expect(() => buildGradientGraph(model, { loss, wrt: ['x'] })).toThrow(/opset 13/);
    const ok = smallModel();
    expect(() => buildGradientGraph(ok.model, { loss: ok.loss, wrt: ['nope'] })).toThrow(/no tensor named 'nope'/);
    expect(() => buildGradientGraph(ok.model, { loss: 'nope', wrt: ['x'] })).toThrow(/no tensor named 'nope'/);
  });

  for (const [form, anchor] of [
    ['erf, (h * a) * 0.5', 'Erf'],
    ['erf, (h * 0.5) * a', 'Erf'],
    ['tanh, 0.5 * (h * (1 + t)), h * (h * h)', 'Tanh'],
    ['tanh, (h * 0.5) * (t + 1), Pow(h, 3)', 'Tanh'],
    ['tanh, (h * (t + 1)) * 0.5, (h * h) * h', 'Tanh'],
  ] as const) {
    it(`differentiates the GELU ${form} as one pattern, with the same gradient`, async () => {
      const { model, t, act } = geluModel(form);
      const y = model.graph.outputs[0]!;
      const check = await checkGradients(model, { wrt: ['x', 'w'], feeds: t.feeds });
      expect(check.maxError).toBeLessThan(1e-5);
      // the pattern's backward has no node of its own per GELU op, and no sum of two contributions at h
      const fused = buildGradientGraph(model, { loss: y.name, wrt: ['w'] });
      const plain = buildGradientGraph(model, { loss: y.name, wrt: ['w'], patterns: false });
      const names = (m: typeof fused) => m.model.graph.nodes.map((n) => n.name);
      const own = `${act.get(anchor)!.name}_grad`;
      expect(names(fused).some((n) => n.startsWith(own))).toBe(false);
      expect(names(plain).some((n) => n.startsWith(own))).toBe(true);
      expect(fused.model.graph.nodes.length).toBeLessThan(plain.model.graph.nodes.length);
      const run = async (g: typeof fused) => {
        const s = await Session.create(g.model);
        const w = model.graph.value('w')!.initializer!;
        const out = await s.run({ ...t.feeds, w: { dtype: DataType.FLOAT, dims: [4, 6], data: w.toFloat32() } });
        await s.release();
        return out[g.gradients.w!]!.data as Float32Array;
      };
      const [a1, a2] = [await run(fused), await run(plain)];
      for (let i = 0; i < a1.length; i++) expect(a1[i]).toBeCloseTo(a2[i]!, 4);
    });
  }

  it('a deliberately broken GELU pattern fails the gradient check', async () => {
    for (const [form, anchor] of [['erf, (h * a) * 0.5', 'Erf'], ['tanh, 0.5 * (h * (1 + t)), h * (h * h)', 'Tanh']] as const) {
      const { model, t } = geluModel(form);
      // the pattern's derivative 2% off
      const broken = defaultPatterns.map((p) =>
        p.anchor !== anchor
          ? p
          : {
              ...p,
              match(...args: Parameters<Pattern['match']>) {
                const c = p.match(...args);
                return c && { ...c, backward: (ctx: RuleContext) => ctx.emit('Mul', [c.backward(ctx), ctx.scalar(1.02, c.input)]) };
              },
            },
      );
      const bad = await checkGradients(model, { wrt: ['x', 'w'], feeds: t.feeds, patterns: broken });
      expect(bad.maxError).toBeGreaterThan(1e-3);
    }
  });

  it('leaves a GELU alone when one of its inner values is needed elsewhere', () => {
    const t = new TinyGraph(17);
    const h = t.input('h', [2, 3]);
    const u = t.op('Div', [h, t.constant('sqrt2', DataType.FLOAT, [], [Math.SQRT2])]);
    const e = t.op('Erf', [u]);
    const y = t.op('Mul', [t.op('Mul', [h, t.op('Add', [e, t.constant('one', DataType.FLOAT, [], [1])])]), t.constant('half', DataType.FLOAT, [], [0.5])]);
    const model = t.model(y, e);
    const g = buildGradientGraph(model, { loss: y.name, wrt: ['h'] });
    expect(g.model.graph.nodes.some((n) => n.name.startsWith(`${e.producer()!.name}_grad`))).toBe(true);
  });

  it('leaves a tanh GELU alone when its cube is needed elsewhere', () => {
    const { model, act } = geluModel('tanh, 0.5 * (h * (1 + t)), h * (h * h)');
    const cube = act.get('Tanh')!.input(0)!.producer()!.input(1)!.producer()!.input(1)!.producer()!.input(1)!;
    model.graph.outputs.push(cube);
    const y = model.graph.outputs[0]!;
    const g = buildGradientGraph(model, { loss: y.name, wrt: ['x'] });
    expect(g.model.graph.nodes.some((n) => n.name.startsWith(`${act.get('Tanh')!.name}_grad`))).toBe(true);
  });

  it('a batched product transposes nothing: FusedMatMul in float32, written out as MatMul in float64 copies', async () => {
    const t = new TinyGraph(17);
    const y = t.op('MatMul', [t.input('x', [2, 3, 4, 5]), t.input('z', [2, 3, 5, 6])]);
    const model = t.model(y);
    const grad = buildGradientGraph(model, { loss: y.name, wrt: ['x', 'z'] });
    const ops = grad.model.graph.nodes.map((n) => n.opType);
    expect(ops.filter((o) => o === 'FusedMatMul')).toHaveLength(2);
    expect(ops).not.toContain('Transpose');
    expect(grad.model.opsetImports.get('com.microsoft')).toBe(1);
    // FusedMatMul with alpha and both transposes: the float64 copy computes the same in MatMul
    const f = new TinyGraph(17);
    const p = f.op('FusedMatMul', [f.input('a', [2, 5, 4]), f.input('b', [2, 6, 5])], { alpha: a.float(0.5), transA: a.int(1), transB: a.int(1) }, 1, 'com.microsoft');
    const fused = f.model(p);
    const wide = toDouble(fused);
    expect(wide.graph.nodes.map((n) => n.opType)).not.toContain('FusedMatMul');
    const run = async (m: typeof fused, dt: DataType) => {
      const s = await Session.create(m);
      const feeds = Object.fromEntries(Object.entries(f.feeds).map(([k, v]) => [k, dt === DataType.DOUBLE ? { dtype: dt, dims: v.dims, data: Float64Array.from(v.data as Float32Array) } : v]));
      const out = (await s.run(feeds))[p.name]!;
      await s.release();
      return out;
    };
    const [r32, r64] = [await run(fused, DataType.FLOAT), await run(wide, DataType.DOUBLE)];
    expect(r64.dims).toEqual([2, 4, 6]);
    for (let i = 0; i < r32.data.length; i++) expect(r64.data[i]).toBeCloseTo(r32.data[i] as number, 5);
  });

  it('a deliberately broken rule fails the gradient check', async () => {
    const { model, feeds, loss } = smallModel();
    const good = await checkGradients(model, { wrt: ['x', 'w'], feeds, loss });
    expect(good.maxError).toBeLessThan(1e-6);
    // Mul's gradient for its first input with the sign flipped
    const broken = withRules({
      Mul: {
        backward(ctx: RuleContext) {
          const [da, db] = ew.mul.backward(ctx);
          return [da && ctx.emit('Neg', [da]), db];
        },
      },
    });
    const bad = await checkGradients(model, { wrt: ['x', 'w'], feeds, loss, rules: broken });
    expect(bad.maxError).toBeGreaterThan(1e-3);
    // and a rule that forgets a factor (Tanh passing dy through)
    const tanhOff = withRules({ Tanh: { inputs: () => [0], backward: (ctx: RuleContext) => [ctx.dy()!] } });
    const bad2 = await checkGradients(model, { wrt: ['w'], feeds, loss, rules: tanhOff });
    expect(bad2.maxError).toBeGreaterThan(1e-3);
  });
});

async function runForward(model: import('../../src/ir/model.js').Model, feeds: Record<string, import('../../src/ir/array-tensor.js').ArrayTensor>, name: string) {
  const s = await Session.create(model, { expose: [name] });
  const out = await s.run(feeds, [name]);
  await s.release();
  return out[name]!;
}

/** h = x @ w, then a GELU written the way `form` says; `act` holds its Erf or Tanh node. */
function geluModel(form: string) {
  const t = new TinyGraph(13);
  const h = t.op('MatMul', [t.input('x', [2, 5, 4]), t.weight('w', [4, 6])]);
  const c = (name: string, v: number) => t.constant(name, DataType.FLOAT, [], [v]);
  let a: Value;
  let y: Value;
  const act = new Map<string, Node>();
  if (form.startsWith('erf')) {
    const u = t.op('Div', [h, c('sqrt2', Math.SQRT2)]);
    const e = t.op('Erf', [u]);
    act.set('Erf', e.producer()!);
    a = t.op('Add', [e, c('one', 1)]);
    y = form.includes('(h * a) * 0.5') ? t.op('Mul', [t.op('Mul', [h, a]), c('half', 0.5)]) : t.op('Mul', [t.op('Mul', [h, c('half', 0.5)]), a]);
  } else {
    const cube = form.includes('Pow') ? t.op('Pow', [h, c('three', 3)]) : form.includes('(h * h) * h') ? t.op('Mul', [t.op('Mul', [h, h]), h]) : t.op('Mul', [h, t.op('Mul', [h, h])]);
    const inner = form.includes('Pow') ? t.op('Add', [h, t.op('Mul', [cube, c('c', 0.044715)])]) : t.op('Add', [h, t.op('Mul', [c('c', 0.044715), cube])]);
    const th = t.op('Tanh', [form.includes('Pow') ? t.op('Mul', [inner, c('k', Math.sqrt(2 / Math.PI))]) : t.op('Mul', [c('k', Math.sqrt(2 / Math.PI)), inner])]);
    act.set('Tanh', th.producer()!);
    a = form.includes('(1 + t)') ? t.op('Add', [c('one', 1), th]) : t.op('Add', [th, c('one', 1)]);
    if (form.includes('0.5 * (h * (1 + t))')) y = t.op('Mul', [c('half', 0.5), t.op('Mul', [h, a])]);
    else if (form.includes('(h * 0.5)')) y = t.op('Mul', [t.op('Mul', [h, c('half', 0.5)]), a]);
    else y = t.op('Mul', [t.op('Mul', [h, a]), c('half', 0.5)]);
  }
  return { model: t.model(y), t, act };
}
