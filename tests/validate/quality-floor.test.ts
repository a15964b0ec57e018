import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { quantize } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { compareModels } from '../../src/quantize/verify.js';
import { Session } from '../../src/runtime/session.js';
import { PRUNING_FLOOR, QUALITY_FLOOR, QualityFloorError, judgeQuality, measureQuality } from '../../src/validate/quality-floor.js';
import { ROOT } from '../helpers/fixtures.js';
import { injectWeightOutlier } from '../helpers/weight-outlier.js';

const vitPath = `${ROOT}/fixtures/vit_mnist.onnx`;
const calib = openDataset(`${ROOT}/calibration/vit_mnist/calib`);

/** vit_mnist with a giant-outlier row in every fc1 weight (the float function unchanged). */
function outlierVit() {
  const m = loadModel(vitPath);
  expect(injectWeightOutlier(m, 0, 1e3)).toBe(4);
  return m;
}

describe('judgeQuality', () => {
  it('refuses below either floor figure, warns in the band, passes above; NaN counts as below', () => {
    const f = QUALITY_FLOOR.floor;
    const w = QUALITY_FLOOR.warnBelow;
    expect(judgeQuality({ sqnr: w.sqnr, agreement: w.agreement })).toEqual({ verdict: 'pass', failing: [] });
    expect(judgeQuality({ sqnr: f.sqnr, agreement: 1 })).toEqual({ verdict: 'warning', failing: ['sqnr'] });
    expect(judgeQuality({ sqnr: f.sqnr - 0.01, agreement: 1 })).toEqual({ verdict: 'below-floor', failing: ['sqnr'] });
    expect(judgeQuality({ sqnr: 40, agreement: f.agreement - 0.01 })).toEqual({ verdict: 'below-floor', failing: ['agreement'] });
    expect(judgeQuality({ sqnr: NaN, agreement: 1 }).verdict).toBe('below-floor');
  });

  it('after pruning holds agreement only: a low SQNR warns but is not refused', () => {
    expect(judgeQuality({ sqnr: -5, agreement: 0.8 }, PRUNING_FLOOR)).toEqual({ verdict: 'warning', failing: ['sqnr'] });
    expect(judgeQuality({ sqnr: 20, agreement: 0.05 }, PRUNING_FLOOR).verdict).toBe('below-floor');
  });
});

describe('measureQuality', () => {
  it("matches the quantize pass's own end-to-end SQNR and an argmax computed here on the same 16 samples", async () => {
    const float = loadModel(vitPath);
    const { model: q } = await pipeline([quantize({ scheme: 'w4', cacheDir: false })]).apply(float, { calibration: calib, floor: false });
    const m = await measureQuality(float, q, calib);
    expect(m.samples).toBe(16);
    // compareModels sums element by element in its own loop (src/quantize/verify.ts): the same
    // float64 sums in another order, so equal to 1e-6 dB
    const ref = await compareModels(float, q, calib, [], { samples: 16 });
    expect(m.figures.sqnr).toBeCloseTo(ref.outputs[0]!.sqnr, 6);
    // agreement: first maxima of the logits of both models, sample by sample
    const a = await Session.create(float);
    const b = await Session.create(q);
    let agree = 0;
    let n = 0;
    for (const batch of batches(bindDataset(calib, float), 16)) {
      const x = (await a.run(batch.feeds, ['logits'])).logits!.data as Float32Array;
      const y = (await b.run(batch.feeds, ['logits'])).logits!.data as Float32Array;
      const argmax = (v: Float32Array, i: number) => Array.from(v.subarray(i * 10, i * 10 + 10)).reduce((best, z, k, all) => (z > all[best]! ? k : best), 0);
      for (let i = 0; i < batch.count; i++) agree += argmax(x, i) === argmax(y, i) ? 1 : 0;
      n += batch.count;
      break;
    }
    await a.release();
    await b.release();
    expect(n).toBe(16);
    expect(m.figures.agreement).toBe(agree / n);
  });
});

describe('pipeline quality floor (library)', () => {
  it('the outlier model is the float function: 100+ dB against vit_mnist', async () => {
    const m = await measureQuality(loadModel(vitPath), outlierVit(), calib);
    expect(m.figures.sqnr).toBeGreaterThan(100);
    expect(m.figures.agreement).toBe(1);
  });

  it('throws QualityFloorError for a result below the floor; force: true keeps it, reported as forced', async () => {
    const model = outlierVit();
    const steps = pipeline([quantize({ scheme: 'w8a8', perChannel: false, cacheDir: false })]);
    const err = await steps.apply(model, { calibration: calib }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QualityFloorError);
    const check = (err as QualityFloorError).check;
    expect(check.verdict).toBe('below-floor');
    expect(check.failing).toContain('sqnr');
    expect(check.sqnr).toBeLessThan(QUALITY_FLOOR.floor.sqnr);
    expect((err as Error).message).toMatch(/end-to-end SQNR -?\d+\.\d dB \(floor 3\.0 dB\).*force: true/);

    const forced = await steps.apply(model, { calibration: calib, force: true });
    expect(forced.report.quality).toMatchObject({ verdict: 'below-floor', forced: true, sqnr: check.sqnr });
    expect(forced.report.entries.some((e) => e.pass === 'quality' && e.level === 'warning' && /kept although below the quality floor/.test(e.message))).toBe(true);
    expect(JSON.parse(JSON.stringify(forced.report)).quality.verdict).toBe('below-floor');

    const unchecked = await steps.apply(model, { calibration: calib, floor: false });
    expect(unchecked.report.quality).toBeNull();
  }, 60_000);
});
