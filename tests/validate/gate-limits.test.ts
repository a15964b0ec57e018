import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { assignLimits, checkLimit, describeLimit, formatNumber, gateMetricList, parseLimits, resolveLimits } from '../../src/validate/limits.js';

describe('parseLimits (the --max-drop, --min, --max syntax)', () => {
  it('a bare value applies to all; METRIC=VALUE items name one metric; % is relative', () => {
    expect(parseLimits({ maxDrop: ['0.005'] })).toEqual({ all: { kind: 'max-drop', value: 0.005, relative: false }, perMetric: {} });
    expect(parseLimits({ maxDrop: ['0.5%'] }).all).toEqual({ kind: 'max-drop', value: 0.005, relative: true });
    const p = parseLimits({ maxDrop: ['top1=0.005, nll=2%'], min: ['sqnr=30', 'cosine=0.999'], max: ['perplexity=3.5'] });
    expect(p.all).toBeUndefined();
    expect(p.perMetric).toEqual({
      top1: { kind: 'max-drop', value: 0.005, relative: false },
      nll: { kind: 'max-drop', value: 0.02, relative: true },
      sqnr: { kind: 'min', value: 30 },
      cosine: { kind: 'min', value: 0.999 },
      perplexity: { kind: 'max', value: 3.5 },
    });
    // a default and named limits mix, in one flag or across flags
    const mixed = parseLimits({ maxDrop: ['0.01,nll=2%'], min: ['sqnr=-3.5e1'] });
    expect(mixed.all).toEqual({ kind: 'max-drop', value: 0.01, relative: false });
    expect(mixed.perMetric.sqnr).toEqual({ kind: 'min', value: -35 });
    expect(parseLimits({})).toEqual({ perMetric: {} });
  });

  it('rejects bad syntax, unknown metrics, negative drops, percentages as floors, and two limits for one metric', () => {
    const bad: [Parameters<typeof parseLimits>[0], RegExp][] = [
      [{ maxDrop: ['abc'] }, /--max-drop takes VALUE or VALUE%, or METRIC=VALUE or VALUE% items separated by commas, not 'abc'/],
      [{ maxDrop: ['top1='] }, /--max-drop takes .* not 'top1='/],
      [{ maxDrop: ['0.5%%'] }, /not '0.5%%'/],
      [{ maxDrop: ['top1=0.1,'] }, /not 'top1=0.1,'/],
      [{ maxDrop: [''] }, /not ''/],
      [{ min: ['1e'] }, /--min takes VALUE, or METRIC=VALUE items/],
      [{ maxDrop: ['f1=0.1'] }, /unknown metric 'f1' in --max-drop f1=0.1 \(choose from top1, nll, perplexity, agreement, cosine, sqnr, kl, stream-nll, stream-perplexity, gen-agreement, gen-divergence, topk-agreement\)/],
      [{ maxDrop: ['-0.1'] }, /a drop cannot be negative/],
      [{ min: ['top1=90%'] }, /--min top1=90%: a floor or ceiling is a plain value of the metric, not a percentage/],
      [{ maxDrop: ['top1=0.1'], min: ['top1=0.8'] }, /top1 has two limits \(--max-drop and --min\); give one per metric/],
      [{ maxDrop: ['top1=0.1,top1=0.2'] }, /top1 has two limits/],
      [{ maxDrop: ['0.1'], min: ['0.8'] }, /both --max-drop and --min give a limit for all metrics; name the metric/],
    ];
    for (const [flags, message] of bad) {
      expect(() => parseLimits(flags), JSON.stringify(flags)).toThrow(UserError);
      expect(() => parseLimits(flags), JSON.stringify(flags)).toThrow(message);
    }
  });

  it('the metrics checked: those listed, plus those the limits name; default top1', () => {
    expect(gateMetricList(undefined, parseLimits({ maxDrop: ['0.005'] }))).toEqual(['top1']);
    expect(gateMetricList(undefined, parseLimits({ maxDrop: ['nll=2%'], min: ['sqnr=30'] }))).toEqual(['nll', 'sqnr']);
    expect(gateMetricList(['top1', 'agreement'], parseLimits({ maxDrop: ['0.01'], min: ['sqnr=30'] }))).toEqual(['top1', 'agreement', 'sqnr']);
    const parsed = parseLimits({ maxDrop: ['0.01'], min: ['sqnr=30'] });
    expect(assignLimits(['top1', 'agreement', 'sqnr'], parsed)).toEqual({
      top1: { kind: 'max-drop', value: 0.01, relative: false },
      agreement: { kind: 'max-drop', value: 0.01, relative: false },
      sqnr: { kind: 'min', value: 30 },
    });
    // no default: a listed metric without a named limit is reported only
    expect(assignLimits(['top1', 'nll'], parseLimits({ maxDrop: ['nll=2%'] }))).toEqual({ nll: { kind: 'max-drop', value: 0.02, relative: true } });
  });
});

