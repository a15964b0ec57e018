import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compressCli } from '../pipeline/compress-cli.js';
import { tempDir } from '../helpers/tmp.js';

const model = 'fixtures/vit_mnist.onnx';
const calib = 'calibration/vit_mnist/calib';
const evalData = 'calibration/vit_mnist/eval';

describe('slimformer compress', () => {
  const dir = tempDir();

  it('runs the default recipe and prints the before/after table', () => {
    const out = path.join(dir, 'w8a8.onnx');
    const r = compressCli(model, '-o', out, '--calib', calib, '--data', evalData, '--latency-runs', '3', '--quiet');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('');
    const t = compressCli(model, '-o', out, '--calib', calib, '--data', evalData, '--latency-runs', '3');
    expect(t.code, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/size\s+591\.1 KiB\s+\d+\.\d KiB\s+\d\.\d\dx smaller/);
    expect(t.stdout).toMatch(/latency \(batch 1, median of 3\)/);
    expect(t.stdout).toMatch(/top1 \(500 samples\)\s+97\.40%/);
    expect(t.stdout).toMatch(/agreement/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('writes the accuracy check as JUnit: a pass, and a failure (exit 1) when the limit is exceeded', () => {
    const junit = path.join(dir, 'compress.xml');
    const ok = compressCli(model, '-o', path.join(dir, 'j-ok.onnx'), '--calib', calib, '--data', evalData, '--max-drop', '0.005', '--latency-runs', '1', '--quiet', '--junit', junit);
    expect(ok.code, ok.stderr).toBe(0);
    const pass = fs.readFileSync(junit, 'utf8');
    expect(pass).toMatch(/<testsuites name="slimformer" tests="1" failures="0"/);
    expect(pass).toMatch(/<testcase name="top1 within max drop 0\.005"/);
    // w3 round-to-nearest loses 1.4 points on this model (measured): a 0.5 point limit fails
    const recipe = path.join(dir, 'w3.json');
    fs.writeFileSync(recipe, JSON.stringify({ name: 'w3', passes: [{ pass: 'quantize', scheme: 'w3' }] }));
    const bad = compressCli(model, '-o', path.join(dir, 'j-bad.onnx'), '--calib', calib, '--recipe', recipe, '--data', evalData, '--max-drop', '0.005', '--latency-runs', '1', '--quiet', '--junit', junit);
    expect(bad.code, bad.stderr).toBe(1);
    const fail = fs.readFileSync(junit, 'utf8');
    expect(fail).toMatch(/failures="1"/);
    expect(fail).toMatch(/<failure message="top1 0\.974 -&gt; 0\.\d+ on 500 samples exceeds max drop 0\.005" type="LimitExceeded"/);
    const underFile = compressCli(model, '-o', path.join(dir, 'j-x.onnx'), '--calib', calib, '--junit', path.join(junit, 'r.xml'));
    expect(underFile.code).toBe(2);
    expect(underFile.stderr).toMatch(/cannot write the JUnit report .*compress\.xml\/r\.xml \(--junit\): .*compress\.xml is a file, not a folder/);
  });

  it('prints JSON and writes JSON, Markdown and HTML reports', () => {
    const out = path.join(dir, 'json.onnx');
    const r = compressCli(model, '-o', out, '--calib', calib, '--json', '--latency-runs', '2', '--report', path.join(dir, 'r.md'), '--report', path.join(dir, 'r.html'), '--report', path.join(dir, 'r.json'));
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.recipe).toEqual({ name: 'w8a8', passes: ['quantize', 'cleanup'] });
    expect(j.size.after).toBe(fs.statSync(out).size);
    expect(j.size.after).toBeLessThan(j.size.before / 2);
    expect(j.check.agreement).toBeGreaterThan(0.95);
    // 24 linears and the patch-embedding Conv (as a MatMul over patches)
    expect(j.layers.length).toBe(26);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'r.json'), 'utf8')).layers.length).toBe(26);
    expect(fs.readFileSync(path.join(dir, 'r.md'), 'utf8')).toMatch(/\| size \| 591\.1 KiB/);
    const html = fs.readFileSync(path.join(dir, 'r.html'), 'utf8');
    for (const id of ['plot-sqnr', 'plot-kurtosis', 'plot-inf-norm']) expect(html).toContain(`<svg id="${id}"`);
    // the report carries the original model's outlier metrics, one row per block output
    const outliers = JSON.parse(fs.readFileSync(path.join(dir, 'r.json'), 'utf8')).outliers as { layer: string; block: number; kurtosis: number; infNorm: number }[];
    expect(outliers.map((o) => o.block)).toEqual(outliers.map((_, i) => i));
    for (const o of outliers) {
      expect(o.layer).toBe(`blocks.${o.block}.output`);
      expect(o.kurtosis).toBeGreaterThan(0);
      expect(o.infNorm).toBeGreaterThan(0);
    }
    const blocks = new Set(j.layers.map((l: { name: string }) => /^blocks\.(\d+)\./.exec(l.name)?.[1]).filter(Boolean));
    expect(outliers.length).toBe(blocks.size);
  });

  it('rejects an unknown pass in a recipe with exit 2, naming it, and writes nothing', () => {
    const recipe = path.join(dir, 'bad.yaml');
    fs.writeFileSync(recipe, 'passes:\n  - pass: quantise\n    scheme: w8a8\n');
    const out = path.join(dir, 'bad.onnx');
    const r = compressCli(model, '-o', out, '--calib', calib, '--recipe', recipe);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown pass 'quantise' \(valid passes: cleanup, flexround, gptq, prune, quantize, repquant, smoothquant, pipeline\)/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('rejects a recipe with a YAML syntax error with exit 2, one sentence naming the file and line, and writes nothing', () => {
    const recipe = path.join(dir, 'broken.yaml');
    fs.writeFileSync(recipe, 'passes:\n  - pass: quantize\n    scheme: [w8a8\n  - pass: cleanup\n');
    const out = path.join(dir, 'broken.onnx');
    const r = compressCli(model, '-o', out, '--calib', calib, '--recipe', recipe);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`${recipe} line 4, column 3: YAML syntax error: `);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('auto mode prints trials and keeps a passing model smaller than w8a8', () => {
    const out = path.join(dir, 'auto.onnx');
    const json = path.join(dir, 'auto.json');
    // 2 points: at 1 point (since the patch embedding and the head are quantized too) the model
    // chosen on the selection half loses more on the held-out half (exit 1, as designed; docs/compress.md)
    const text = compressCli(model, '-o', out, '--calib', calib, '--data', evalData, '--max-drop', '0.02', '--auto', '--latency-runs', '0', '--report', json);
    expect(text.code, text.stderr).toBe(0);
    const j = JSON.parse(fs.readFileSync(json, 'utf8'));
    expect(j.trials.length).toBeGreaterThan(0);
    expect(j.chosen).not.toBeNull();
    expect(j.accuracy.pass).toBe(true);
    // starts aggressive (pruning + 4-bit); every trial smaller than the kept one failed
    expect(j.trials[0]).toMatchObject({ scheme: 'w4', prune: 0.05 });
    type T = { index: number; bytes: number; pass: boolean; prune: number | null; layerBits: Record<string, unknown> };
    const chosen = (j.trials as T[]).find((t) => t.index === j.chosen)!;
    for (const t of j.trials as T[]) if (t.bytes < chosen.bytes) expect(t.pass, `trial ${t.index}`).toBe(false);
    expect(j.recipe.passes).toEqual([...(chosen.prune === null ? [] : ['prune']), 'quantize', 'cleanup']);
    // the trials are printed as a table with the chosen one marked
    expect(text.stdout).toMatch(new RegExp(`\\n${j.chosen}\\s+.*pass <- chosen\\n`));
    expect(text.stdout).toMatch(new RegExp(`chosen: trial ${j.chosen}`));
    expect(text.stderr).toMatch(/trial 1: prune mlp 0\.05 \+ w4/);
    const w8a8 = fs.statSync(path.join(dir, 'w8a8.onnx')).size;
    expect(fs.statSync(out).size).toBeLessThan(w8a8);
  });

  it('auto mode with --objective latency times the passing trials with float and shows selection and holdout accuracy apart', () => {
    const out = path.join(dir, 'bert-latency.onnx');
    const [json, md] = [path.join(dir, 'lat.json'), path.join(dir, 'lat.md')];
    const r = compressCli('fixtures/bert_spam.onnx', '-o', out, '--calib', 'calibration/bert_spam/calib', '--data', 'calibration/bert_spam/eval', '--max-drop', '0.005', '--auto', '--objective', 'latency', '--latency-runs', '5', '--report', json, '--report', md);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(fs.readFileSync(json, 'utf8'));
    type T = { index: number; scheme: string; pass: boolean; bytes: number; latencyMs?: number | null };
    const trials = j.trials as T[];
    expect(new Set(trials.map((t) => t.scheme))).toEqual(new Set(['w8a8', 'dynamic', 'w4']));
    for (const t of trials) expect(typeof t.latencyMs === 'number').toBe(t.pass);
    // the chosen trial follows the rule on the timings the report shows (fastest, ties within 5% to the smaller)
    const passing = trials.filter((t) => t.pass);
    const fastest = Math.min(...passing.map((t) => t.latencyMs!));
    const chosen = trials.find((t) => t.index === j.chosen)!;
    expect(chosen.latencyMs!).toBeLessThanOrEqual(fastest * 1.05);
    for (const t of passing) if (t.latencyMs! <= fastest * 1.05) expect(chosen.bytes).toBeLessThanOrEqual(t.bytes);
    expect(j.selection.objective).toBe('latency');
    expect(j.selection.floatMs).toBeGreaterThan(0);
    // selection and holdout accuracy on disjoint samples of --data
    const sel = j.selection.indices as number[];
    const hold = j.selection.holdout.indices as number[];
    expect(sel.filter((i) => hold.includes(i))).toEqual([]);
    expect(sel.length + hold.length).toBe(500);
    expect(j.selection.accuracy.samples).toBe(sel.length);
    expect(j.accuracy.samples).toBe(hold.length);
    // the table: float's timing row, a latency column, both accuracy rows, and why the winner won
    expect(r.stdout).toMatch(/trial\s+config\s+size\s+selection accuracy\s+latency\s+gate/);
    expect(r.stdout).toMatch(/\n-\s+float \(original\)\s+955\.6 KiB\s+\d+\.\d\d%\s+\d+\.\d{3} ms/);
    expect(r.stdout).toMatch(new RegExp(`\\n${j.chosen}\\s+.*\\d ms\\s+pass <- chosen\\n`));
    expect(r.stdout).toMatch(/top1 selection \(250 samples\).*\(the search chose on these\)/);
    expect(r.stdout).toMatch(/top1 holdout \(250 samples\).*\(pass\)/);
    expect(r.stdout).toMatch(/objective latency: the fastest passing model.*Trials judged on 250 of the 500 samples of calibration\/bert_spam\/eval; the reported accuracy is on the other 250\./);
    const mdText = fs.readFileSync(md, 'utf8');
    expect(mdText).toMatch(/\| top1 selection \(250 samples\) \|/);
    expect(mdText).toMatch(/\| top1 holdout \(250 samples\) \|/);
  });

  it('rejects an unknown --objective, and --objective without --auto, with exit 2', () => {
    const bad = compressCli(model, '-o', path.join(dir, 'x.onnx'), '--calib', calib, '--data', evalData, '--max-drop', '0.01', '--auto', '--objective', 'speed');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--objective takes size, latency, balanced, not 'speed'/);
    const noAuto = compressCli(model, '-o', path.join(dir, 'x.onnx'), '--calib', calib, '--objective', 'latency');
    expect(noAuto.code).toBe(2);
    expect(noAuto.stderr).toMatch(/--objective applies to --auto only/);
    const selNoAuto = compressCli(model, '-o', path.join(dir, 'x.onnx'), '--calib', calib, '--selection-data', calib);
    expect(selNoAuto.code).toBe(2);
    expect(selNoAuto.stderr).toMatch(/--selection-data applies to --auto only/);
    expect(fs.existsSync(path.join(dir, 'x.onnx'))).toBe(false);
  });

  it('--auto needs --data and --max-drop', () => {
    const r = compressCli(model, '-o', path.join(dir, 'x.onnx'), '--calib', calib, '--auto');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--auto needs --data/);
  });
});
