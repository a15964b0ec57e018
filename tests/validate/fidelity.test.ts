import { describe, expect, it } from 'vitest';
import { Random } from '../../src/autodiff/random.js';
import { loadModel } from '../../src/onnx/index.js';
import { builtFixture } from '../quantize/built-fixture.js';
import { quantize } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { ComparisonAccumulator } from '../../src/validate/comparison.js';
import { FloatReference } from '../../src/validate/fidelity.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';

/** KL(softmax(p) ‖ softmax(q)) straight from the definition: probabilities first, then Σ p log(p/q). */
function klDirect(p: number[], q: number[]): number {
  const sp = p.map(Math.exp);
  const sq = q.map(Math.exp);
  const zp = sp.reduce((a, b) => a + b, 0);
  const zq = sq.reduce((a, b) => a + b, 0);
  return sp.reduce((a, e, i) => a + (e / zp) * Math.log(e / zp / (sq[i]! / zq)), 0);
}

describe('fidelity against the float model', () => {
  it('ComparisonAccumulator kl matches the definition (relative tolerance 1e-9), is 0 for equal or shifted logits, and averages positions', () => {
    const rng = new Random(3);
    const width = 7;
    const rows = 5;
    const p = Array.from({ length: rows * width }, () => 3 * rng.normal());
    const q = p.map((v) => v + 0.5 * rng.normal());
    const t = (x: number[]): ArrayTensor => ({ dtype: DataType.DOUBLE, dims: [rows, width], data: Float64Array.from(x) });
    const kl = (a: number[], b: number[]): number => {
      const acc = new ComparisonAccumulator();
      acc.add(t(a), t(b), 'logits');
      return acc.result(['kl']).kl!;
    };
    let want = 0;
    for (let i = 0; i < rows; i++) want += klDirect(p.slice(i * width, (i + 1) * width), q.slice(i * width, (i + 1) * width));
    want /= rows;
    expect(want).toBeGreaterThan(0);
    expect(Math.abs(kl(p, q) - want)).toBeLessThanOrEqual(1e-9 * want);
    expect(kl(p, p)).toBe(0);
    expect(kl(p, p.map((v) => v + 4))).toBeLessThan(1e-12); // softmax ignores a shift
    // large logits: the log-sum-exp form stays finite where the direct form would overflow
    expect(Number.isFinite(kl(p.map((v) => v * 400), q.map((v) => v * 400)))).toBe(true);
  });

  it('scores a model against itself as exact and a 3-bit one as further away than an 8-bit one', async () => {
    const { modelFile: file, calibration: ds } = builtFixture({ blocks: 1, hidden: 32, heads: 2, mlpWidth: 64, seq: 8, opset: 17, mask: 'additive-input', seed: 2 }, 12);
    const ref = await FloatReference.create(loadModel(file), ds, { batchSize: 5 });
    const self = await ref.compare(loadModel(file), ds);
    expect(self).toEqual({ kl: 0, agreement: 1, sqnr: Infinity, positions: self.positions });
    expect(self.positions).toBeGreaterThanOrEqual(12);
    const q = async (scheme: 'w8' | 'w3') => ref.compare((await pipeline([quantize({ scheme, cacheDir: false })]).apply(loadModel(file), {})).model, ds);
    const [w8, w3] = [await q('w8'), await q('w3')];
    expect(w3.kl).toBeGreaterThan(w8.kl);
    expect(w8.kl).toBeGreaterThan(0);
    expect(w3.sqnr).toBeLessThan(w8.sqnr);
  });
});
