import { describe, expect, it } from 'vitest';
import { discoverStructure, summarizeStructure } from '../../src/discover/index.js';
import type { Node } from '../../src/ir/node.js';
import { Model } from '../../src/ir/model.js';
import { buildTransformer, GraphWriter, Rng } from '../helpers/transformer-builder.js';

describe('discovery robustness', () => {
  it('returns an empty structure for an empty model and for a graph without transformer parts', () => {
    expect(discoverStructure(new Model())).toEqual({ linears: [], norms: [], attentions: [], mlps: [], residuals: [], blocks: [], unmatched: [] });
    const w = new GraphWriter();
    const x = w.input('x', ['batch', 1, 8, 8]);
    const y = w.op('/conv', 'Relu', [w.op('/conv', 'Conv', [x, w.initializer('conv.weight', [4, 1, 3, 3])])]);
    const model = w.finish(w.op('', 'Softmax', [y], { axis: { type: 'int', value: 1 } }), ['batch', 4, 6, 6]);
    const s = discoverStructure(model);
    expect(s.blocks).toEqual([]);
    expect(s.unmatched).toEqual([{ node: '/Softmax', opType: 'Softmax', reason: 'softmax over axis 1, not the last axis of the scores' }]);
    expect(summarizeStructure(model, s)).toMatchObject({ opset: 17, hidden: null, blocks: [], linears: 0, norms: 0, opCounts: { Conv: 1, Relu: 1, Softmax: 1, Identity: 1 } });
  });

  it('numbers blocks in topological order whatever order the nodes are stored in', () => {
    const { model } = buildTransformer({ blocks: 3 });
    // a graph's node list need not be sorted; reverse it behind the IR's back
    (model.graph as unknown as { nodeList: Node[] }).nodeList.reverse();
    const s = discoverStructure(model);
    expect(s.blocks.map((b) => b.attention!.q.name)).toEqual(['blocks.0.attn.query', 'blocks.1.attn.query', 'blocks.2.attn.query']);
    expect(s.blocks.map((b) => b.index)).toEqual([0, 1, 2]);
    expect(s.unmatched).toEqual([]);
  });

  it('does not modify the model', () => {
    const { model } = buildTransformer({ blocks: 2, opset: 13, mask: 'additive-input' });
    const before = model.graph.nodes.map((n) => n.toString());
    discoverStructure(model);
    expect(model.graph.nodes.map((n) => n.toString())).toEqual(before);
  });

  it('never throws on randomly rewired graphs (cycles included)', () => {
    const rng = new Rng(7);
    for (let trial = 0; trial < 60; trial++) {
      const opset = ([13, 14, 17] as const)[trial % 3];
      const { model } = buildTransformer({ blocks: 2, opset, activation: trial % 2 ? 'swiglu' : 'gelu', mask: trial % 4 ? 'causal-where' : 'additive-input' });
      const nodes = model.graph.nodes;
      const values = nodes.flatMap((n) => n.outputs);
      for (let k = 0; k < 1 + (trial % 5); k++) {
        const n = nodes[Math.floor(rng.uniform() * nodes.length)]!;
        if (n.inputs.length === 0) continue;
        n.setInput(Math.floor(rng.uniform() * n.inputs.length), rng.uniform() < 0.2 ? undefined : values[Math.floor(rng.uniform() * values.length)]);
      }
      const s = discoverStructure(model);
      expect(() => JSON.stringify(summarizeStructure(model, s))).not.toThrow();
    }
  });
});
