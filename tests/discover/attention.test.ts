import { describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import type { Node } from '../../src/ir/node.js';
import { Tensor } from '../../src/ir/tensor.js';
import { Session } from '../../src/runtime/session.js';
import { buildTransformer, GraphWriter, type BuiltTransformer } from '../helpers/transformer-builder.js';

function node(model: Model, name: string): Node {
  const n = model.graph.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

/** The Concat that builds the head-splitting Reshape target of block 0's q. */
function qShapeConcat(model: Model): Node {
  return node(model, '/blocks.0/attn/Reshape').input(1)!.producer()!;
}

async function outputsOf(built: BuiltTransformer, model: Model): Promise<Float32Array> {
  const session = await Session.create(model);
  try {
    return (await session.run(built.feeds(2))).y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('attention', () => {
  it('reads the head count of a q reshape computed from the projection width', () => {
    const { model } = buildTransformer({ blocks: 2, hidden: 32, heads: 4 });
    const concat = qShapeConcat(model);
    // torch writes this for q.view(b, s, q.size(-1) // head_size, head_size)
    const w = new GraphWriter(1, model.graph);
    const q = node(model, '/blocks.0/attn/Reshape').input(0)!;
    const heads = w.op('/heads', 'Div', [w.size('/heads', q, -1), w.int('/heads', 8)]);
    concat.setInput(2, w.op('/heads', 'Unsqueeze', [heads, w.ints('/heads', [0])]));
    const s = discoverStructure(model);
    // q.size(-1) // 8 is evaluated from the projection's static width
    expect(s.unmatched).toEqual([]);
    expect(s.blocks.map((b) => b.attention?.numHeads)).toEqual([4, 4]);
  });

  it('records a reason when the reshape disagrees with the projection width', () => {
    const { model } = buildTransformer({ hidden: 32, heads: 4, shapes: 'constant' });
    const concat = qShapeConcat(model);
    concat.setInput(1, new GraphWriter(1, model.graph).ints('/bad', [2]));
    const s = discoverStructure(model);
    expect(s.unmatched).toContainEqual({
      node: '/blocks.0/attn/Softmax',
      opType: 'Softmax',
      reason: "a reshape of [batch,8,32] into [batch,8,2,8] (factors are left over after the reshape) at Reshape '/blocks.0/attn/Reshape'",
    });
  });

  it('reads heads from a constant shape with -1 for the head size, and from static shapes', () => {
    const { model } = buildTransformer({ hidden: 48, heads: 6, shapes: 'constant', blocks: 1 });
    const concat = qShapeConcat(model);
    concat.setInput(2, new GraphWriter(1, model.graph).ints('/minus', [-1]));
    concat.setInput(1, new GraphWriter(2, model.graph).ints('/six', [6]));
    const s = discoverStructure(model);
    expect(s.unmatched).toEqual([]);
    expect([s.attentions[0]!.numHeads, s.attentions[0]!.headSize]).toEqual([6, 8]);
  });

  it('finds attention whose scores are computed as k @ q^T and transposed back', async () => {
    const built = buildTransformer({ blocks: 1, hidden: 32, heads: 4, mask: 'causal-where' });
    const model = built.model;
    const before = await outputsOf(built, model);
    const scores = node(model, '/blocks.0/attn/MatMul');
    const q = scores.input(0)!.producer()!.input(0)!; // reshaped q, before its Transpose
    const k = scores.input(1)!.producer()!.input(0)!;
    const w = new GraphWriter(1, model.graph);
    const perm = (p: number[]) => ({ perm: { type: 'ints' as const, value: p } });
    const kq = w.op('/swap', 'MatMul', [w.op('/swap', 'Transpose', [k], perm([0, 2, 1, 3])), w.op('/swap', 'Transpose', [q], perm([0, 2, 3, 1]))]);
    scores.output(0).replaceAllUsesWith(w.op('/swap', 'Transpose', [kq], perm([0, 1, 3, 2])));
    model.graph.removeDeadNodes();
    model.graph.toposort();
    const after = await outputsOf(built, model);
    after.forEach((v, i) => expect(v).toBeCloseTo(before[i]!, 4));

    const s = discoverStructure(model);
    expect(s.unmatched).toEqual([]);
    expect(s.attentions.map((a) => [a.numHeads, a.headSize, a.causal, a.q.name, a.k.name])).toEqual([[4, 8, true, 'blocks.0.attn.query', 'blocks.0.attn.key']]);
  });

  it('recognises one packed q/k/v projection cut by Split (GPT-2 c_attn)', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 8, 32]);
    const qkv = w.op('/c_attn', 'MatMul', [x, w.initializer('c_attn.weight', [32, 96])]);
    const axis = { axis: { type: 'int' as const, value: 2 } };
    const split = w.g.addNode('Split', [qkv, w.ints('/attn', [32, 32, 32])], ['q', 'k', 'v'], { name: '/attn/Split', attributes: axis });
    const heads = (t: number) => w.transpose('/attn', w.op('/attn', 'Reshape', [split.output(t), w.ints('/attn', [0, 0, 4, 8])]), t === 1 ? [0, 2, 3, 1] : [0, 2, 1, 3]);
    const probs = w.op('/attn', 'Softmax', [w.op('/attn', 'MatMul', [heads(0), heads(1)])], { axis: { type: 'int', value: -1 } });
    const ctx = w.op('/attn', 'Reshape', [w.transpose('/attn', w.op('/attn', 'MatMul', [probs, heads(2)]), [0, 2, 1, 3]), w.ints('/attn', [0, 0, 32])]);
    const y = w.op('/c_proj', 'MatMul', [ctx, w.initializer('c_proj.weight', [32, 32])]);
    const s = discoverStructure(w.finish(y, ['batch', 8, 32]));
    expect(s.unmatched).toEqual([]);
    const a = s.attentions[0]!;
    expect(a.q).toBe(a.k);
    expect(a.q).toBe(a.v);
    expect([a.qFeatures, a.kFeatures, a.vFeatures]).toEqual([{ start: 0, size: 32 }, { start: 32, size: 32 }, { start: 64, size: 32 }]);
    expect([a.numHeads, a.numKvHeads, a.headSize]).toEqual([4, 4, 8]);
    // the split sizes and the three head reshapes state the head count; the context reshape reads 0, 0, 32
    expect(a.headSites.map((x) => `${x.node.opType}:${x.entry}`).sort()).toEqual(['Reshape:2', 'Reshape:2', 'Reshape:2', 'Reshape:2', 'Split:0', 'Split:1', 'Split:2']);
  });

  it('says that a Softmax outside attention is not attention', () => {
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 8]);
    const logits = w.op('/head', 'Add', [w.op('/head', 'MatMul', [x, w.initializer('w', [8, 3])]), w.initializer('b', [3])]);
    const s = discoverStructure(w.finish(w.op('', 'Softmax', [logits], { axis: { type: 'int', value: -1 } }), ['batch', 3]));
    expect(s.linears).toHaveLength(1);
    expect(s.unmatched).toEqual([
      { node: '/Softmax', opType: 'Softmax', reason: "not attention: no MatMul of two computed values (q @ k^T) before the Softmax, which reads Add '/head/Add'" },
    ]);
  });

  it('recognises masked_fill (Where(mask, -inf, scores)) of a sliced causal buffer, and a mask from a boolean input', () => {
    const { model } = buildTransformer({ blocks: 2, mask: 'causal-where', seq: 8 });
    const w = new GraphWriter(1, model.graph);
    // block 0: HF GPT-2 style, a slice of a larger constant buffer whose end comes from a Shape
    const where0 = node(model, '/blocks.0/attn/Where');
    const upper = Array.from({ length: 16 * 16 }, (_, i) => (i % 16 > Math.floor(i / 16) ? 1 : 0));
    const buffer = w.constant('/mask', Tensor.from('bias', DataType.BOOL, [1, 1, 16, 16], upper));
    const len = w.op('/mask', 'Unsqueeze', [w.size('/mask', where0.input(1)!, 3), w.ints('/mask', [0])]);
    const zeros = w.ints('/mask', [0, 0]);
    const sliced = w.op('/mask', 'Slice', [buffer, zeros, w.op('/mask', 'Concat', [len, len], { axis: { type: 'int', value: 0 } }), w.ints('/mask', [2, 3])]);
    const fill = w.g.addNode('Where', [sliced, where0.input(2), where0.input(1)], ['/blocks.0/attn/Fill_output_0'], { name: '/blocks.0/attn/Fill' });
    where0.output(0).replaceAllUsesWith(fill.output(0));
    // block 1: keep where a boolean input says so
    const where1 = node(model, '/blocks.1/attn/Where');
    where1.setInput(0, w.input('keep', ['batch', 1, 8, 8], DataType.BOOL));
    model.graph.removeDeadNodes();
    const s = discoverStructure(model);
    expect(s.unmatched).toEqual([]);
    expect(s.attentions.map((a) => [a.causal, a.mask?.kind, a.mask?.source])).toEqual([
      [true, 'where', undefined],
      [false, 'where', 'keep'],
    ]);
  });

  it('says that cross-attention (q and k/v reading different inputs) is not recognised', () => {
    const { model } = buildTransformer({ blocks: 1 });
    const key = node(model, '/blocks.0/attn/key/MatMul');
    const value = node(model, '/blocks.0/attn/value/MatMul');
    const memory = new GraphWriter(1, model.graph).input('memory', ['batch', 8, 32]);
    key.setInput(0, memory);
    value.setInput(0, memory);
    const s = discoverStructure(model);
    expect(s.unmatched).toContainEqual({
      node: '/blocks.0/attn/Softmax',
      opType: 'Softmax',
      reason: 'q, k and v do not read the same input (cross-attention is not recognised)',
    });
  });
});