describe('resolveLimits: a limit must suit its metric', () => {
  it('spreads one limit over all metrics, or takes them per metric', () => {
    const drop = { kind: 'max-drop', value: 0.01, relative: false } as const;
    expect(resolveLimits(['top1', 'nll'], drop)).toEqual({ top1: drop, nll: drop });
    expect(resolveLimits(['top1', 'sqnr'], { sqnr: { kind: 'min', value: 30 } })).toEqual({ sqnr: { kind: 'min', value: 30 } });
  });

  it('refuses a floor on a lower-is-better metric, a ceiling on a higher-is-better one, a drop from sqnr, and no limit at all', () => {
    expect(() => resolveLimits(['nll'], { kind: 'min', value: 1 })).toThrow(/nll is better when lower, so it takes a ceiling \(--max nll=VALUE\), not a floor/);
    expect(() => resolveLimits(['top1'], { kind: 'max', value: 1 })).toThrow(/top1 is better when higher, so it takes a floor \(--min top1=VALUE\)/);
    expect(() => resolveLimits(['top1', 'sqnr'], { kind: 'max-drop', value: 1, relative: false })).toThrow(/sqnr compares the candidate with the baseline, whose own sqnr is infinite, so no drop from it is finite: give a floor instead \(e\.g\. --min sqnr=30, in dB\)/);
    expect(() => resolveLimits(['kl'], { kind: 'max-drop', value: 1, relative: true })).toThrow(/kl compares the candidate with the baseline, whose own kl is 0, so a percentage of it is 0: give a ceiling in nats instead \(e\.g\. --max kl=0\.01\)/);
    expect(() => resolveLimits(['kl'], { kind: 'min', value: 0.1 })).toThrow(/kl is better when lower/);
    expect(() => resolveLimits(['top1'], {})).toThrow(/the gate has no limit to check/);
    expect(() => resolveLimits(['top1'], { nll: { kind: 'max', value: 1 } })).toThrow(/there is a limit for nll but nll is not among the metrics checked \(top1\)/);
    expect(() => resolveLimits(['top1'], { kind: 'min', value: NaN })).toThrow(/must be a finite number/);
  });
});

