import cliProgress from 'cli-progress';

/**
 * Progress of long work, as a stack of steps: `start` opens a step inside the current one,
 * `tick` reports the innermost open step, `end` closes it and the step around it carries on
 * where it was. A step's counter therefore never mixes with another's (a nested GPTQ step
 * with 12 layers cannot push the outer "quantize weights" step past its own total).
 *
 * Reporting progress never throws, whatever it is told: a negative, NaN or too large count is
 * clamped, a total that is not a positive number shows no bar, and a tick or end with no open
 * step is ignored.
 */
export interface Progress {
  /** Opens a step of `total` units inside the current one. */
  start(label: string, total: number): void;
  /** `done` units of the innermost open step are finished. */
  tick(done: number, detail?: string): void;
  /** Closes the innermost open step: 'done' when it finished, 'stopped' when an error or an interrupt ended it. */
  end(detail?: string, outcome?: 'done' | 'stopped'): void;
}

export const silentProgress: Progress = { start() {}, tick() {}, end() {} };

/**
 * Runs `body` as one step of `progress`, closing the step in every case (marked stopped when
 * `body` throws), so an error cannot leave a step open for the next one to tick.
 */
export async function inStep<T>(
  progress: Progress,
  label: string,
  total: number,
  body: (tick: (done: number, detail?: string) => void) => Promise<T>,
  summary?: (result: T) => string,
): Promise<T> {
  progress.start(label, total);
  let result: T;
  try {
    result = await body((done, detail) => progress.tick(done, detail));
  } catch (e) {
    progress.end(undefined, 'stopped');
    throw e;
  }
  progress.end(summary?.(result));
  return result;
}

interface Step {
  label: string;
  total: number;
  done: number;
  detail: string;
  started: number;
}

/** A count that can be shown: a finite number in [0, total] (or >= 0 when there is no total). */
function clampCount(x: number, total: number): number {
  if (!Number.isFinite(x) || x < 0) return 0;
  const whole = Math.floor(x);
  return total > 0 ? Math.min(whole, total) : whole;
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  return seconds < 60 ? `${seconds.toFixed(0)}s` : `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`;
}

function finalLine(s: Step, outcome: 'done' | 'stopped', detail: string): string {
  const secs = ((Date.now() - s.started) / 1000).toFixed(1);
  const count = s.total > 0 ? `${outcome === 'done' ? s.total : s.done}/${s.total}` : `${s.done}`;
  const what = outcome === 'done' ? `${count} done in ${secs}s` : `stopped at ${count} after ${secs}s`;
  return `${s.label}: ${what}${detail ? ` ${detail}` : ''}`;
}

/** Calls a writer and swallows anything it throws: progress is never worth failing the work. */
function safely(f: () => void): void {
  try {
    f();
  } catch {
    // a closed or broken stream: progress is cosmetic, the work goes on
  }
}

/**
 * Progress on the console. On a terminal, the innermost step is one line redrawn in place by
 * cli-progress (bar, count, ETA, throttled to 10 redraws a second, cut to the terminal's width);
 * a step that ends leaves one line saying how long it took. In a log (CI, pipes) a plain line
 * every `intervalMs` and one when a step ends.
 */
export function consoleProgress(stream: NodeJS.WriteStream = process.stderr, intervalMs = 5000): Progress {
  const tty = stream.isTTY === true;
  const steps: Step[] = [];
  let bar: cliProgress.SingleBar | undefined;
  let lastLog = 0;

  const barLine = (options: cliProgress.Options, params: cliProgress.Params, payload: Record<string, unknown>): string => {
    const s = payload.step as Step;
    if (s.total <= 0) return `${s.label} ${s.done} ${s.detail}`;
    const eta = typeof params.eta === 'number' && s.done > 0 ? duration(params.eta) : '?';
    return `${s.label} ${cliProgress.Format.BarFormat(params.progress, options)} ${s.done}/${s.total} ETA ${eta} ${s.detail}`;
  };

  // the bar shows the innermost step; it is recreated whenever that step changes
  const showTop = (): void => {
    const s = steps.at(-1);
    if (!tty || !s) return;
    bar = new cliProgress.SingleBar({
      stream,
      format: barLine,
      barsize: 24,
      barCompleteChar: '█',
      barIncompleteChar: '░',
      // no terminal modes (hidden cursor, no wrapping) that an exit without stop() would leave behind
      hideCursor: false,
      linewrap: true,
      clearOnComplete: true,
    });
    bar.start(Math.max(s.total, 1), s.done, { step: s });
  };
  const hideBar = (): void => {
    bar?.stop();
    bar = undefined;
  };

  return {
    start(label, total) {
      safely(() => {
        hideBar();
        const t = Number.isFinite(total) && total > 0 ? Math.floor(total) : 0;
        steps.push({ label: String(label), total: t, done: 0, detail: '', started: Date.now() });
        lastLog = Date.now();
        showTop();
      });
    },
    tick(done, detail = '') {
      safely(() => {
        const s = steps.at(-1);
        if (!s) return;
        s.done = clampCount(done, s.total);
        s.detail = String(detail);
        if (tty) {
          bar?.update(s.done, { step: s });
        } else if (Date.now() - lastLog >= intervalMs) {
          lastLog = Date.now();
          const count = s.total > 0 ? `${s.done}/${s.total}` : `${s.done}`;
          stream.write(`${s.label}: ${count}${s.detail ? ` ${s.detail}` : ''}\n`);
        }
      });
    },
    end(detail = '', outcome = 'done') {
      safely(() => {
        const s = steps.pop();
        if (!s) return;
        hideBar();
        // in a log, the error or interrupt that stopped the step says so in its one line
        if (tty || outcome === 'done') stream.write(finalLine(s, outcome, String(detail)) + '\n');
        lastLog = Date.now();
        showTop();
      });
    },
  };
}
