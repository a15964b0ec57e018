import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Runs the built CLI (bin/slimformer.js) with the given arguments. */
export function cli(...args: string[]): CliResult {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/slimformer.js'), ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
