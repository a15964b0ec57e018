#!/usr/bin/env -S MALLOC_MMAP_THRESHOLD_=1048576 node
// Thin launcher (its first line: glibc hands buffers of a MiB and more back to the system when
// freed, src/runtime/allocator.ts): the CLI lives in src/cli (compiled to dist/ by `npm run build`, which `npm ci` runs).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('slimformer: not built yet; run `npm run build` (or `npm ci`, which builds)\n');
  process.exit(2);
}
const { main } = await import(entry.href);
await main(process.argv);
