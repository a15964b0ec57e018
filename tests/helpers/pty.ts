import { spawn } from 'node:child_process';
import * as path from 'node:path';

export interface PtyResult {
  code: number;
  /** Everything the command wrote to the terminal (stdout and stderr share it), escapes kept. */
  output: string;
}

export interface PtyRun {
  /** The CLI's own process id (the shell that `script` starts replaces itself with node). */
  pid: Promise<number>;
  /** Resolves once the terminal output matches `pattern`. */
  waitFor(pattern: RegExp): Promise<void>;
  done: Promise<PtyResult>;
}

const ROOT = path.resolve(import.meta.dirname, '../..');

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Runs the built CLI with a pseudo-terminal as its stdout and stderr (util-linux `script`), as a
 * user at a terminal does: `process.stderr.isTTY` is true, so progress is drawn in place.
 */
export function startPtyCli(...args: string[]): PtyRun {
  const command = `echo "PID=$$"; exec ${[process.execPath, path.join(ROOT, 'bin/slimformer.js'), ...args].map(shellQuote).join(' ')}`;
  // -q: no banner, -e: the command's exit code, -c: the command; the typescript goes nowhere
  const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: ROOT, env: { ...process.env, SLIMFORMER_THREADS: '2' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const onData = (b: Buffer): void => {
    output += b.toString('utf8');
    for (const w of [...waiters]) {
      if (w.pattern.test(output)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const done = new Promise<PtyResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      for (const w of waiters) w.resolve();
      resolve({ code: code ?? -1, output });
    });
  });
  const waitFor = (pattern: RegExp): Promise<void> =>
    pattern.test(output) ? Promise.resolve() : new Promise((resolve) => waiters.push({ pattern, resolve }));
  const pid = waitFor(/PID=(\d+)/).then(() => Number(/PID=(\d+)/.exec(output)![1]));
  return { pid, waitFor, done };
}

/** Runs the built CLI on a pseudo-terminal to the end. */
export function ptyCli(...args: string[]): Promise<PtyResult> {
  return startPtyCli(...args).done;
}
