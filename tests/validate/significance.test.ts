import { describe, expect, it } from 'vitest';
import { mcnemarExact, signTest } from '../../src/validate/significance.js';

/** Reference: the binomial tail summed directly with exact integer binomial coefficients (BigInt). */
function reference(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  let coef = 1n;
  let tail = 0n;
  for (let i = 0; i <= Math.min(b, c); i++) {
    if (i > 0) coef = (coef * BigInt(n - i + 1)) / BigInt(i);
    tail += coef;
  }
  return Math.min(1, (2 * Number(tail)) / 2 ** n);
}

const vectors = (b: number, c: number, same: number): [number[], number[]] => {
  const first = [...Array(b).fill(1), ...Array(c).fill(0), ...Array(same).fill(1)];
  const second = [...Array(b).fill(0), ...Array(c).fill(1), ...Array(same).fill(1)];
  return [first, second];
};

describe('McNemar exact test', () => {
  it('counts only the samples where correctness differs, and gives the exact two-sided binomial p-value (relative tolerance 1e-9)', () => {
    for (const [b, c] of [[0, 0], [1, 0], [0, 1], [4, 0], [10, 0], [6, 1], [12, 5], [30, 30], [40, 21]] as const) {
      const [x, y] = vectors(b, c, 100);
      const r = mcnemarExact(x, y);
      expect(r.firstOnly).toBe(b);
      expect(r.secondOnly).toBe(c);
      expect(Math.abs(r.p - reference(b, c))).toBeLessThanOrEqual(1e-9 * reference(b, c));
    }
    // hand values: one disagreement is no evidence; ten one-sided ones are (2 / 1024)
    expect(mcnemarExact(...vectors(1, 0, 5)).p).toBe(1);
    expect(mcnemarExact(...vectors(10, 0, 5)).p).toBeCloseTo(2 / 1024, 12);
  });

  it('stays finite for thousands of disagreements, and refuses samples of different lengths', () => {
    const r = mcnemarExact(...vectors(1500, 1400, 0));
    expect(r.p).toBeGreaterThan(0);
    expect(r.p).toBeLessThan(0.1);
    expect(() => mcnemarExact([1, 0], [1])).toThrow(/same samples/);
  });
});

describe('sign test', () => {
  it('counts which of two paired values is lower, drops ties, and gives the exact two-sided binomial p-value (relative tolerance 1e-9)', () => {
    for (const [b, c, ties] of [[0, 0, 3], [1, 0, 0], [7, 2, 4], [25, 9, 10], [300, 260, 5]] as const) {
      const first = [...Array(b).fill(0.1), ...Array(c).fill(0.5), ...Array(ties).fill(0.2)];
      const second = [...Array(b).fill(0.3), ...Array(c).fill(0.4), ...Array(ties).fill(0.2)];
      const r = signTest(first, second);
      expect(r.firstLower).toBe(b);
      expect(r.secondLower).toBe(c);
      expect(Math.abs(r.p - reference(b, c))).toBeLessThanOrEqual(1e-9 * reference(b, c));
      // swapping the two swaps the counts and keeps the p-value
      const s = signTest(second, first);
      expect([s.firstLower, s.secondLower, s.p]).toEqual([c, b, r.p]);
    }
    expect(() => signTest([1, 2], [1])).toThrow(/paired/);
  });
});
