import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { saveModel } from '../../src/onnx/save.js';
import { cli, type CliResult } from '../helpers/cli.js';
import { CLASSES, FEATURES, tinyClassifier, tinySamples, writeTestData } from '../helpers/tiny-classifier.js';
import { tempDir } from '../helpers/tmp.js';

function gateCli(...args: string[]): CliResult {
  return cli('gate', ...args);
}

function predictions(rows: Float32Array[]): number[] {
  const m = tinyClassifier();
  const W = m.graph.value('W')!.initializer!.toFloat32();
  const b = m.graph.value('b')!.initializer!.toFloat32();
  return rows.map((row) => {
    const z = Array.from({ length: CLASSES }, (_, c) => row.reduce((s, v, k) => s + v * W[k * CLASSES + c]!, b[c]!));
    return z.indexOf(Math.max(...z));
  });
}

function perturbed(eps: number): Model {
  const m = tinyClassifier();
  const w = m.graph.value('W')!;
  w.initializer = Tensor.from('W', DataType.FLOAT, [FEATURES, CLASSES], Array.from(w.initializer!.toFloat32(), (v, i) => v + eps * Math.cos(i * 7.3)));
  return m;
}

const dir = tempDir();
const baseline = path.join(dir, 'base.onnx');
const small = path.join(dir, 'small.onnx');
const large = path.join(dir, 'large.onnx');
saveModel(tinyClassifier(), baseline);
saveModel(perturbed(1e-3), small);
saveModel(perturbed(1), large);
const { x } = tinySamples(40);
// labels are the baseline's own predictions: its top1 is 1, and any moved argmax costs the candidate
const labels = predictions(x);
const data = path.join(dir, 'eval');
writeTestData(data, x, labels);
const unlabelled = path.join(dir, 'unlabelled');
writeTestData(unlabelled, x.slice(0, 5), undefined);
const baseArgs = (candidate: string): string[] => ['--baseline', baseline, '--candidate', candidate, '--data', data];

/** One sentence on stderr, no stack trace, exit code 2. */
function expectUserError(r: CliResult, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('slimformer gate: exit codes 0 and 1', () => {
  it('exit 0 when a slightly perturbed candidate is within every limit; prints the table', () => {
    const r = gateCli(...baseArgs(small), '--metric', 'top1,nll,agreement,cosine', '--max-drop', 'top1=0.005,nll=2%,agreement=0.01', '--min', 'cosine=0.999,sqnr=30');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`candidate ${small} vs baseline ${baseline} on ${data} (40 samples, 40 positions, output 'logits')`);
    expect(r.stdout).toMatch(/^top1\s.*max-drop 0\.005\s+≥ [\d.]+\s+pass$/m);
    expect(r.stdout).toMatch(/^nll \(nats\)\s.*max-drop 2%\s+≤ [\d.]+\s+pass$/m);
    expect(r.stdout).toMatch(/^sqnr \(dB\)\s+inf \(ideal\)\s.*min 30\s+≥ 30\s+pass$/m);
    expect(r.stdout).toMatch(/^PASS: all 5 limits hold$/m);
  });

  it('exit 1 when a heavily perturbed candidate loses too much; --json gives one object', () => {
    const r = gateCli(...baseArgs(large), '--metric', 'top1,nll,agreement', '--max-drop', '0.005', '--min', 'sqnr=30', '--json');
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toBe(''); // --json: no progress lines
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ pass: false, samples: 40, positions: 40, baseline, candidate: large, dataset: data, output: 'logits' });
    expect(Object.keys(out.metrics)).toEqual(['top1', 'nll', 'agreement', 'sqnr']);
    for (const m of Object.values(out.metrics) as { baseline: unknown; candidate: unknown; delta: unknown; limit: unknown; pass: unknown }[]) {
      expect(m).toHaveProperty('baseline');
      expect(m).toHaveProperty('candidate');
      expect(m).toHaveProperty('delta');
      expect(m).toHaveProperty('limit');
      expect(typeof m.pass).toBe('boolean');
    }
    expect(out.metrics.top1.limit).toEqual({ kind: 'max-drop', value: 0.005, relative: false, text: 'max-drop 0.005' });
    expect(out.metrics.sqnr.baseline).toBe('Infinity');
    expect(out.failed).toContain('top1');
    expect(out.failed).toContain('sqnr');
  });

  it('the same candidate passes looser limits: exit 0; a bare --min is a floor for all', () => {
    expect(gateCli(...baseArgs(large), '--metric', 'top1', '--max-drop', '100%').code).toBe(0);
    expect(gateCli(...baseArgs(large), '--metric', 'agreement,cosine', '--min', '0.1').code).toBe(0);
    const r = gateCli(...baseArgs(large), '--max', 'perplexity=1000', '--min', 'sqnr=-10');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^perplexity\s.*max 1000\s+≤ 1000\s+pass$/m);
  });

  it('--junit writes a report (one test case per metric, failures marked), also when the gate fails', () => {
    const file = path.join(dir, 'reports', 'gate.xml');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const r = gateCli(...baseArgs(large), '--metric', 'top1,nll', '--max-drop', 'top1=0.005,nll=1000', '--junit', file);
    expect(r.code, r.stderr).toBe(1);
    const xml = fs.readFileSync(file, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites /);
    expect(xml).toMatch(/<testsuite name="slimformer gate" tests="2" failures="1" errors="0" skipped="0"/);
    expect(xml.match(/<testcase /g)).toHaveLength(2);
    expect(xml).toMatch(/<testcase name="top1" classname="slimformer.gate"[^>]*>\n\s*<failure message="top1 fell by [\d.]+ from [\d.]+ to [\d.]+, more than the allowed max-drop 0\.005 \(top1 must be ≥ [\d.]+\)" type="LimitExceeded">/);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['gate.xml']); // no temporary file left
  });
});

