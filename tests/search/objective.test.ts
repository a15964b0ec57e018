import { describe, expect, it } from 'vitest';
import { chooseByObjective, parseObjective, type TimedCandidate } from '../../src/search/objective.js';

// timings shaped like bert_spam's on this machine (float 0.50 ms; INT8 faster, 4-bit weights slower)
const candidates: TimedCandidate[] = [
  { index: 1, bytes: 285_700, latencyMs: 0.48 }, // w8a8
  { index: 2, bytes: 216_200, latencyMs: 0.33 }, // pruned + dynamic
  { index: 3, bytes: 218_200, latencyMs: 0.34 }, // pruned + w8a8 (within 5% of the fastest, and larger)
  { index: 4, bytes: 145_000, latencyMs: 0.6 }, // pruned + w4: smallest, slower than float
];
const floatMs = 0.5;

describe('choosing by objective', () => {
  it('size takes the smallest, whatever its latency', () => {
    expect(chooseByObjective('size', candidates, floatMs, 0.05)).toMatchObject({ index: 4, fasterThanFloat: false });
  });

  it('latency takes the fastest, and among medians within the margin of it the smallest', () => {
    const c = chooseByObjective('latency', candidates, floatMs, 0.05)!;
    expect(c).toMatchObject({ index: 2, fasterThanFloat: true });
    expect(c.reason).toContain('0.330 ms, float 0.500 ms');
    // the larger model 3% faster than the smaller one: a tie, the smaller one wins
    const tie = chooseByObjective('latency', [{ index: 1, bytes: 300, latencyMs: 0.32 }, { index: 2, bytes: 200, latencyMs: 0.33 }], floatMs, 0.05)!;
    expect(tie.index).toBe(2);
    expect(tie.reason).toMatch(/within 5% of the fastest, trial 1, and smaller/);
    // without a margin the faster one wins
    expect(chooseByObjective('latency', [{ index: 1, bytes: 300, latencyMs: 0.32 }, { index: 2, bytes: 200, latencyMs: 0.33 }], floatMs, 0)!.index).toBe(1);
  });

  it('latency says when the winner is not faster than float by the margin', () => {
    const c = chooseByObjective('latency', [{ index: 1, bytes: 100, latencyMs: 0.49 }], floatMs, 0.05)!;
    expect(c).toMatchObject({ index: 1, fasterThanFloat: false });
  });

  it('balanced takes the smallest model no slower than float, else the fastest', () => {
    expect(chooseByObjective('balanced', candidates, floatMs, 0.05)).toMatchObject({ index: 2 });
    // 4-bit within 5% of float counts as no slower: it is the smallest, so it wins
    const w4Close = candidates.map((c) => (c.index === 4 ? { ...c, latencyMs: 0.52 } : c));
    expect(chooseByObjective('balanced', w4Close, floatMs, 0.05)).toMatchObject({ index: 4, fasterThanFloat: false });
    const allSlow = candidates.map((c) => ({ ...c, latencyMs: c.latencyMs + 1 }));
    const c = chooseByObjective('balanced', allSlow, floatMs, 0.05)!;
    expect(c.index).toBe(2);
    expect(c.reason).toMatch(/every passing model ran slower than float/);
  });

  it('no candidate, no choice; an unknown objective is a user error naming the choices', () => {
    expect(chooseByObjective('latency', [], floatMs, 0.05)).toBeUndefined();
    expect(() => parseObjective('speed')).toThrow("--objective takes size, latency, balanced, not 'speed'");
  });
});
