import { describe, expect, it } from 'vitest';
import { discoverStructure, summarizeStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { zooModels, zooPath } from '../helpers/zoo.js';

// Real exporter output: every block of every zoo model is described completely, and nothing is
// left unrecognised. (A merged decoder is described from the with-past branch of its If.)
const models = zooModels();

describe.skipIf(models.length === 0)('discovery on the zoo of real exporter output', () => {
  it.each(models.map((m) => [m.name, m] as const))('%s', (_name, m) => {
    const model = loadModel(zooPath(m.file));
    const s = discoverStructure(model);
    const summary = summarizeStructure(model, s);
    // the merged decoder: its layers live in the If's branches; the with-past branch is described
    expect(summary.branch !== undefined).toBe(model.graph.nodes.some((n) => n.opType === 'If'));
    expect(summary.unmatched).toEqual([]);
    expect(summary.blocks.length).toBeGreaterThan(0);
    for (const b of summary.blocks) {
      expect(b.heads, `block ${b.index} heads`).toBeGreaterThan(0);
      expect(b.kvHeads, `block ${b.index} kv heads`).toBeGreaterThan(0);
      expect(b.heads! % b.kvHeads!).toBe(0);
      expect(b.headSize, `block ${b.index} head size`).toBeGreaterThan(0);
      expect(b.mlpWidth, `block ${b.index} MLP width`).toBeGreaterThan(0);
      expect(b.norm, `block ${b.index} placement`).not.toBe('unknown');
      expect(b.normKind).not.toBeNull();
      expect(b.projections).not.toBeNull();
    }
    // a packed projection holds q, k and v side by side, each a whole number of heads
    for (const a of s.attentions) {
      expect(a.qFeatures.size).toBe(a.numHeads * a.headSize);
      expect(a.kFeatures.size).toBe(a.numKvHeads * a.headSize);
      if (a.q === a.k) expect(new Set([a.qFeatures.start, a.kFeatures.start, a.vFeatures.start]).size).toBe(3);
      expect(a.o.inFeatures).toBe(a.numHeads * (a.vFeatures.size / a.numKvHeads));
    }
  });
});
