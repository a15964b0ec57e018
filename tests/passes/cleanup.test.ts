import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { cleanup } from '../../src/passes/cleanup.js';
import type { Pass } from '../../src/passes/pass.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { UserError } from '../../src/errors.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { tinyClassifier, tinySamples } from '../helpers/tiny-classifier.js';

function cluttered() {
  const m = tinyClassifier();
  const g = m.graph;
  // Identity chains inside the graph, a dead branch, an unused initializer, and an output Identity
  const xw = g.value('xw')!;
  const id1 = g.addNode('Identity', [xw], ['xw_id1']);
  const id2 = g.addNode('Identity', [id1.output(0)], ['xw_id2']);
  const add = g.nodes.find((n) => n.opType === 'Add')!;
  add.setInput(0, id2.output(0));
  g.addNode('Neg', [xw], ['dead']);
  g.addInitializer(Tensor.from('unused', DataType.FLOAT, [2], [1, 2]));
  const passthrough = g.addNode('Identity', [g.inputs[0]!], ['features_copy']);
  g.outputs.push(passthrough.output(0));
  return m;
}

describe('cleanup pass', () => {
  it('removes identities, dead nodes and unused initializers, keeps outputs identical', async () => {
    const before = cluttered();
    const { model, report } = await pipeline([cleanup()]).apply(before);
    expect(model.graph.nodes.map((n) => n.opType)).toEqual(['MatMul', 'Add', 'Identity']);
    expect(model.graph.value('unused')).toBeUndefined();
    expect(model.graph.outputs.map((v) => v.name)).toEqual(['logits', 'features_copy']);
    expect(report.passes[0]!.summary).toEqual({ identitiesRemoved: 2, deadNodesRemoved: 1, initializersRemoved: 1 });
    expect(report.entries.filter((e) => e.level === 'skipped').map((e) => e.target)).toHaveLength(1);
    // the input model is untouched by apply()
    expect(before.graph.nodes).toHaveLength(6);
    const x = tinySamples(4).x;
    const feeds = { features: { dtype: DataType.FLOAT, dims: [4, 6], data: Float32Array.from(x.flatMap((r) => [...r])) } };
    const [a, b] = await runBoth(before, model, feeds);
    expect(sameOutputs(a, b)).toBe(true);
  });
});

describe('pipeline', () => {
  it('nests, records each pass, and names the pass that failed', async () => {
    const counter: Pass = { name: 'count-nodes', run: (model) => ({ model, modified: false, summary: { nodes: model.graph.nodes.length } }) };
    const broken: Pass = { name: 'broken', run: () => { throw new Error('boom'); } };
    const userBroken: Pass = { name: 'picky', run: () => { throw new UserError('node X is not supported'); } };
    const inner = pipeline([cleanup(), counter], 'inner');
    const { report } = await pipeline([inner, counter]).apply(cluttered());
    expect(report.passes.map((p) => p.pass)).toEqual(['cleanup', 'count-nodes', 'inner', 'count-nodes']);
    expect(report.passes[1]!.summary).toEqual({ nodes: 3 });
    await expect(pipeline([inner, broken]).apply(cluttered())).rejects.toThrow(/pass 'broken' failed: boom/);
    await expect(pipeline([pipeline([userBroken], 'outer-inner')]).apply(cluttered())).rejects.toThrow(/pass 'picky': node X is not supported/);
  });
});

describe('pipeline.apply from a program', () => {
  it('accepts options with a calibration path and leaves the input model alone', async () => {
    const { tempDir } = await import('../helpers/tmp.js');
    const { writeTestData } = await import('../helpers/tiny-classifier.js');
    const path = await import('node:path');
    const dir = tempDir();
    writeTestData(path.join(dir, 'calib'), tinySamples(4).x, [0, 1, 2, 0]);
    const before = cluttered();
    const result = await pipeline([cleanup()]).apply(before, { calibration: path.join(dir, 'calib') });
    expect(result.report.passes.map((p) => p.pass)).toEqual(['cleanup']);
    expect(result.report.summaryOf('cleanup')).toEqual({ identitiesRemoved: 2, deadNodesRemoved: 1, initializersRemoved: 1 });
    expect(result.model.graph.nodes).toHaveLength(3);
    expect(before.graph.nodes).toHaveLength(6);
  });

  it('has one way to run: run() without a pass context is refused, naming apply()', async () => {
    const p = pipeline([cleanup()]);
    await expect(p.run(cluttered(), { calibration: 'calib/' } as never)).rejects.toThrow(/a program calls apply\(model, options\)/);
  });
});
