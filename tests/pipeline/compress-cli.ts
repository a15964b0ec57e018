import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * Runs the built CLI with `compress` registered (main.ts registers it once the lead adds the
 * line; until then the program is built here the same way).
 */
export function compressCli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const script = `import { buildProgram } from ${JSON.stringify(path.join(ROOT, 'dist/src/cli/main.js'))};
import { registerCompress } from ${JSON.stringify(path.join(ROOT, 'dist/src/cli/compress.js'))};
const p = buildProgram();
if (!p.commands.some((c) => c.name() === 'compress')) registerCompress(p);
await p.parseAsync(['node', 'slimformer', ...process.argv.slice(1)]);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, 'compress', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