describe('checkLimit: direction, absolute and relative drops, floors and ceilings', () => {
  it('kl (ideal 0): an absolute drop is a ceiling above 0, like --max', () => {
    const drop = { kind: 'max-drop' as const, value: 0.01, relative: false };
    expect(checkLimit('kl', 0, 0.009, drop).pass).toBe(true);
    expect(checkLimit('kl', 0, 0.011, drop).pass).toBe(false);
    expect(checkLimit('kl', 0, 0.011, { kind: 'max', value: 0.02 }).pass).toBe(true);
  });

  it('higher is better (top1): an absolute drop', () => {
    const limit = { kind: 'max-drop', value: 0.005, relative: false } as const;
    expect(checkLimit('top1', 0.9, 0.896, limit)).toMatchObject({ pass: true });
    expect(checkLimit('top1', 0.9, 0.95, limit)).toMatchObject({ pass: true }); // better is always fine
    const fail = checkLimit('top1', 0.9, 0.894, limit);
    expect(fail.pass).toBe(false);
    expect(fail.threshold).toBeCloseTo(0.895, 15);
    expect(fail.message).toBe('top1 fell by 0.006 from 0.9 to 0.894, more than the allowed max-drop 0.005 (top1 must be ≥ 0.895)');
  });

  it('a drop of exactly the limit passes despite float rounding (0.05 − 0.02 > 0.03 in binary)', () => {
    expect(5 / 100 - 0.02).toBeGreaterThan(3 / 100);
    expect(checkLimit('top1', 5 / 100, 3 / 100, { kind: 'max-drop', value: 0.02, relative: false }).pass).toBe(true);
    expect(checkLimit('top1', 5 / 100, 2.9 / 100, { kind: 'max-drop', value: 0.02, relative: false }).pass).toBe(false);
    expect(0.57 * 1.02).toBeLessThan(0.5814);
    expect(checkLimit('nll', 0.57, 0.5814, { kind: 'max-drop', value: 0.02, relative: true }).pass).toBe(true);
  });

  it('lower is better (nll, perplexity): the drop is a rise; relative to the baseline', () => {
    const limit = { kind: 'max-drop', value: 0.02, relative: true } as const;
    const ok = checkLimit('nll', 0.5, 0.509, limit);
    expect(ok.pass).toBe(true);
    expect(ok.threshold).toBeCloseTo(0.51, 15);
    expect(checkLimit('nll', 0.5, 0.3, limit).pass).toBe(true); // a fall in nll is an improvement
    const fail = checkLimit('perplexity', 2, 2.05, limit);
    expect(fail.pass).toBe(false);
    expect(fail.message).toBe('perplexity rose by 0.05 from 2 to 2.05, more than the allowed max-drop 2% (perplexity must be ≤ 2.04)');
    // the same drop in a higher-is-better metric would be measured the other way
    expect(checkLimit('top1', 0.5, 0.509, limit).pass).toBe(true);
    expect(checkLimit('top1', 0.5, 0.489, limit).pass).toBe(false);
  });

  it('metrics against the baseline drop from their ideal', () => {
    expect(checkLimit('agreement', 1, 0.995, { kind: 'max-drop', value: 0.5 / 100, relative: true })).toMatchObject({ pass: true, threshold: 0.995 });
    expect(checkLimit('cosine', 1, 0.98, { kind: 'max-drop', value: 0.01, relative: false }).pass).toBe(false);
  });

  it('floors and ceilings ignore the baseline', () => {
    expect(checkLimit('sqnr', Infinity, 31, { kind: 'min', value: 30 })).toMatchObject({ pass: true, threshold: 30 });
    expect(checkLimit('sqnr', Infinity, Infinity, { kind: 'min', value: 30 }).pass).toBe(true);
    expect(checkLimit('sqnr', Infinity, 29.9, { kind: 'min', value: 30 })).toMatchObject({ pass: false, message: 'sqnr 29.9 is below the floor 30' });
    expect(checkLimit('perplexity', 9, 3.4, { kind: 'max', value: 3.5 }).pass).toBe(true);
    expect(checkLimit('perplexity', 1, 3.6, { kind: 'max', value: 3.5 })).toMatchObject({ pass: false, message: 'perplexity 3.6 is above the ceiling 3.5' });
  });

  it('NaN never passes', () => {
    expect(checkLimit('cosine', 1, NaN, { kind: 'min', value: 0 })).toMatchObject({ pass: false, message: 'cosine is NaN for the candidate (an output holds NaN or Inf)' });
    expect(checkLimit('nll', NaN, 1, { kind: 'max-drop', value: 1, relative: false }).pass).toBe(false);
    expect(checkLimit('nll', 1, NaN, { kind: 'max', value: 10 }).pass).toBe(false);
  });

  it('formats limits and numbers', () => {
    expect(describeLimit({ kind: 'max-drop', value: 0.07, relative: true })).toBe('max-drop 7%');
    expect(describeLimit({ kind: 'max-drop', value: 0.005, relative: false })).toBe('max-drop 0.005');
    expect(describeLimit({ kind: 'min', value: 30 })).toBe('min 30');
    expect([formatNumber(Infinity), formatNumber(-Infinity), formatNumber(NaN), formatNumber(1 / 3)]).toEqual(['inf', '-inf', 'NaN', '0.333333']);
  });
});
