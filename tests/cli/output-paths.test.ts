import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, type CliResult } from '../helpers/cli.js';
import { expectOneSentence, listTree, sha256 } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const VIT = path.join(ROOT, 'fixtures/vit_mnist.onnx');
const VIT_CALIB = path.join(ROOT, 'calibration/vit_mnist/calib');
const GPT = path.join(ROOT, 'fixtures/gpt_moby.onnx');
const GPT_CALIB = path.join(ROOT, 'calibration/gpt_moby/calib');

const dir = tempDir('slimformer-outputs-');
// readable by every user: the read-only-folder case runs the CLI as an unprivileged user when the tests run as root
fs.chmodSync(dir, 0o755);

/** A copy of the model in its own folder, with a symlink to it and a symlinked folder. */
function scene(name: string, model = VIT): { root: string; model: string; link: string; folderLink: string; hardLink: string } {
  const root = path.join(dir, name);
  fs.mkdirSync(root);
  const m = path.join(root, 'm.onnx');
  fs.copyFileSync(model, m);
  fs.symlinkSync(m, path.join(root, 'l.onnx'));
  fs.symlinkSync(root, path.join(root, 'folder-link'));
  fs.linkSync(m, path.join(root, 'hard.onnx'));
  return { root, model: m, link: path.join(root, 'l.onnx'), folderLink: path.join(root, 'folder-link'), hardLink: path.join(root, 'hard.onnx') };
}

/** The run is refused at once: exit 2, one sentence, the input unchanged, nothing new on disk. */
function expectRefusedUpFront(run: () => CliResult, pattern: RegExp, watch: { root: string; model: string }): void {
  const hash = sha256(watch.model);
  const before = listTree(watch.root);
  const started = Date.now();
  const r = run();
  const seconds = (Date.now() - started) / 1000;
  expectOneSentence(r, pattern);
  // no calibration, loading or quantization before the check: the bundled models take several seconds to quantize
  expect(seconds).toBeLessThan(5);
  expect(sha256(watch.model)).toBe(hash);
  expect(listTree(watch.root)).toEqual(before);
}

describe('an output that is the input, through a symlink or hard link, is refused before any work', () => {
  it('quantize: a symlinked input file, a symlinked folder, a hard link (the issue reproduction)', () => {
    const s = scene('quantize-links');
    const cache = path.join(s.root, 'cache');
    // the reproduction: quantize /tmp/l.onnx -o /tmp/m.onnx where l.onnx -> m.onnx
    expectRefusedUpFront(() => cli('quantize', s.link, '-o', s.model, '--calib', VIT_CALIB, '--cache-dir', cache), /the output .*m\.onnx \(-o\) is the input model .*l\.onnx \(the same file\)/, s);
    expectRefusedUpFront(() => cli('quantize', s.model, '-o', s.link, '--calib', VIT_CALIB, '--cache-dir', cache), /the output .*l\.onnx \(-o\) is the input model/, s);
    expectRefusedUpFront(() => cli('quantize', path.join(s.folderLink, 'm.onnx'), '-o', s.model, '--calib', VIT_CALIB, '--cache-dir', cache), /is the input model .*folder-link\/m\.onnx/, s);
    expectRefusedUpFront(() => cli('quantize', s.hardLink, '-o', s.model, '--calib', VIT_CALIB, '--cache-dir', cache), /is the input model .*hard\.onnx/, s);
    expect(fs.existsSync(cache)).toBe(false);
  });

  it('prune and compress refuse the same', () => {
    const s = scene('prune-compress-links');
    expectRefusedUpFront(() => cli('prune', s.link, '-o', s.model, '--method', 'magnitude', '--ratio', '0.2'), /the output .*m\.onnx \(-o\) is the input model/, s);
    expectRefusedUpFront(() => cli('compress', path.join(s.folderLink, 'm.onnx'), '-o', s.model, '--calib', VIT_CALIB, '-q'), /the output .*m\.onnx \(-o\) is the input model/, s);
    // a report may not replace the model either (the report name only needs the right extension)
    fs.symlinkSync(s.model, path.join(s.root, 'r.json'));
    expectRefusedUpFront(() => cli('compress', s.model, '-o', path.join(s.root, 'out.onnx'), '--calib', VIT_CALIB, '--report', path.join(s.root, 'r.json'), '-q'), /the output .*r\.json \(--report\) is the input model/, s);
    expectRefusedUpFront(() => cli('compress', s.model, '-o', path.join(s.root, 'out.onnx'), '--calib', VIT_CALIB, '--report', path.join(s.root, 'x.json'), '--report', path.join(s.folderLink, 'x.json'), '-q'), /--report .*x\.json and --report .*x\.json name the same file/, s);
  });
});

