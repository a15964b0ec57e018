import { describe, expect, it } from 'vitest';
import { dequantizeWeight, quantizeWeight, type WeightQuantSpec } from '../../src/quantize/weight-quantizer.js';

function weights(n: number, k: number, seed = 7): Float32Array {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  // heavy-ish tails: a few large weights per row, as trained transformers have
  return Float32Array.from({ length: n * k }, () => rnd() * 0.05 * (rnd() > 0.97 ? 6 : 1));
}

/** Reference: the same grid search written directly, in float64. */
function reference(w: Float32Array, n: number, k: number, spec: WeightQuantSpec): { scales: number[]; zps: number[]; levels: number[] } {
  const bs = spec.blockSize > 0 ? spec.blockSize : k;
  const groups = Math.ceil(k / bs);
  const levelsCount = 2 ** spec.bits;
  const qmin = spec.symmetric ? -levelsCount / 2 : 0;
  const qmax = spec.symmetric ? levelsCount / 2 - 1 : levelsCount - 1;
  const ratios = spec.search === 'mse' ? Array.from({ length: 21 }, (_, i) => 1 - i * 0.01) : [1];
  const round = (x: number): number => {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r; // half to even, as onnxruntime
  };
  const scales: number[] = [];
  const zps: number[] = [];
  const levels: number[] = [];
  for (let r = 0; r < n; r++) {
    for (let gi = 0; gi < groups; gi++) {
      const vals = Array.from({ length: bs }, (_, i) => (gi * bs + i < k ? w[r * k + gi * bs + i]! : 0));
      let best = { err: Infinity, scale: 0, zp: 0 };
      for (const ratio of ratios) {
        let scale: number;
        let zp = 0;
        if (spec.symmetric) {
          scale = Math.max((Math.max(...vals.map(Math.abs)) * ratio) / qmax, 1e-12);
        } else {
          const mn = Math.min(0, ...vals) * ratio;
          const mx = Math.max(0, ...vals) * ratio;
          scale = Math.max((mx - mn) / (levelsCount - 1), 1e-12);
          zp = Math.min(qmax, Math.max(qmin, round(-mn / scale)));
        }
        const err = vals.reduce((a, v) => a + ((Math.min(qmax, Math.max(qmin, round(v / scale) + zp)) - zp) * scale - v) ** 2, 0);
        if (err < best.err) best = { err, scale, zp };
      }
      scales.push(best.scale);
      zps.push(best.zp);
      for (const v of vals) levels.push(Math.min(qmax, Math.max(qmin, round(v / best.scale) + best.zp)));
    }
  }
  return { scales, zps, levels };
}

const cases: WeightQuantSpec[] = [
  { bits: 8, symmetric: true, blockSize: 0, search: 'minmax' },
  { bits: 4, symmetric: true, blockSize: 32, search: 'minmax' },
  { bits: 4, symmetric: false, blockSize: 32, search: 'mse' },
  { bits: 3, symmetric: true, blockSize: 16, search: 'mse' },
  { bits: 8, symmetric: false, blockSize: 0, search: 'mse' },
];

describe('quantizeWeight (grid search in onnxruntime)', () => {
  for (const spec of cases) {
    it(`matches a float64 reference: ${spec.bits} bits, ${spec.symmetric ? 'symmetric' : 'asymmetric'}, block ${spec.blockSize || 'channel'}, ${spec.search}`, async () => {
      const n = 24;
      const k = 72; // not a multiple of 32: the last block is padded
      const w = weights(n, k);
      const q = await quantizeWeight(w, n, k, spec);
      const ref = reference(w, n, k, spec);
      expect(q.groups).toBe(Math.ceil(k / (spec.blockSize || k)));
      // scales agree to float32 precision; levels agree except for rare float32 rounding ties
      let maxRel = 0;
      q.scales.forEach((s, i) => (maxRel = Math.max(maxRel, Math.abs(s - ref.scales[i]!) / ref.scales[i]!)));
      expect(maxRel).toBeLessThan(1e-5);
      let diff = 0;
      q.levels.forEach((l, i) => (diff += l !== ref.levels[i] ? 1 : 0));
      expect(diff / q.levels.length).toBeLessThan(0.002);
      expect([...q.zeroPoints]).toEqual(ref.zps);
      // dequantized error is bounded by half a step per weight
      const back = dequantizeWeight(q);
      if (spec.search === 'minmax') back.forEach((v, i) => expect(Math.abs(v - w[i]!)).toBeLessThanOrEqual(q.scales[Math.floor(i / k) * q.groups + Math.floor((i % k) / q.blockSize)]! * 0.5 + 1e-7));
    });
  }

  it('the mse search never does worse than round-to-nearest on the full range', async () => {
    const n = 32;
    const k = 128;
    const w = weights(n, k, 11);
    const err = (x: Float32Array): number => x.reduce((a, v, i) => a + (v - w[i]!) ** 2, 0);
    for (const bits of [3, 4]) {
      const rtn = dequantizeWeight(await quantizeWeight(w, n, k, { bits, symmetric: true, blockSize: 32, search: 'minmax' }));
      const mse = dequantizeWeight(await quantizeWeight(w, n, k, { bits, symmetric: true, blockSize: 32, search: 'mse' }));
      expect(err(mse)).toBeLessThan(err(rtn));
    }
  });
});

describe('levels storage', () => {
  it('holds one byte per level: signed for symmetric grids, unsigned for asymmetric ones (8-bit asymmetric reaches 255)', async () => {
    const w = Float32Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i * 0.37) + (i % 64 === 0 ? 3 : 0));
    const sym = await quantizeWeight(w, 4, 64, { bits: 8, symmetric: true, blockSize: 0, search: 'minmax' });
    const asym = await quantizeWeight(w, 4, 64, { bits: 8, symmetric: false, blockSize: 0, search: 'minmax' });
    expect(sym.levels).toBeInstanceOf(Int8Array);
    expect(asym.levels).toBeInstanceOf(Uint8Array);
    expect(Math.min(...sym.levels)).toBeGreaterThanOrEqual(-128);
    expect(Math.max(...asym.levels)).toBe(255);
    expect(Math.min(...asym.levels)).toBe(0);
    // the dequantized weight is within half a step of the float one (no level wrapped around)
    for (const q of [sym, asym]) {
      const d = dequantizeWeight(q);
      for (let r = 0; r < 4; r++) for (let i = 0; i < 64; i++) expect(Math.abs(d[r * 64 + i]! - w[r * 64 + i]!)).toBeLessThanOrEqual(q.scales[r]! / 2 + 1e-6);
    }
  });
});
