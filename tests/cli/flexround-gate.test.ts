import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixtures } from '../helpers/fixtures.js';
import { cli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

// The user's flow for issue 5: a FlexRound model from the CLI, then the CI gate on it.
describe('FlexRound output through the gate', () => {
  const vit = fixtures().find((f) => f.name === 'vit_mnist')!;
  const dir = tempDir();
  const out = path.join(dir, 'vit.flexround.w4.onnx');

  it('quantize --method flexround writes a model that the gate scores against the float model (pass within 0.5 point, fail on an impossible SQNR floor)', () => {
    const q = cli('quantize', vit.model, '-o', out, '--calib', vit.calibration, '--no-cache', '--scheme', 'w4', '--method', 'flexround', '--iters', '40', '--json');
    expect(q.code, q.stderr).toBe(0);
    expect(JSON.parse(q.stdout).flexround.units.length).toBeGreaterThan(0);
    expect(fs.existsSync(out)).toBe(true);

    const pass = cli('gate', '--baseline', vit.model, '--candidate', out, '--data', vit.dataset, '--metric', 'top1,agreement,sqnr', '--max-drop', 'top1=0.005', '--json');
    expect(pass.code, pass.stderr).toBe(0);
    const r = JSON.parse(pass.stdout) as { pass: boolean; metrics: Record<string, { candidate: number }> };
    expect(r.pass).toBe(true);
    const sqnr = r.metrics.sqnr!.candidate;
    expect(sqnr).toBeGreaterThan(10);

    // the same candidate against a floor above its measured SQNR: exit 1
    const fail = cli('gate', '--baseline', vit.model, '--candidate', out, '--data', vit.dataset, '--metric', 'top1,sqnr', '--min', `sqnr=${Math.ceil(sqnr + 10)}`);
    expect(fail.code, fail.stderr + fail.stdout).toBe(1);
  });

  it("says in its summary when units kept GPTQ's levels for too little calibration data", () => {
    // the zoo Llama's 16 samples of 64 tokens: 5.8 tokens per input of the blocks' widest linear (176), 16 for the head's 64
    const llama = path.join(import.meta.dirname, '../../fixtures/zoo/llama_moby.onnx');
    const q = cli('quantize', llama, '-o', path.join(dir, 'llama.fr.onnx'), '--calib', path.join(import.meta.dirname, '../../calibration/zoo/llama_moby/calib'), '--no-cache', '--scheme', 'w3', '--method', 'flexround', '--iters', '20');
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toMatch(/^flexround {3}block-wise, 20 steps at lr 0\.003: \d of 3 units improved on calibration data; 2 kept the start, too little calibration data to learn them \(--flexround-min-tokens; the report names each\)/m);
  });
});
