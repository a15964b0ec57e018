import * as os from 'node:os';
import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/global-setup.ts'],
    // calibration caches written by tests stay out of the work tree
    env: { SLIMFORMER_CACHE_DIR: path.join(os.tmpdir(), `slimformer-test-cache-${process.pid}`) },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // onnxruntime sessions use both cores already; parallel files would only contend
    fileParallelism: false,
  },
});
