import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { injectOutliers } from '../analyze/outlier-model.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

// Runs the built CLI with `analyze` registered (added here until src/cli/main.ts registers it).
const runner = `
import { buildProgram } from ${JSON.stringify(path.join(ROOT, 'dist/src/cli/main.js'))};
import { registerAnalyze } from ${JSON.stringify(path.join(ROOT, 'dist/src/cli/analyze.js'))};
const p = buildProgram();
if (!p.commands.some((c) => c.name() === 'analyze')) registerAnalyze(p);
await p.parseAsync(process.argv);
`;
function analyze(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', runner, 'slimformer', 'analyze', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const dir = tempDir();
const vit = path.join(ROOT, 'fixtures/vit_mnist.onnx');
const calib = path.join(ROOT, 'calibration/vit_mnist/calib');
const outlierFile = path.join(dir, 'outliers.onnx');
const m = loadModel(vit);
injectOutliers(m, 1, [5, 17, 40], 50);
saveModel(m, outlierFile);

describe('slimformer analyze', () => {
  it('--json prints the analysis; gates pass (exit 0) within the limits', () => {
    const r = analyze(vit, '--calib', calib, '--samples', '16', '--json', '--max-kurtosis', '100', '--max-inf-norm', '100');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.samples).toBe(16);
    expect(j.layers.length).toBeGreaterThan(20);
    expect(j.attention).toHaveLength(4);
    expect(j.gate.passed).toBe(true);
  });

  it('--max-kurtosis exits 1 when exceeded', () => {
    const r = analyze(vit, '--calib', calib, '--samples', '16', '--max-kurtosis', '2');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAIL: kurtosis .* exceeds --max-kurtosis 2/);
  });

  it('--max-inf-norm exits 1 on the outlier model and names the channels; 0 on the original', () => {
    const bad = analyze(outlierFile, '--calib', calib, '--samples', '16', '--max-inf-norm', '20');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/blocks\.1\.mlp_norm\s+\S+\s+\S+\s+(5|17|40),(5|17|40),(5|17|40)/);
    expect(bad.stdout).toMatch(/FAIL: inf norm .* exceeds --max-inf-norm 20/);
    expect(bad.stdout).toMatch(/--exclude 'blocks\.1\.mlp\.fc1'/);
    const good = analyze(vit, '--calib', calib, '--samples', '16', '--max-inf-norm', '20');
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/PASS/);
  });

  it('writes --html and the what-if clipped softmax comparison', () => {
    const html = path.join(dir, 'report.html');
    const r = analyze(vit, '--calib', calib, '--samples', '8', '--json', '--html', html, '--what-if-clipped', '-0.03', '--eval', calib);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.whatIfClipped.rewritten).toHaveLength(4);
    expect(j.whatIfClipped.accuracy.metric).toBe('top1');
    expect(fs.readFileSync(html, 'utf8')).toMatch(/<h1>Outlier analysis/);
  });

  it('user errors exit 2 with one sentence', () => {
    const r = analyze(vit, '--calib', calib, '--max-kurtosis', 'lots');
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("slimformer: --max-kurtosis takes a positive number, not 'lots'");
    const missing = analyze(path.join(dir, 'nope.onnx'), '--calib', calib);
    expect(missing.code).toBe(2);
  });
});
