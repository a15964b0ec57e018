import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/slimformer.js');
const MODEL = path.join(ROOT, 'fixtures/vit_mnist.onnx');

/** The first SLIMFORMER_MEMTRACE line of a short quantize run started by `command`. */
function allocatorLine(command: string[]): string | undefined {
  const out = path.join(tempDir('slimformer-allocator-'), 'out.onnx');
  const env: NodeJS.ProcessEnv = { ...process.env, SLIMFORMER_MEMTRACE: '1', SLIMFORMER_THREADS: '2' };
  delete env.MALLOC_MMAP_THRESHOLD_;
  const r = spawnSync(command[0]!, [...command.slice(1), 'quantize', MODEL, '-o', out, '--scheme', 'w4', '--method', 'rtn', '--json'], { cwd: ROOT, encoding: 'utf8', env });
  expect(r.status, r.stderr).toBe(0);
  return r.stderr.split('\n').find((l) => l.startsWith('[memory]'));
}

describe("glibc's allocator for the CLI (src/runtime/allocator.ts)", () => {
  it('the command as installed (bin/slimformer.js run itself) starts node with MALLOC_MMAP_THRESHOLD_; `node bin/slimformer.js` keeps the defaults', () => {
    expect(allocatorLine([BIN])).toBe('[memory] allocator: MALLOC_MMAP_THRESHOLD_=1048576');
    expect(allocatorLine([process.execPath, BIN])).toBe("[memory] allocator: glibc's defaults (MALLOC_MMAP_THRESHOLD_ not set)");
  }, 120_000);
});
