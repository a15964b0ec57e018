import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeModel, applyClippedSoftmax, attentionForms, discoverWithForms, matchGate } from '../../src/analyze/index.js';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel, modelFromBytes as loadModelFromBytes, modelToBytes } from '../../src/onnx/index.js';
import { Session } from '../../src/runtime/session.js';
import { ROOT } from '../helpers/fixtures.js';

const vitFile = path.join(ROOT, 'fixtures/vit_mnist.onnx');
const calib = openDataset(path.join(ROOT, 'calibration/vit_mnist/calib'));

async function logits(model: Model, n = 8): Promise<Float32Array> {
  const s = await Session.create(model);
  try {
    const parts: number[] = [];
    for (let i = 0; i < n; i++) {
      const sample = calib.read(i);
      const out = await s.run({ pixel_values: sample.inputs[0]! });
      parts.push(...(out[s.outputNames[0]!]!.data as Float32Array));
    }
    return Float32Array.from(parts);
  } finally {
    await s.release();
  }
}

/** Adds a sigmoid gate sigmoid(c) (a constant per head) multiplying each attention context. */
function addGates(model: Model, logit: number): void {
  const g = model.graph;
  for (const f of attentionForms(model)) {
    const ctx = g.value(f.context!)!;
    const readers = ctx.consumers();
    const c = g.addInitializer(Tensor.from(g.uniqueName('gate_logit'), DataType.FLOAT, [1, 4, 1, 1], [logit, logit, logit, logit]));
    const sig = g.addNode('Sigmoid', [c], [g.uniqueName('gate')], { after: ctx.producer() });
    const mul = g.addNode('Mul', [ctx, sig.output(0)], [g.uniqueName('gated_context')], { after: sig });
    for (const r of readers) r.inputs.forEach((x, i) => x === ctx && r.setInput(i, mul.output(0)));
  }
}

describe('attention forms', () => {
  it('plain softmax: recognised as such on every fixture block', () => {
    const forms = attentionForms(loadModel(vitFile));
    expect(forms.map((f) => f.kind)).toEqual(['softmax', 'softmax', 'softmax', 'softmax']);
    expect(forms.every((f) => !f.gated)).toBe(true);
  });

  it('what-if rewrite: clipped softmax with gamma 0, zeta 1 leaves outputs unchanged; recognised with its parameters; round-trips', async () => {
    const base = loadModel(vitFile);
    const identity = loadModel(vitFile);
    expect(applyClippedSoftmax(identity, 0, 1)).toHaveLength(4);
    const a = await logits(base);
    const b = await logits(identity);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-5);

    const clipped = loadModel(vitFile);
    applyClippedSoftmax(clipped, -0.03, 1);
    const again = loadModelFromBytes(modelToBytes(clipped));
    const forms = attentionForms(again);
    expect(forms.map((f) => [f.kind, f.gamma, f.zeta])).toEqual(Array(4).fill(['clipped-softmax', -0.03, 1]));
    // a second rewrite leaves clipped softmaxes alone
    expect(applyClippedSoftmax(again, -0.03, 1)).toEqual([]);
    // discovery finds the attention through the clip
    expect(discoverWithForms(again).structure.attentions).toHaveLength(4);
    const r = await analyzeModel(again, calib, { samples: 8 });
    expect(r.attention.map((x) => x.form)).toEqual(Array(4).fill('clipped-softmax'));
    expect(r.attention[0]!.gamma).toBe(-0.03);
  });

  it('gated attention: recognised, and discovery finds the attention through the gate', async () => {
    const m = loadModel(vitFile);
    addGates(m, 2);
    const forms = attentionForms(m);
    expect(forms.every((f) => f.gated)).toBe(true);
    const pv = m.graph.nodes.find((n) => n.opType === 'MatMul' && n.input(0)?.name === forms[0]!.probs)!;
    expect(matchGate(pv)?.sigmoid.opType).toBe('Sigmoid');
    // discoverStructure alone does not see through the gate (see docs/analyze.md)
    expect(discoverStructure(m).attentions).toHaveLength(0);
    expect(discoverWithForms(m).structure.attentions).toHaveLength(4);
    const r = await analyzeModel(m, calib, { samples: 8 });
    expect(r.attention.every((a) => a.gated)).toBe(true);
    expect(r.attention[0]!.heads[0]!.updateNorm).toBeGreaterThan(0);
  });
});

describe('no-op heads', () => {
  it('a head whose output-projection rows are zero changes the residual by nothing and is flagged', async () => {
    const { constantSource } = await import('../../src/discover/constants.js');
    const m = loadModel(vitFile);
    const a = discoverStructure(m).blocks[2]!.attention!;
    const src = constantSource(a.o.weight)!;
    const t = src.initializer!;
    const w = t.toFloat32().slice();
    // MatMul weight [in = heads*headSize, out]: zero the rows of head 1
    for (let r = a.headSize; r < 2 * a.headSize; r++) w.fill(0, r * a.o.outFeatures, (r + 1) * a.o.outFeatures);
    m.graph.setInitializer(src, Tensor.from(t.name, t.dtype, [...t.dims], w));
    const r = await analyzeModel(m, calib, { samples: 8, noOpShare: 0, noOpUpdate: 0.01 });
    const block2 = r.attention.find((x) => x.block === 2)!;
    expect(block2.heads[1]!.updateNorm).toBe(0);
    expect(block2.heads[0]!.relativeUpdate).toBeGreaterThan(0.05);
    expect(block2.noOpHeads).toEqual([1]);
    expect(block2.feeds).toMatch(/^blocks\.2\./);
    expect(r.attention.filter((x) => x.block !== 2).every((x) => x.noOpHeads.length === 0)).toBe(true);
    // default thresholds: the head still spreads its attention, so it is not a no-op head
    const d = await analyzeModel(m, calib, { samples: 8 });
    expect(d.summary.noOpHeads).toBe(0);
  });
});
