// repQuant() as a pass: its per-tensor activation grids travel in the plan to the pass that
// writes it. repquant → quantize is what quantize({ method: 'repquant' }) writes; repquant →
// flexround starts FlexRound's learned activation steps from RepQuant's grids, from the API,
// a recipe and `slimformer compress --recipe`; activation bits that disagree are refused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { flexRound, fromRecipe, loadModel, pipeline, quantize, repQuant, type QuantizeSummary } from '../../src/index.js';
import { QuantizationPlan } from '../../src/quantize/plan.js';
import { compressCli } from '../pipeline/compress-cli.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { initializers, vitCalibration, vitFile } from './chain-helpers.js';

const calibration = vitCalibration(16);
const dir = tempDir();

describe('repQuant() pass', () => {
  it('records activation grids in the plan; repquant → quantize writes what quantize({ method: repquant }) writes', async () => {
    const plan = new QuantizationPlan();
    const alone = await pipeline([repQuant({ observer: 'minmax', cacheDir: false })]).apply(loadModel(vitFile), { calibration, plan });
    expect(alone.report.summaryOf('repquant')!.folded.length).toBeGreaterThan(0);
    expect(plan.activations.size).toBeGreaterThan(0);
    expect([...plan.activations.values()].every((a) => a.method === 'repquant' && a.params.scale > 0)).toBe(true);
    const shorthand = await pipeline([quantize({ scheme: 'w8a8', method: 'repquant', repquantObserver: 'minmax', cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration });
    const chain = await pipeline([repQuant({ observer: 'minmax', cacheDir: false }), quantize({ scheme: 'w8a8', cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration });
    expect(initializers(chain.model)).toEqual(initializers(shorthand.model));
    const s = chain.report.summaryOf('quantize')!;
    expect(s.chain).toEqual(['repquant']);
    expect(s.method).toBe('repquant');
    // the plan's scales are the ones written
    const scales = new Set(chain.model.graph.initializers.filter((v) => v.initializer!.size === 1 && v.name.endsWith('scale')).map((v) => (v.initializer!.toFloat32()[0]!)));
    expect([...plan.activations.values()].some((a) => scales.has(a.params.scale))).toBe(true);
  });

  it('repquant → flexround (w4a8) starts the learned activation steps from RepQuant’s grids, from the API and a recipe', async () => {
    const plan = new QuantizationPlan();
    await pipeline([repQuant({ observer: 'minmax', cacheDir: false })]).apply(loadModel(vitFile), { calibration, plan });
    // 16 calibration images (272 tokens, 2 per input of the MLP's 128) are below FlexRound's data bound: learning is asked for explicitly
    const api = await pipeline([repQuant({ observer: 'minmax', cacheDir: false }), flexRound({ bits: 4, aBits: 8, iters: 10, minTokensPerInput: 0, cacheDir: false, verifySamples: 4 })]).apply(loadModel(vitFile), { calibration });
    const s = api.report.summaryOf('flexround')!;
    // FlexRound's weights start from GPTQ's levels (its default start), decided on the reparameterized model
    expect(s.chain).toEqual(['repquant', 'gptq', 'flexround']);
    expect(s.reparam!.method).toBe('repquant');
    const started = s.flexround!.activations.filter((a) => plan.activations.has(a.name));
    expect(started.length).toBeGreaterThan(0);
    for (const a of started) expect(a.start).toBe(plan.activations.get(a.name)!.params.scale);
    const recipe = fromRecipe('passes:\n  - pass: repquant\n    observer: minmax\n  - pass: flexround\n    bits: 4\n    aBits: 8\n    iters: 10\n    minTokensPerInput: 0\n    verifySamples: 4\n', 'chain.yaml');
    const viaRecipe = await recipe.apply(loadModel(vitFile), { calibration });
    expect(initializers(viaRecipe.model)).toEqual(initializers(api.model));
  });

  it('slimformer compress --recipe runs repquant → flexround', () => {
    const recipe = path.join(dir, 'repquant-flexround.yaml');
    fs.writeFileSync(recipe, 'name: repquant-flexround\npasses:\n  - pass: repquant\n    observer: minmax\n  - pass: flexround\n    bits: 4\n    aBits: 8\n    iters: 5\n');
    const out = path.join(dir, 'chain.onnx');
    const r = compressCli(vitFile, '-o', out, '--calib', path.join(ROOT, 'calibration/vit_mnist/calib'), '--recipe', recipe, '--json', '--latency-runs', '1');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).recipe).toEqual({ name: 'repquant-flexround', passes: ['repquant', 'flexround'] });
    expect(fs.existsSync(out)).toBe(true);
  });

  it('activation bits that disagree are refused naming both passes', async () => {
    const run = pipeline([repQuant({ aBits: 8, observer: 'minmax', cacheDir: false }), quantize({ scheme: 'w4a4', cacheDir: false })]).apply(loadModel(vitFile), { calibration });
    await expect(run).rejects.toThrow(/^pass 'quantize': pass 'repquant' fixed the activation grid of '.+' at 8 bits, but scheme w4a4 quantizes activations to 4 bits; give both passes the same activation bits$/);
  });
});
