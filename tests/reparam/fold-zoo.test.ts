import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { applyFold, findFoldSites } from '../../src/reparam/fold.js';
import { runBoth } from '../helpers/compare.js';
import { relativeError } from './relative-error.js';
import { zooModels } from './zoo-models.js';

const zoo = zooModels();

// Norms folded per zoo model. The ones left out are read by no linear layer at all (a masked
// mean-pool whose Gemm reads the pooled vector, a pooler folded by onnxruntime into FusedGemm);
// every other norm is folded, though most are also read by Shape, through torch MHA's
// Transpose, or through the CLS Gather.
const FOLDED: Record<string, number> = {
  hf_bert_spam: 5,
  hf_distilbert: 5,
  hf_vit: 5,
  nn_encoder_postln_batchfirst_gelu: 3,
  nn_encoder_postln_seqfirst_relu: 3,
  nn_encoder_preln_batchfirst_gelu: 5,
  nn_encoder_preln_seqfirst_relu: 5,
  nn_mha_seqfirst: 1,
  tv_vit_mnist: 5,
  'tv_vit_mnist.ort': 5,
  llama_moby: 5,
};

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe.skipIf(zoo.length === 0)('LayerNorm/RMSNorm fold on exporter-written models', () => {
  for (const z of zoo) {
    it(`${z.name}: every norm read by a linear folds (through Shape/Transpose/Reshape/Gather readers); random scale and shift change outputs by <= 1e-5 relative`, async () => {
      const original = loadModel(z.file);
      const model = original.clone();
      const { sites, skipped } = findFoldSites(discoverStructure(model));
      expect(sites.length + skipped.length).toBe(discoverStructure(original).norms.length);
      if (FOLDED[z.name] !== undefined) expect(sites.length, JSON.stringify(skipped)).toBe(FOLDED[z.name]);
      // what is left is read by no linear layer, and the reason names its readers
      for (const s of skipped) expect(s.reason).toMatch(/^no linear layer .* its readers: /);
      const rand = rng(11);
      for (const site of sites) {
        const scale = Array.from({ length: site.hidden }, () => Math.exp((rand() - 0.5) * Math.log(1000)));
        const shift = Array.from({ length: site.hidden }, () => (rand() - 0.5) * 2);
        applyFold(model, site, { scale, shift });
      }
      const [batch] = batches(bindDataset(openDataset(z.calib), original), 8);
      const [a, b] = await runBoth(original, model, batch!.feeds);
      expect(relativeError(a, b)).toBeLessThanOrEqual(1e-5);
    });
  }
});
