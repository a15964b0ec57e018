import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { applyFold, findFoldSites } from '../../src/reparam/fold.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { fixtures } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { relativeError } from './relative-error.js';

const all = fixtures();
const dir = tempDir();

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe.skipIf(all.length === 0)('LayerNorm-affine fold', () => {
  for (const f of all) {
    it(`${f.name}: rescaling and shifting every foldable norm output changes float outputs by <= 1e-5 relative`, async () => {
      const original = loadModel(f.model);
      const model = original.clone();
      const { sites, skipped } = findFoldSites(discoverStructure(model));
      expect(sites.length).toBeGreaterThan(0);
      // every norm is either folded or skipped with a reason
      expect(sites.length + skipped.length).toBe(discoverStructure(original).norms.length);
      for (const s of skipped) expect(s.reason.length).toBeGreaterThan(10);
      const rand = rng(7);
      for (const site of sites) {
        // factors over three decades, shifts of the size of the outputs
        const scale = Array.from({ length: site.hidden }, () => Math.exp((rand() - 0.5) * Math.log(1000)));
        const shift = Array.from({ length: site.hidden }, () => (rand() - 0.5) * 2);
        applyFold(model, site, { scale, shift });
      }
      const norms = discoverStructure(model).norms.length;
      expect(norms).toBe(discoverStructure(original).norms.length);
      const [batch] = batches(bindDataset(openDataset(f.calibration), original), 16);
      const [a, b] = await runBoth(original, model, batch!.feeds);
      expect(relativeError(a, b)).toBeLessThanOrEqual(1e-5);
      // the folded model round-trips through save/load
      const file = path.join(dir, `${f.name}-folded.onnx`);
      saveModel(model, file);
      const [c, d] = await runBoth(model, loadModel(file), batch!.feeds);
      expect(sameOutputs(c, d)).toBe(true);
      if (f.architecture.norm === 'post-ln') expect(model.graph.nodes.some((n) => n.name.includes('fold_restore'))).toBe(true);
    });
  }
});
