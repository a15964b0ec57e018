import { isUserError } from '../errors.js';
import { PassError } from '../passes/pass.js';

/**
 * Runs a command body with the CLI's error contract: a user error prints one sentence and
 * exits 2; Ctrl-C aborts the signal so work stops cleanly (exit 130); anything else is a bug
 * and exits 70 (EX_SOFTWARE) with its stack, so a CI job never mistakes a crash for a failed
 * gate (exit 1).
 */
export async function runCommand(body: (signal: AbortSignal) => Promise<number | void>): Promise<never> {
  const controller = new AbortController();
  const onSigint = (): void => {
    if (controller.signal.aborted) process.exit(130);
    process.stderr.write('\nslimformer: interrupted, stopping (press Ctrl-C again to force)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  let code: number;
  try {
    code = (await body(controller.signal)) ?? 0;
  } catch (e) {
    if (controller.signal.aborted) {
      process.stderr.write('slimformer: interrupted; nothing was written\n');
      code = 130;
    } else if (isUserError(e) || (e instanceof PassError && isUserError(e.inner))) {
      process.stderr.write(`slimformer: ${(e as Error).message}\n`);
      code = 2;
    } else {
      process.stderr.write(`slimformer: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      code = 70;
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  process.exit(code);
}
