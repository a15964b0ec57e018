import { UserError } from '../errors.js';

/** Library option names whose CLI flag is not the option name in kebab case. */
const FLAG_OF: Record<string, string> = {
  calibration: '--calib',
  gptqDamp: '--damp',
  gptqActOrder: '--act-order',
  gptqDynamicGroups: '--dynamic-groups',
  gptqSequential: '--sequential',
  repquantObserver: '--repquant-bounds',
  keepFloat32Ops: '--keep-float32',
  weightSymmetric: '--weight-grid',
};

/** The CLI flag for a library option name (headRatio -> --head-ratio). */
export function flagOf(option: string): string {
  return FLAG_OF[option] ?? `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * Library errors name options (`option 'headRatio'`); the CLI speaks in flags. Rewrites a
 * UserError's message so (`pass 'prune': option 'headRatio' must be ...` becomes
 * `pass 'prune': --head-ratio must be ...`); anything else is returned as it is.
 */
export function inFlags(e: unknown): unknown {
  if (!(e instanceof UserError) || !/option '\w+'/.test(e.message)) return e;
  return new UserError(e.message.replace(/option '(\w+)'/g, (_, name: string) => flagOf(name)), { cause: e });
}
