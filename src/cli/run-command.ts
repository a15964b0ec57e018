import { isUserError } from '../errors.js';
import { PassError } from '../passes/pass.js';

/** Exit codes for the stop signals: 128 + the signal's number, as shells report them. */
const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT;

/**
 * Runs a command body with the CLI's error contract: a user error prints one sentence and
 * exits 2; Ctrl-C (SIGINT) or SIGTERM (what CI runners, containers and `timeout` send) aborts
 * the signal so work stops cleanly, prints one line and exits 130 or 143 (a second one exits
 * at once); anything else is a bug and exits 70 (EX_SOFTWARE) with its stack, so a CI job never
 * mistakes a crash for a failed gate (exit 1). Outputs are written under temporary names and
 * renamed when complete (saveModel, writeFileAtomic), so a stop leaves no partial file.
 * `mapError` rewords an error before it is printed (cli/option-flags.ts inFlags).
 */
export async function runCommand(body: (signal: AbortSignal) => Promise<number | void>, mapError: (e: unknown) => unknown = (e) => e): Promise<never> {
  const controller = new AbortController();
  let stoppedBy: StopSignal | undefined;
  const onSignal = (name: StopSignal): void => {
    // a second signal while stopping: leave now (temporary files go with the 'exit' handlers)
    if (stoppedBy) process.exit(SIGNAL_EXIT[name]);
    stoppedBy = name;
    controller.abort();
  };
  const handlers = (Object.keys(SIGNAL_EXIT) as StopSignal[]).map((name) => [name, () => onSignal(name)] as const);
  for (const [name, h] of handlers) process.on(name, h);
  let code: number;
  try {
    code = (await body(controller.signal)) ?? 0;
  } catch (caught) {
    // a command may reword library errors (option names -> its flags: cli/option-flags.ts)
    const e = mapError(caught);
    if (stoppedBy) {
      process.stderr.write(`slimformer: stopped by ${stoppedBy === 'SIGINT' ? 'Ctrl-C (SIGINT)' : 'SIGTERM'}; nothing was written\n`);
      code = SIGNAL_EXIT[stoppedBy];
    } else if (isUserError(e) || (e instanceof PassError && isUserError(e.inner))) {
      process.stderr.write(`slimformer: ${(e as Error).message}\n`);
      code = 2;
    } else {
      process.stderr.write(`slimformer: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      code = 70;
    }
  } finally {
    for (const [name, h] of handlers) process.removeListener(name, h);
  }
  process.exit(code);
}
