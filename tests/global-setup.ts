import { execFileSync } from 'node:child_process';

/** The CLI tests run the compiled CLI, so build once before the suite. */
export default function setup(): void {
  if (process.env.SLIMFORMER_SKIP_BUILD === '1') return;
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });
}
