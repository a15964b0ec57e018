import { describe, expect, it } from 'vitest';
import { gptqLevels } from '../../src/quantize/gptq.js';
import { dequantizeWeight, quantizeWeight } from '../../src/quantize/weight-quantizer.js';
import { outputError } from '../helpers/output-error.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32 - 0.5);
}

describe('GPTQ weight reconstruction', () => {
  it('keeps the grids, changes levels, and lowers the output error on correlated inputs', async () => {
    const rand = rng(5);
    const m = 512;
    const k = 48;
    const n = 24;
    // correlated inputs: a few latent factors plus noise
    const latent = Array.from({ length: 6 * k }, () => rand());
    const x = new Float64Array(m * k);
    for (let a = 0; a < m; a++) {
      const z = Array.from({ length: 6 }, () => rand());
      for (let i = 0; i < k; i++) x[a * k + i] = z.reduce((s, v, f) => s + v * latent[f * k + i]!, 0) + 0.1 * rand();
    }
    const gram = new Float64Array(k * k);
    for (let a = 0; a < m; a++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) gram[i * k + j] += x[a * k + i]! * x[a * k + j]!;
    const w = Float32Array.from({ length: n * k }, () => rand());
    for (const bits of [4, 3]) {
      const rtn = await quantizeWeight(w, n, k, { bits, symmetric: true, blockSize: 0, search: 'mse' });
      const g = gptqLevels(w, rtn, gram);
      expect(g.scales).toEqual(rtn.scales);
      expect(g.levels).not.toEqual(rtn.levels);
      for (const v of g.levels) expect(v >= -(2 ** (bits - 1)) && v <= 2 ** (bits - 1) - 1).toBe(true);
      const eRtn = outputError(x, m, k, w, dequantizeWeight(rtn), n);
      const eGptq = outputError(x, m, k, w, dequantizeWeight(g), n);
      expect(eGptq).toBeLessThan(0.7 * eRtn);
    }
  });
});
