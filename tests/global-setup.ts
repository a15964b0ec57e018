import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The CLI tests run the compiled CLI, so build once before the suite; afterwards remove the test cache. */
export default function setup(): () => void {
  if (process.env.SLIMFORMER_SKIP_BUILD !== '1') {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });
  }
  // the same folder vitest.config.ts hands the tests as SLIMFORMER_CACHE_DIR
  const cache = path.join(os.tmpdir(), `slimformer-test-cache-${process.pid}`);
  return () => fs.rmSync(cache, { recursive: true, force: true });
}