describe('slimformer gate: bad input or usage exits 2 with one sentence', () => {
  it('missing files', () => {
    expectUserError(gateCli('--baseline', path.join(dir, 'nope.onnx'), '--candidate', small, '--data', data, '--max-drop', '0.01'), /model file .*nope\.onnx does not exist/);
    expectUserError(gateCli('--baseline', baseline, '--candidate', path.join(dir, 'gone.onnx'), '--data', data, '--max-drop', '0.01'), /model file .*gone\.onnx does not exist/);
    expectUserError(gateCli(...baseArgs(small).slice(0, 4), '--data', path.join(dir, 'missing'), '--max-drop', '0.01'), /dataset .*missing does not exist/);
  });

  it('bad --max-drop syntax, unknown metrics, a floor on nll, a drop from sqnr, no limit', () => {
    expectUserError(gateCli(...baseArgs(small), '--max-drop', '0.5 %%'), /--max-drop takes VALUE or VALUE%, or METRIC=VALUE or VALUE% items separated by commas, not '0\.5 %%'/);
    expectUserError(gateCli(...baseArgs(small), '--max-drop', 'f1=0.1'), /unknown metric 'f1' in --max-drop/);
    expectUserError(gateCli(...baseArgs(small), '--metric', 'top5', '--max-drop', '0.1'), /unknown metric 'top5' \(choose from top1, nll, perplexity, agreement, cosine, sqnr, kl, stream-nll, stream-perplexity, gen-agreement, gen-divergence, topk-agreement\)/);
    expectUserError(gateCli(...baseArgs(small), '--min', 'nll=0.3'), /nll is better when lower, so it takes a ceiling/);
    expectUserError(gateCli(...baseArgs(small), '--metric', 'sqnr', '--max-drop', '1'), /no drop from it is finite: give a floor instead \(e\.g\. --min sqnr=30, in dB\)/);
    expectUserError(gateCli(...baseArgs(small), '--metric', 'top1'), /the gate has no limit to check: give --max-drop, --min or --max/);
    expectUserError(gateCli(...baseArgs(small), '--max-drop', '0.1', '--batch-size', '0'), /--batch-size takes a positive whole number/);
    expect(gateCli('--baseline', baseline, '--data', data, '--max-drop', '0.1').code).toBe(2); // --candidate missing: commander's usage error
  });

  it('a label metric on an unlabelled dataset; data that fits neither model; models that differ', () => {
    expectUserError(gateCli('--baseline', baseline, '--candidate', small, '--data', unlabelled, '--max-drop', 'nll=2%'), /has no labels .* which metric nll needs/);
    expect(gateCli('--baseline', baseline, '--candidate', small, '--data', unlabelled, '--min', 'agreement=0.9').code).toBe(0);
    const wrong = path.join(dir, 'wrong-name');
    writeTestData(wrong, x.slice(0, 2), [0, 1], 'input_ids');
    expectUserError(gateCli('--baseline', baseline, '--candidate', small, '--data', wrong, '--max-drop', '0.01'), /tensor 'input_ids' is not an input of the model .*\(checking the data against the baseline .*base\.onnx\)/);
    const other = tinyClassifier();
    other.graph.renameValue(other.graph.outputs[0]!, 'scores');
    const otherFile = path.join(dir, 'other.onnx');
    saveModel(other, otherFile);
    expectUserError(gateCli(...baseArgs(otherFile), '--max-drop', '0.01'), /the baseline .*base\.onnx and the candidate .*other\.onnx have different outputs: the candidate has no output 'logits'/);
  });

  it('a --junit path whose folder is missing is created with the report (mkdir -p); under a file it fails before the run', () => {
    const file = path.join(dir, 'no-such-folder', 'gate.xml');
    const r = gateCli(...baseArgs(small), '--max-drop', '0.01', '--junit', file);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/<testsuites/);
    const underFile = path.join(file, 'again.xml');
    expectUserError(gateCli(...baseArgs(small), '--max-drop', '0.01', '--junit', underFile), /cannot write the JUnit report .*again\.xml \(--junit\): .*gate\.xml is a file, not a folder/);
  });

  it('--help documents the limit syntax and the exit codes', () => {
    const r = gateCli('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--max-drop <limit>/);
    expect(r.stdout).toMatch(/METRIC=VALUE items separated by commas/);
    expect(r.stdout).toMatch(/Exit codes: 0 every limit holds, 1 a limit failed, 2 bad input or usage/);
  });
});
