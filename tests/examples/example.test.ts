import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compressCli, ROOT } from '../pipeline/compress-cli.js';
import { tempDir } from '../helpers/tmp.js';

describe('examples/compose.mjs', () => {
  const dir = tempDir();

  it('resolves "slimformer" to the built package and matches the equivalent recipe byte for byte', () => {
    const fromApi = path.join(dir, 'api.onnx');
    const r = spawnSync(process.execPath, ['examples/compose.mjs', 'fixtures/vit_mnist.onnx', 'calibration/vit_mnist/calib', fromApi], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/25 layers at 8 bits, 1 kept in float/);
    for (const recipe of ['w8a8-float-classifier.json', 'w8a8-float-classifier.yaml']) {
      const fromRecipe = path.join(dir, recipe.replace(/\W/g, '_') + '.onnx');
      const c = compressCli('fixtures/vit_mnist.onnx', '-o', fromRecipe, '--calib', 'calibration/vit_mnist/calib', '--recipe', `examples/recipes/${recipe}`, '--latency-runs', '0', '--quiet');
      expect(c.code, c.stderr).toBe(0);
      expect(Buffer.compare(fs.readFileSync(fromApi), fs.readFileSync(fromRecipe))).toBe(0);
    }
  });
});
