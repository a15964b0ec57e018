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
  it('records why when the head count of the q reshape is computed, not constant', () => {
    const { model } = buildTransformer({ blocks: 2, hidden: 32, heads: 4 });
    const concat = qShapeConcat(model);
    // torch writes this for q.view(b, s, q.size(-1) // head_size, head_size)
    const w = new GraphWriter(1, model.graph);
    const q = node(model, '/blocks.0/attn/Reshape').input(0)!;
    const heads = w.op('/heads', 'Div', [w.size('/heads', q, -1), w.int('/heads', 8)]);
    concat.setInput(2, w.op('/heads', 'Unsqueeze', [heads, w.ints('/heads', [0])]));
    const s = discoverStructure(model);
    expect(s.attentions).toHaveLength(1);
    expect(s.blocks.map((b) => b.attention?.numHeads)).toEqual([undefined, 4]);
    expect(s.unmatched).toContainEqual({
      node: '/blocks.0/attn/Softmax',
      opType: 'Softmax',
      reason: "head count cannot be read: entry 2 of the shape of q's Reshape '/blocks.0/attn/Reshape' is not a constant",
    });
    // the MatMuls of an unrecognised attention are reported too: they have no constant weight
    expect(s.unmatched.map((u) => u.node)).toEqual(['/blocks.0/attn/MatMul', '/blocks.0/attn/Softmax', '/blocks.0/attn/MatMul_1']);
  });

  it('records a reason when the reshape disagrees with the projection width', () => {
    const { model } = buildTransformer({ hidden: 32, heads: 4, shapes: 'constant' });
    const concat = qShapeConcat(model);
    concat.setInput(1, new GraphWriter(1, model.graph).ints('/bad', [2]));
    const s = discoverStructure(model);
    expect(s.unmatched).toContainEqual({
      node: '/blocks.0/attn/Softmax',
      opType: 'Softmax',
      reason: "q projection 'blocks.0.attn.query' has 32 outputs but its Reshape splits them into 2 heads of 8",
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

  it('says that fused q/k/v projections are not recognised', () => {
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
    expect(s.attentions).toEqual([]);
    expect(s.unmatched.find((u) => u.opType === 'Softmax')?.reason).toBe(
      "q is not produced by a linear layer (its Reshape reads Split '/attn/Split') (fused q/k/v projections are not recognised)",
    );
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
