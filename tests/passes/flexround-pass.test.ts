// FlexRound's start from an earlier decision: weightRoundingTo gives a weight that FlexRound's
// rounding at δ = 0 (bakeFlexRound, the same arithmetic as its ONNX graph) takes to the decided
// levels exactly, moving the elements the decision did not round to nearest into their decided bin (and
// none of the others by more than 0.01 step).
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/autodiff/random.js';
import { bakeFlexRound, weightRoundingTo, zeroDeltas } from '../../src/quantize/flexround.js';
import { quantizeWeight } from '../../src/quantize/weight-quantizer.js';

describe('flexRound() starting from an earlier decision', () => {
  for (const [label, spec] of [
    ['3-bit symmetric, blocks of 16', { bits: 3, symmetric: true, blockSize: 16, search: 'mse' as const }],
    ['2-bit asymmetric, per channel', { bits: 2, symmetric: false, blockSize: 0, search: 'minmax' as const }],
  ] as const) {
    it(`${label}: the start rounds to the decided levels, moved elements only`, async () => {
      const rng = new Random(3);
      const n = 24;
      const k = 40;
      const w = Float32Array.from({ length: n * k }, () => 0.1 * rng.normal());
      const rtn = await quantizeWeight(w, n, k, spec);
      const qmin = spec.symmetric ? -(2 ** (spec.bits - 1)) : 0;
      const qmax = spec.symmetric ? 2 ** (spec.bits - 1) - 1 : 2 ** spec.bits - 1;
      // another decision on the same grid: levels moved by -2..2 (some far from round to nearest, some at the ends)
      const levels = rtn.levels.map((v) => Math.min(qmax, Math.max(qmin, v + Math.round(rng.normal() * 1.2))));
      const decided = { ...rtn, levels };
      const from = weightRoundingTo(w, decided);
      const start = bakeFlexRound(from, decided, zeroDeltas(decided));
      const padded = rtn.groups * rtn.blockSize;
      let moved = 0;
      for (let r = 0; r < n; r++) {
        for (let i = 0; i < k; i++) {
          expect(start.levels[r * padded + i]).toBe(levels[r * padded + i]);
          const s = decided.scales[r * rtn.groups + Math.floor(i / rtn.blockSize)]!;
          // an element round to nearest already put there stays within 0.01 step of itself (moved off its bin's edge at most)
          if (levels[r * padded + i] === rtn.levels[r * padded + i]) expect(Math.abs(from[r * k + i]! - w[r * k + i]!)).toBeLessThanOrEqual(0.0101 * s);
          else moved++;
        }
      }
      expect(moved).toBeGreaterThan(n * k * 0.2);
      expect(start.scales).toEqual(decided.scales);
    });
  }
});
