import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel } from '../../src/onnx/index.js';
import { prune, type PruneSummary } from '../../src/passes/prune.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { calibrationBatch } from '../../src/prune/cost.js';
import { runBoth } from '../helpers/compare.js';
import { fixtures } from '../helpers/fixtures.js';
import { maxRelDiff } from './helpers.js';

/**
 * The model with the given sublayers switched off but still in the graph: the sublayer's input
 * to its residual Add is multiplied by 0, so the Add passes its skip input through.
 */
function zeroed(source: Model, kind: 'attention' | 'mlp', blocks: number[]): Model {
  const m = source.clone();
  const g = m.graph;
  const zero = g.addInitializer(Tensor.from(g.uniqueName('test_zero'), DataType.FLOAT, [], [0]));
  for (const b of discoverStructure(m).blocks.filter((x) => blocks.includes(x.index))) {
    const r = (kind === 'attention' ? b.attentionResidual : b.mlpResidual)!;
    const slot = r.add.inputs.findIndex((v) => v !== r.skip);
    const mul = g.addNode('Mul', [r.add.inputs[slot]!, zero], [g.uniqueName('test_zeroed')], { before: r.add });
    r.add.setInput(slot, mul.output(0));
  }
  return m;
}

describe.each(fixtures())('LLM-Drop on $name', (f) => {
  const blocks = f.architecture.blocks;
  it.each([
    ['drop-attention', 1],
    ['drop-attention', blocks],
    ['drop-mlp', 1],
    ['drop-mlp', blocks],
  ] as const)('--method %s --count %i removes the most similar sublayers and gives the outputs of switching them off', async (method, count) => {
    const model = loadModel(f.model);
    // dropping every attention sublayer breaks the model on purpose: the quality floor would refuse it
    const { model: out, report } = await pipeline([prune({ method, count, samples: 8 })]).apply(model, { calibration: openDataset(f.calibration), threads: 2, floor: false });
    const s = report.passes[0]!.summary as unknown as PruneSummary;
    const kind = method === 'drop-attention' ? 'attention' : 'mlp';
    // the dropped ones are the `count` most similar; similarities are sorted, one per block
    expect(s.similarity!.map((x) => x.block).sort()).toEqual(Array.from({ length: blocks }, (_, i) => i));
    for (let i = 1; i < s.similarity!.length; i++) expect(s.similarity![i]!.similarity).toBeLessThanOrEqual(s.similarity![i - 1]!.similarity);
    const dropped = s.similarity!.slice(0, count).map((x) => x.block);
    expect(s.blocks.filter((b) => (kind === 'attention' ? b.attentionDropped : b.mlpDropped)).map((b) => b.index).sort()).toEqual([...dropped].sort());
    expect(s.sublayersRemoved).toBe(count);
    expect(s.flopsAfter!).toBeLessThan(s.flopsBefore!);
    expect(s.parametersAfter).toBeLessThan(s.parametersBefore);
    const before = discoverStructure(model);
    const after = discoverStructure(out);
    expect(kind === 'attention' ? after.attentions.length : after.mlps.length).toBe((kind === 'attention' ? before.attentions : before.mlps).length - count);
    expect(kind === 'attention' ? after.mlps.length : after.attentions.length).toBe((kind === 'attention' ? before.mlps : before.attentions).length);
    // the pruned graph computes what the original computes with those sublayers switched off
    const feeds = calibrationBatch(openDataset(f.calibration), model, 8).feeds;
    const [ref, got] = await runBoth(zeroed(model, kind, dropped), out, feeds);
    const [orig] = await runBoth(model, model, feeds);
    for (const name of Object.keys(ref)) {
      expect(got[name]!.dims).toEqual(ref[name]!.dims);
      expect(maxRelDiff(ref[name]!, got[name]!)).toBeLessThan(1e-5);
      expect(maxRelDiff(orig[name]!, got[name]!)).toBeGreaterThan(1e-4); // and something did change
    }
  });
});
