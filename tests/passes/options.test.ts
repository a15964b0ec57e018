// Pass options are checked when the pass is built (before any model is loaded or run), in
// option names, with the valid values; the CLI rewords option names as its flags.
import { describe, expect, it } from 'vitest';
import { isUserError } from '../../src/errors.js';
import { cleanup } from '../../src/passes/cleanup.js';
import { flexRound, gptq } from '../../src/passes/flexround.js';
import { quantize } from '../../src/passes/quantize.js';
import { flagOf, inFlags } from '../../src/cli/option-flags.js';
import { UserError } from '../../src/errors.js';

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    expect(isUserError(e)).toBe(true);
    return e as Error;
  }
  throw new Error('did not throw');
}

describe('pass options, checked when the pass is built', () => {
  it('an unknown scheme or option fails at once, listing the valid values', () => {
    expect(thrown(() => quantize({ scheme: 'w5' as never })).message).toBe(
      `pass 'quantize': option 'scheme' must be one of w8a8, w6a6, w4a4, dynamic, w8, w4, w3, w2, fp16, q4f16, not "w5"`,
    );
    expect(thrown(() => quantize({ scheme: 'w8', blockSize: 48 as never })).message).toMatch(/^pass 'quantize': option 'blockSize' must be one of 0, 16, 32, 64, 128, not 48$/);
    expect(thrown(() => quantize({ scheme: 'w8', perchannel: true } as never)).message).toMatch(/^pass 'quantize': unknown option 'perchannel' \(valid options: scheme, method, .*perChannel/);
    expect(thrown(() => flexRound({ bits: 5 as never })).message).toBe("pass 'flexround': option 'bits' must be one of 8, 4, 3, 2, not 5");
    expect(thrown(() => gptq({ damping: 0.1 } as never)).message).toMatch(/^pass 'gptq': unknown option 'damping' \(valid options: .*damp, actOrder, sequential, dynamicGroups\)$/);
    expect(thrown(() => cleanup({ identity: false } as never)).message).toBe("pass 'cleanup': unknown option 'identity' (valid options: identities)");
  });

  it('options left undefined count as absent', () => {
    expect(quantize({ scheme: 'w8', method: undefined, exclude: undefined }).name).toBe('quantize');
    expect(flexRound({ bits: 4, iters: 10, lr: undefined }).name).toBe('flexround');
  });
});

describe('the CLI speaks in flags', () => {
  it('maps option names to flags, kebab case unless the flag differs', () => {
    expect(flagOf('headRatio')).toBe('--head-ratio');
    expect(flagOf('calibration')).toBe('--calib');
    expect(flagOf('gptqDamp')).toBe('--damp');
    const e = inFlags(new UserError("pass 'prune': option 'maxIncrease' must be a number in [0, inf], not -1")) as Error;
    expect(e.message).toBe("pass 'prune': --max-increase must be a number in [0, inf], not -1");
    const other = new Error("option 'x'");
    expect(inFlags(other)).toBe(other);
  });
});
