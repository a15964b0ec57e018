import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { fixtures, ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Runs the compiled CLI with the prune command added to the program (until src/cli/main.ts
 * registers it; then this is the same as tests/helpers/cli.ts).
 */
function prune(...args: string[]) {
  const script = `
    const { buildProgram } = await import(${JSON.stringify(path.join(ROOT, 'dist/src/cli/main.js'))});
    const { registerPrune } = await import(${JSON.stringify(path.join(ROOT, 'dist/src/cli/prune.js'))});
    const program = buildProgram();
    if (!program.commands.some((c) => c.name() === 'prune')) registerPrune(program);
    await program.parseAsync(['node', 'slimformer', 'prune', ...process.argv.slice(1)]);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const vit = fixtures().find((f) => f.name === 'vit_mnist')!;

describe('slimformer prune', () => {
  const dir = tempDir();

  it('writes a physically smaller model and prints what changed', () => {
    const out = path.join(dir, 'vit.optin.onnx');
    const r = prune(vit.model, '-o', out, '--calib', vit.calibration, '--method', 'optin', '--flops', '0.8', '--samples', '4');
    expect(r.stderr).not.toMatch(/internal error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/FLOPs\/sample/);
    expect(r.stdout).toMatch(/parameters\s+139018 -> \d+/);
    expect(loadModel(out).parameterCount()).toBeLessThan(loadModel(vit.model).parameterCount());
  });

  it('--json gives the summary', () => {
    const out = path.join(dir, 'vit.mag.onnx');
    const r = prune(vit.model, '-o', out, '--method', 'magnitude', '--ratio', '0.25', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.method).toBe('magnitude');
    expect(j.neuronsRemoved).toBe(4 * 32);
    expect(discoverStructure(loadModel(out)).mlps.every((m) => m.width === 96)).toBe(true);
  });

  it('--method drop-mlp and drop-attention --count N remove whole sublayers', () => {
    for (const [method, count] of [
      ['drop-mlp', 2],
      ['drop-attention', 3],
    ] as const) {
      const out = path.join(dir, `vit.${method}.onnx`);
      const r = prune(vit.model, '-o', out, '--calib', vit.calibration, '--method', method, '--count', String(count), '--samples', '4', '--json');
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout);
      expect(j.method).toBe(method);
      expect(j.sublayersRemoved).toBe(count);
      const dropped = j.blocks.filter((b: { attentionDropped: boolean; mlpDropped: boolean }) => (method === 'drop-mlp' ? b.mlpDropped : b.attentionDropped)).map((b: { index: number }) => b.index);
      expect(dropped.sort()).toEqual(j.similarity.slice(0, count).map((x: { block: number }) => x.block).sort());
      const s = discoverStructure(loadModel(out));
      expect(method === 'drop-mlp' ? s.mlps.length : s.attentions.length).toBe(4 - count);
      expect(method === 'drop-mlp' ? s.attentions.length : s.mlps.length).toBe(4);
    }
    // more sublayers than the model has is a user error
    const r = prune(vit.model, '-o', path.join(dir, 'never.onnx'), '--calib', vit.calibration, '--method', 'drop-mlp', '--count', '5', '--samples', '4');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--count is 5, more than the 4 MLP sublayers/);
  });

  it('user errors exit 2 with one sentence and write nothing', () => {
    const out = path.join(dir, 'never.onnx');
    for (const args of [
      [vit.model, '-o', out, '--method', 'optin', '--flops', '0.6'],
      [vit.model, '-o', out, '--method', 'magnitude', '--ratio', 'lots'],
      [vit.model, '-o', out, '--method', 'shrink'],
      [path.join(dir, 'missing.onnx'), '-o', out, '--method', 'magnitude', '--ratio', '0.2'],
      [vit.model, '-o', vit.model, '--method', 'magnitude', '--ratio', '0.2'],
    ]) {
      const r = prune(...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  it('speaks in flags where the library speaks in option names', () => {
    const out = path.join(dir, 'never.onnx');
    const cases: [string[], RegExp][] = [
      [['--method', 'magnitude', '--ratio', '1.5'], /^slimformer: pass 'prune': --ratio must be a number in \[0, 1\], not 1\.5$/],
      [['--method', 'optin'], /^slimformer: pass 'prune': method optin needs --ratio, --flops or --head-ratio$/],
      [['--method', 'mlp', '--head-ratio', '0.2'], /^slimformer: pass 'prune': --head-ratio goes with method optin, not mlp$/],
      [['--method', 'optin', '--flops', '0.6'], /^slimformer: pass 'prune': method optin needs calibration data \(--calib\)$/],
    ];
    for (const [args, re] of cases) {
      const r = prune(vit.model, '-o', out, ...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim()).toMatch(re);
    }
  });
});
