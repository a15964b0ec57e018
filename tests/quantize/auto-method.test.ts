import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeModel } from '../../src/analyze/index.js';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { chooseStaticMethod } from '../../src/quantize/auto-method.js';
import type { QuantizeOptions } from '../../src/quantize/scheme.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { cli } from '../helpers/cli.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();
const outlierFile = path.join(ROOT, 'fixtures', 'vit_mnist_outlier.onnx');
const vitFile = path.join(ROOT, 'fixtures', 'vit_mnist.onnx');
const calib = path.join(ROOT, 'calibration', 'vit_mnist', 'calib');
const evalDir = path.join(ROOT, 'calibration', 'vit_mnist', 'eval');
const have = fs.existsSync(outlierFile) && fs.existsSync(vitFile);

async function quantized(file: string, options: QuantizeOptions): Promise<QuantizeSummary> {
  const { report } = await pipeline([quantize({ cacheDir: false, verifySamples: 4, ...options })]).apply(loadModel(file), { calibration: openDataset(calib), floor: false });
  return report.passes[0]!.summary as unknown as QuantizeSummary;
}

describe.skipIf(!have)('the w8a8 default chooses RepQuant from the activation outliers', () => {
  it('plain `quantize --scheme w8a8` on vit_mnist_outlier says it chose repquant and stays within 0.3 point of float top-1 (500 samples)', async () => {
    const out = path.join(dir, 'outlier.w8a8.onnx');
    const r = cli('quantize', outlierFile, '-o', out, '--scheme', 'w8a8', '--calib', calib);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('repquant');
    const top1 = async (file: string): Promise<number> => (await evaluate(loadModel(file), openDataset(evalDir), { metrics: ['top1'], batchSize: 100 })).metrics.top1!;
    const float = await top1(outlierFile);
    const q = await top1(out);
    console.log(`vit_mnist_outlier top1 on 500 samples: float ${(100 * float).toFixed(1)}, plain w8a8 ${(100 * q).toFixed(1)}`);
    // 0.3 point of 500 samples is 1.5 samples
    expect(float - q).toBeLessThanOrEqual(0.003);
  });

  it('the choice is reported in the summary, and a named method is kept as named', async () => {
    const auto = await quantized(outlierFile, { scheme: 'w8a8' });
    expect(auto.method).toBe('repquant');
    expect(auto.methodChoice!.method).toBe('repquant');
    expect(auto.methodChoice!.reason).toMatch(/repquant chosen/);
    expect(auto.reparam!.folded.length).toBeGreaterThan(0);
    const named = await quantized(outlierFile, { scheme: 'w8a8', method: 'rtn' });
    expect(named.method).toBe('rtn');
    expect(named.methodChoice).toBeNull();
    expect(named.reparam).toBeNull();
  });

  it('without outlier channels (vit_mnist) the default stays round to nearest', async () => {
    const s = await quantized(vitFile, { scheme: 'w8a8' });
    expect(s.methodChoice!.method).toBe('rtn');
    expect(s.method).toBe('rtn');
    expect(s.reparam).toBeNull();
  });

  it('the measurement is analyze\'s: per norm output, the same outlier channels and max/median ratio as analyzeModel finds (1e-5 relative)', async () => {
    const model = loadModel(outlierFile);
    const data = openDataset(calib);
    const choice = await chooseStaticMethod(model, data, {});
    const analysis = await analyzeModel(loadModel(outlierFile), data);
    const byTensor = new Map(analysis.layers.map((l) => [l.tensor, l]));
    let compared = 0;
    for (const site of choice.sites) {
      const a = byTensor.get(site.name);
      if (!a) continue;
      compared++;
      expect(site.outliers).toBe(a.outlierChannels.length);
      const sorted = [...a.channelMaxima].sort((x, y) => x - y);
      const median = sorted.length % 2 ? sorted[sorted.length >> 1]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
      expect(Math.abs(site.ratio - sorted[sorted.length - 1]! / median)).toBeLessThanOrEqual(1e-5 * site.ratio);
    }
    // the 8 block norms carry 3 scaled channels each (k = 30, 60, 100); the final norm none
    expect(compared).toBe(9);
    expect(choice.sites.filter((s) => s.outliers === 3)).toHaveLength(8);
  });

  it('the threshold decides: above the largest measured ratio (129x) the same model gets rtn', async () => {
    const choice = await chooseStaticMethod(loadModel(outlierFile), openDataset(calib), {}, 200);
    expect(Math.max(...choice.sites.map((s) => s.ratio))).toBeLessThan(200);
    expect(choice.method).toBe('rtn');
  });
});
