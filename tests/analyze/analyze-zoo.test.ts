import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { analyzeModel } from '../../src/analyze/index.js';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { Session } from '../../src/runtime/session.js';
import { zooPath } from '../helpers/zoo.js';

// analyze on exporter layouts whose tensors do not lead with the batch axis: torch
// MultiheadAttention ([S, B, D] activations, [B·heads, T, T] probabilities), GPT-2's Conv1D
// (tokens flattened to [B·T, D]) and the onnxruntime-optimized graphs. Before, these stopped
// with "its tensors are not laid out with one sample per leading row" or an analysis graph
// onnxruntime could not load.
const MODELS = ['nn_mha_seqfirst', 'nn_encoder_postln_seqfirst_relu', 'tv_vit_mnist', 'tv_vit_mnist.ort', 'hf_gpt2_moby'];
const have = MODELS.every((m) => fs.existsSync(zooPath(`fixtures/zoo/${m}.onnx`)));
const data = (m: string): string => zooPath(`calibration/zoo/${m.replace(/\.ort$/, '')}/calib`);
const SAMPLES = 4;
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

describe.skipIf(!have)('analyze on torch MHA, Conv1D and optimized layouts', () => {
  it.each(MODELS)('%s: every attention has its heads measured', async (name) => {
    const model = loadModel(zooPath(`fixtures/zoo/${name}.onnx`));
    const r = await analyzeModel(model, openDataset(data(name)), { samples: SAMPLES });
    expect(r.samples).toBe(SAMPLES);
    const s = discoverStructure(model);
    expect(r.attention).toHaveLength(s.attentions.length);
    for (const a of r.attention) {
      const heads = s.blocks.find((b) => b.index === a.block)!.attention!.numHeads;
      expect(a.heads).toHaveLength(heads);
      for (const h of a.heads) {
        expect(h.entropy).toBeGreaterThan(0);
        expect(h.entropy).toBeLessThanOrEqual(h.maxEntropy + 1e-6);
        expect(h.updateNorm).toBeGreaterThan(0);
      }
    }
    expect(r.layers.length).toBeGreaterThan(0);
  });

  it('nn_mha_seqfirst: layer metrics and each head\'s first-key share equal a direct computation on the exposed tensors (1e-4 relative)', async () => {
    const name = 'nn_mha_seqfirst';
    const model = loadModel(zooPath(`fixtures/zoo/${name}.onnx`));
    const r = await analyzeModel(model, openDataset(data(name)), { samples: SAMPLES });
    const forms = r.attention.map((a) => ({ a, probs: discoverStructure(model).blocks.find((b) => b.index === a.block)!.attention!.softmax.output(0).name }));
    const session = await Session.create(model, { expose: [...r.layers.map((l) => l.tensor), ...forms.map((f) => f.probs)] });
    // per sample (one run each): max |x| and the kurtosis of all its elements; per head the
    // mean over queries of the probability on key 0 ([heads, Tq, Tk] rows at batch 1)
    const inf = new Map<string, number[]>();
    const kurt = new Map<string, number[]>();
    const first = new Map<string, number[][]>();
    let n = 0;
    try {
      for (const batch of batches(bindDataset(openDataset(data(name)), model), 1)) {
        if (n++ >= SAMPLES) break;
        const out = await session.run(batch.feeds);
        for (const l of r.layers) {
          const x = out[l.tensor]!.data as Float32Array;
          let max = 0;
          let mean = 0;
          for (const v of x) {
            max = Math.max(max, Math.abs(v));
            mean += v / x.length;
          }
          let m2 = 0;
          let m4 = 0;
          for (const v of x) {
            m2 += (v - mean) ** 2 / x.length;
            m4 += (v - mean) ** 4 / x.length;
          }
          const variance = (m2 * x.length) / (x.length - 1);
          (inf.get(l.tensor) ?? inf.set(l.tensor, []).get(l.tensor)!).push(max);
          (kurt.get(l.tensor) ?? kurt.set(l.tensor, []).get(l.tensor)!).push(m4 / (variance * variance + 1e-6));
        }
        for (const f of forms) {
          const p = out[f.probs]!;
          const [, tq, tk] = p.dims as [number, number, number];
          const heads = f.a.heads.length;
          expect(p.dims[0]).toBe(heads);
          const d = p.data as Float32Array;
          const shares = Array.from({ length: heads }, (_, h) => {
            let s = 0;
            for (let q = 0; q < tq; q++) s += d[(h * tq + q) * tk]!;
            return s / tq;
          });
          (first.get(f.probs) ?? first.set(f.probs, []).get(f.probs)!).push(shares);
        }
      }
    } finally {
      await session.release();
    }
    const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    for (const l of r.layers) {
      expect(rel(l.infNorm, avg(inf.get(l.tensor)!)), `${l.layer} inf norm`).toBeLessThan(1e-4);
      expect(rel(l.kurtosis, avg(kurt.get(l.tensor)!)), `${l.layer} kurtosis`).toBeLessThan(1e-4);
    }
    for (const f of forms) {
      const per = first.get(f.probs)!;
      f.a.heads.forEach((h, i) => expect(rel(h.firstTokenShare, avg(per.map((s) => s[i]!))), `block ${f.a.block} head ${i}`).toBeLessThan(1e-4));
    }
  });
});
