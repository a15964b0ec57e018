import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';

const f32 = (shape: (number | string)[]) => ({ kind: 'tensor' as const, dtype: DataType.FLOAT, shape });

function chain(): { g: Graph; model: Model } {
  const g = new Graph('g');
  const x = g.addInput('x', f32(['n', 4]));
  const w = g.addInitializer(Tensor.from('w', DataType.FLOAT, [4, 4], Array.from({ length: 16 }, (_, i) => i)));
  const a = g.addNode('MatMul', [x, w], ['a'], { name: 'mm' });
  const b = g.addNode('Relu', [a.output(0)], ['b'], { name: 'relu' });
  const c = g.addNode('Identity', [b.output(0)], ['c'], { name: 'id' });
  g.outputs.push(c.output(0));
  return { g, model: new Model(g) };
}

describe('def-use links', () => {
  it('records producers and uses, and keeps them right through setInput and removeNode', () => {
    const { g } = chain();
    const a = g.value('a')!;
    expect(a.producer()?.name).toBe('mm');
    expect(a.uses().map((u) => [u.node.name, u.index])).toEqual([['relu', 0]]);
    const relu = g.nodes.find((n) => n.name === 'relu')!;
    relu.setInput(0, g.value('x'));
    expect(a.uses()).toHaveLength(0);
    expect(g.value('x')!.uses().map((u) => u.node.name).sort()).toEqual(['mm', 'relu']);
    expect(() => g.removeNode(relu)).toThrow(/read by 'id'/);
  });

  it('replaceAllUsesWith moves node readers and graph outputs, keeping the output name', () => {
    const { g } = chain();
    const id = g.nodes.find((n) => n.name === 'id')!;
    const c = g.value('c')!;
    c.replaceAllUsesWith(id.input(0)!);
    g.removeNode(id);
    expect(g.outputs[0]!.name).toBe('c');
    expect(g.outputs[0]!.producer()?.opType).toBe('Relu');
  });

  it('toposort orders nodes after their producers and detects cycles', () => {
    const { g } = chain();
    const nodes = [...g.nodes];
    // reverse the list by removing and re-inserting at the front
    for (const n of nodes) {
      (g as unknown as { nodeList: unknown[] }).nodeList.splice(g.nodes.indexOf(n), 1);
      (g as unknown as { nodeList: unknown[] }).nodeList.unshift(n);
    }
    expect(g.nodes.map((n) => n.name)).toEqual(['id', 'relu', 'mm']);
    g.toposort();
    expect(g.nodes.map((n) => n.name)).toEqual(['mm', 'relu', 'id']);
    const mm = g.nodes[0]!;
    mm.setInput(0, g.value('c'));
    expect(() => g.toposort()).toThrow(/cycle/);
  });

  it('removes dead nodes and unused initializers', () => {
    const { g } = chain();
    const unused = g.addInitializer(Tensor.from('unused', DataType.FLOAT, [1], [1]));
    g.addNode('Neg', [g.value('a')!], ['dead1'], { name: 'dead1' });
    g.addNode('Exp', [g.value('dead1')!, unused], ['dead2'], { name: 'dead2' });
    expect(g.removeDeadNodes()).toBe(2);
    expect(g.removeUnusedInitializers()).toEqual(['unused']);
    expect(g.value('unused')).toBeUndefined();
    expect(g.nodes.map((n) => n.name)).toEqual(['mm', 'relu', 'id']);
  });

  it('clone is deep for structure and independent of the original', () => {
    const { model } = chain();
    const copy = model.clone();
    const relu = copy.graph.nodes.find((n) => n.name === 'relu')!;
    relu.opType = 'Sigmoid';
    copy.graph.value('a')!.replaceAllUsesWith(copy.graph.value('x')!);
    expect(model.graph.nodes.find((n) => n.name === 'relu')!.opType).toBe('Relu');
    expect(model.graph.value('a')!.uses()).toHaveLength(1);
    expect(copy.graph.value('w')!.initializer).toBe(model.graph.value('w')!.initializer);
  });

  it('uniqueName avoids existing names', () => {
    const { g } = chain();
    expect(g.uniqueName('a')).not.toBe('a');
    expect(g.uniqueName('fresh')).toBe('fresh');
  });
});
