import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ptyCli, type PtyResult, startPtyCli } from '../helpers/pty.js';
import { tempDir } from '../helpers/tmp.js';

// Every command that shows progress, run the way a user at a terminal runs it: stderr is a
// pseudo-terminal, so the progress bar is drawn in place. Models with embedding tables (the
// GPT and BERT fixtures), as in issue 15 item 1 (gptq and flexround crashed with exit 70 there).

const dir = tempDir('slimformer-tty-');
const GPT = 'fixtures/gpt_moby.onnx';
const GPT_CALIB = 'calibration/gpt_moby/calib';
const BERT = 'fixtures/bert_spam.onnx';
const BERT_CALIB = 'calibration/bert_spam/calib';
const BERT_EVAL = 'calibration/bert_spam/eval';

/** Exit 0, each step's bar redrawn in place on the terminal and finished, and no error. */
function expectDrawn(r: PtyResult, steps: string[]): void {
  expect(r.code, r.output).toBe(0);
  expect(r.output).not.toMatch(/internal error|Error|slimformer:/);
  for (const step of steps) {
    // a redraw: back to the first column, then the step's label and its bar
    const redraw = new RegExp(`(\\r|\\x1b\\[1G)${step} [█░]+ \\d+/\\d+ ETA`);
    expect(r.output, `no bar drawn for '${step}'`).toMatch(redraw);
    expect(r.output, `'${step}' never finished`).toMatch(new RegExp(`${step}: (\\d+)/\\1 done in \\d+\\.\\ds`));
  }
}

describe('on a terminal, every command draws its progress and finishes', () => {
  const out = (name: string): string => path.join(dir, name);

  it('quantize --method rtn', async () => {
    expectDrawn(await ptyCli('quantize', GPT, '-o', out('rtn.onnx'), '--calib', GPT_CALIB), ['calibrate', 'quantize weights', 'quantize embedding tables']);
  });

  it('quantize --method gptq (the reproduction of issue 15 item 1)', async () => {
    const r = await ptyCli('quantize', GPT, '-o', out('gptq.onnx'), '--calib', GPT_CALIB, '--scheme', 'w4', '--method', 'gptq');
    expectDrawn(r, ['quantize weights', 'gptq', 'quantize embedding tables']);
    expect(fs.existsSync(out('gptq.onnx'))).toBe(true);
  });

  it('quantize --method gptq on BERT', async () => {
    expectDrawn(await ptyCli('quantize', BERT, '-o', out('bert-gptq.onnx'), '--calib', BERT_CALIB, '--scheme', 'w4', '--method', 'gptq'), ['quantize weights', 'gptq', 'quantize embedding tables']);
  });

  it('quantize --method flexround (block-wise: captures and reconstruction steps)', async () => {
    const r = await ptyCli('quantize', GPT, '-o', out('flexround.onnx'), '--calib', GPT_CALIB, '--scheme', 'w4', '--method', 'flexround', '--iters', '3');
    expectDrawn(r, ['quantize weights', 'capture float activations', 'reconstruct block 0', 'reconstruct block 3', 'quantize embedding tables']);
  });

  it('quantize --method flexround --flexround-mode layer', async () => {
    const r = await ptyCli('quantize', GPT, '-o', out('flexround-layer.onnx'), '--calib', GPT_CALIB, '--scheme', 'w4', '--method', 'flexround', '--flexround-mode', 'layer', '--iters', '3');
    expectDrawn(r, ['quantize weights', 'flexround \\(layer-wise\\)', 'quantize embedding tables']);
  });

  it('quantize --method smoothquant', async () => {
    expectDrawn(await ptyCli('quantize', GPT, '-o', out('sq.onnx'), '--calib', GPT_CALIB, '--method', 'smoothquant'), ['calibrate', 'quantize weights']);
  });

  it('quantize --method repquant', async () => {
    expectDrawn(await ptyCli('quantize', GPT, '-o', out('rq.onnx'), '--calib', GPT_CALIB, '--method', 'repquant', '--repquant-bounds', 'minmax'), ['calibrate', 'quantize weights']);
  });

  it('prune --method optin', async () => {
    expectDrawn(await ptyCli('prune', BERT, '-o', out('pruned.onnx'), '--calib', BERT_CALIB, '--method', 'optin', '--ratio', '0.25', '--samples', '4'), ['optin']);
  });

  it('compress with a recipe that has a gptq step', async () => {
    const recipe = out('gptq-recipe.json');
    fs.writeFileSync(recipe, JSON.stringify({ name: 'w4-gptq', passes: [{ pass: 'quantize', scheme: 'w4', method: 'gptq' }, { pass: 'cleanup' }] }));
    expectDrawn(await ptyCli('compress', GPT, '-o', out('compressed.onnx'), '--calib', GPT_CALIB, '--recipe', recipe), ['quantize weights', 'gptq', 'quantize embedding tables']);
  });

  it('eval', async () => {
    expectDrawn(await ptyCli('eval', BERT, '--data', BERT_EVAL), ['eval']);
  });

  it('gate', async () => {
    expectDrawn(await ptyCli('gate', '--baseline', BERT, '--candidate', BERT, '--data', BERT_EVAL, '--max-drop', '0'), ['gate']);
  });

  it('analyze', async () => {
    expectDrawn(await ptyCli('analyze', GPT, '--calib', GPT_CALIB, '--samples', '32'), ['analyze']);
  });
});

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('a stop signal during quantize --method gptq, on a terminal', () => {
  for (const [signal, code, says] of [
    ['SIGTERM', 143, /stopped by SIGTERM/],
    ['SIGINT', 130, /stopped by Ctrl-C \(SIGINT\)/],
  ] as const) {
    it(`${signal} stops cleanly: exit ${code}, one line, no output or temporary file, input unchanged`, async () => {
      const folder = fs.mkdtempSync(path.join(dir, `${signal}-`));
      const before = sha256(GPT);
      const run = startPtyCli('quantize', GPT, '-o', path.join(folder, 'x.onnx'), '--calib', GPT_CALIB, '--scheme', 'w8a8', '--method', 'gptq', '--no-cache');
      const pid = await run.pid;
      // progress has started: calibration (not from the cache), then the Gram matrices and GPTQ are still ahead
      await run.waitFor(/calibrate [█░]+/);
      process.kill(pid, signal);
      const r = await run.done;
      expect(r.code, r.output).toBe(code);
      const lines = r.output.split(/\r?\n/).filter((l) => l.includes('slimformer:'));
      expect(lines, r.output).toHaveLength(1);
      expect(lines[0]).toMatch(says);
      expect(lines[0]).toMatch(/nothing was written/);
      // the step that was running says it stopped, and no step claims to have finished after it
      expect(r.output).toMatch(/: stopped at \d+\/\d+ after/);
      expect(r.output).not.toMatch(/internal error|\n\s+at /);
      expect(fs.readdirSync(folder)).toEqual([]);
      expect(sha256(GPT)).toBe(before);
    });
  }
});
