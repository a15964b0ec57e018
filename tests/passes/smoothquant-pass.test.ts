// smoothQuant() as a pass: alone it leaves a float model computing the same function; followed by
// gptq it is the chain the quantize shorthand (method smoothquant, reconstruct gptq) stands for,
// written bit for bit the same from the API and from a YAML recipe.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fromRecipe, gptq, loadModel, pipeline, quantize, smoothQuant, type QuantizeSummary } from '../../src/index.js';
import { runBoth } from '../helpers/compare.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { compressCli } from '../pipeline/compress-cli.js';
import { initializers, vitCalibration, vitFile } from './chain-helpers.js';

const calibration = vitCalibration(16);

describe('smoothQuant() pass', () => {
  it('alone: a float model with the same outputs (1e-4 relative), the fold reported', async () => {
    const r = await pipeline([smoothQuant({ alpha: 0.5, cacheDir: false })]).apply(loadModel(vitFile), { calibration });
    const s = r.report.summaryOf('smoothquant')!;
    expect(s.method).toBe('smoothquant');
    expect(s.folded.length).toBeGreaterThan(0);
    expect(r.model.graph.nodes.some((n) => /Quantize/.test(n.opType))).toBe(false);
    const feeds = calibration.read(0).inputs;
    const [a, b] = await runBoth(loadModel(vitFile), r.model, Object.fromEntries(feeds.map(({ name, ...t }) => [name, t])));
    for (const k of Object.keys(a)) {
      const x = a[k]!.data as Float32Array;
      const y = b[k]!.data as Float32Array;
      const scale = Math.max(...x.map(Math.abs));
      // a reparameterization: only the order of float operations differs
      expect(Math.max(...x.map((v, i) => Math.abs(v - y[i]!))) / scale).toBeLessThan(1e-4);
    }
  });

  it('smoothquant → gptq from the API and from a recipe write what quantize({ method: smoothquant, reconstruct: gptq }) writes', async () => {
    const shorthand = await pipeline([quantize({ scheme: 'w8a8', weightBits: 4, method: 'smoothquant', reconstruct: 'gptq', cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration });
    const api = await pipeline([smoothQuant({ cacheDir: false }), gptq({ bits: 4, aBits: 8, cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration });
    const recipe = fromRecipe('passes:\n  - pass: smoothquant\n  - pass: gptq\n    bits: 4\n    aBits: 8\n    verifySamples: 4\n', 'chain.yaml');
    const viaRecipe = await recipe.apply(loadModel(vitFile), { calibration });
    expect(initializers(api.model)).toEqual(initializers(shorthand.model));
    expect(initializers(viaRecipe.model)).toEqual(initializers(shorthand.model));
    const s = api.report.summaryOf('gptq')!;
    expect(s.chain).toEqual(['smoothquant', 'gptq']);
    expect(s.reparam!.method).toBe('smoothquant');
    expect(s.method).toBe('gptq');
    expect(shorthand.report.summaryOf('quantize')!.chain).toEqual(['smoothquant', 'gptq']);
    // and it is not round to nearest on the same fold
    const rtn = await pipeline([smoothQuant({ cacheDir: false }), quantize({ scheme: 'w8a8', weightBits: 4, cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration });
    expect(initializers(rtn.model)).not.toEqual(initializers(api.model));
    expect(rtn.report.summaryOf('quantize')!.chain).toEqual(['smoothquant']);
  });

  it('slimformer compress --recipe runs smoothquant → gptq', () => {
    const dir = tempDir();
    const recipe = path.join(dir, 'smoothquant-gptq.yaml');
    fs.writeFileSync(recipe, 'name: smoothquant-gptq\npasses:\n  - pass: smoothquant\n  - pass: gptq\n    bits: 4\n    aBits: 8\n');
    const out = path.join(dir, 'chain.onnx');
    const r = compressCli(vitFile, '-o', out, '--calib', path.join(ROOT, 'calibration/vit_mnist/calib'), '--recipe', recipe, '--json', '--latency-runs', '1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).recipe).toEqual({ name: 'smoothquant-gptq', passes: ['smoothquant', 'gptq'] });
    expect(fs.existsSync(out)).toBe(true);
  });
});