describe('output paths are checked before any work', () => {
  it('-o under a file, -o naming a folder, -o ending in a slash: exit 2 in well under 5 s with no calibration run', () => {
    const s = scene('bad-paths', GPT);
    fs.writeFileSync(path.join(s.root, 'a-file'), 'x');
    const cache = path.join(s.root, 'cache');
    const q = (out: string): (() => CliResult) => () => cli('quantize', s.model, '-o', out, '--calib', GPT_CALIB, '--method', 'gptq', '--scheme', 'w4', '--cache-dir', cache);
    expectRefusedUpFront(q(path.join(s.root, 'a-file', 'x.onnx')), /cannot write the quantized model .*a-file\/x\.onnx \(-o\): .*a-file is a file, not a folder/, s);
    expectRefusedUpFront(q(path.join(s.root, 'a-file', 'deeper', 'x.onnx')), /a-file is a file, not a folder/, s);
    fs.mkdirSync(path.join(s.root, 'existing'));
    expectRefusedUpFront(q(path.join(s.root, 'existing')), /cannot write the quantized model .*existing \(-o\): it is a folder/, s);
    expectRefusedUpFront(q(path.join(s.root, 'new') + '/'), /\(-o\): it names a folder/, s);
    expectRefusedUpFront(() => cli('prune', s.model, '-o', path.join(s.root, 'existing'), '--method', 'magnitude', '--ratio', '0.2'), /cannot write the pruned model .*existing \(-o\): it is a folder/, s);
    expect(fs.existsSync(cache)).toBe(false);
  });

  it('--report, --html and --junit are checked before the run too', () => {
    const s = scene('report-paths');
    fs.writeFileSync(path.join(s.root, 'a-file'), 'x');
    const out = path.join(s.root, 'out.onnx');
    expectRefusedUpFront(() => cli('compress', s.model, '-o', out, '--calib', VIT_CALIB, '--report', path.join(s.root, 'a-file', 'r.html'), '-q'), /cannot write the report .*r\.html \(--report\): .*a-file is a file/, s);
    expectRefusedUpFront(() => cli('compress', s.model, '-o', out, '--calib', VIT_CALIB, '--junit', path.join(s.root, 'a-file', 'j.xml'), '-q'), /cannot write the JUnit report .*j\.xml \(--junit\)/, s);
    expectRefusedUpFront(() => cli('analyze', s.model, '--calib', VIT_CALIB, '--html', path.join(s.root, 'a-file', 'a.html')), /cannot write the HTML report .*a\.html \(--html\)/, s);
    expectRefusedUpFront(() => cli('gate', '--baseline', s.model, '--candidate', s.model, '--data', VIT_CALIB, '--max-drop', '0.01', '--junit', s.root), /cannot write the JUnit report .* \(--junit\): it is a folder/, s);
  });

  it('a read-only folder is refused before the run', () => {
    const s = scene('read-only');
    const ro = path.join(s.root, 'ro');
    fs.mkdirSync(ro, { mode: 0o555 });
    fs.chmodSync(ro, 0o555);
    fs.chmodSync(s.root, 0o755);
    fs.chmodSync(s.model, 0o644);
    // root writes into any folder: run the CLI as 'nobody' then, as a user would meet the error
    const asUser = (...args: string[]): CliResult => {
      const options = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
      const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/slimformer.js'), ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' }, ...options });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    expectRefusedUpFront(() => asUser('quantize', s.model, '-o', path.join(ro, 'q.onnx'), '--calib', VIT_CALIB, '--no-cache'), /cannot write the quantized model .*ro\/q\.onnx \(-o\): folder .*ro is not writable/, s);
    expectRefusedUpFront(() => asUser('quantize', s.model, '-o', path.join(ro, 'sub', 'q.onnx'), '--calib', VIT_CALIB, '--no-cache'), /folder .*ro is not writable/, s);
  });
});

describe('a missing output folder is created when the results are written (mkdir -p), and only then', () => {
  it('creates every missing folder of -o, --report and --junit on success', () => {
    const s = scene('mkdir-ok');
    const r = cli('compress', s.model, '-o', path.join(s.root, 'a', 'b', 'q.onnx'), '--calib', VIT_CALIB, '--report', path.join(s.root, 'a', 'r.json'), '--junit', path.join(s.root, 'c', 'j.xml'), '--latency-runs', '1', '-q');
    expect(r.code, r.stderr).toBe(0);
    expect(fs.statSync(path.join(s.root, 'a', 'b', 'q.onnx')).size).toBeGreaterThan(0);
    expect(JSON.parse(fs.readFileSync(path.join(s.root, 'a', 'r.json'), 'utf8')).output).toBe(path.join(s.root, 'a', 'b', 'q.onnx'));
    expect(fs.readFileSync(path.join(s.root, 'c', 'j.xml'), 'utf8')).toMatch(/<testsuites/);
  });

  it('leaves no folder behind when the run fails after the check', () => {
    const s = scene('mkdir-fail');
    const hash = sha256(s.model);
    const before = listTree(s.root);
    // calibration data that does not fit the model: the run fails after the output check passed
    const r = cli('quantize', s.model, '-o', path.join(s.root, 'new', 'deep', 'q.onnx'), '--calib', path.join(ROOT, 'calibration/gpt_moby/calib'), '--no-cache');
    expectOneSentence(r, /not an input of the model/);
    expect(sha256(s.model)).toBe(hash);
    expect(listTree(s.root)).toEqual(before);
  });
});
