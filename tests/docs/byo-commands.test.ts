// docs/byo.md, run as a reader would: every command of its ```sh blocks (those without a
// `<!-- not run: REASON -->` marker) in order, from a folder where fixtures/ resolves, `/tmp/`
// becoming that folder's tmp/; then its onnxruntime-node block on the files the commands wrote.
// The tables the doc shows must be what the commands print, so the doc cannot drift from them.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const DOC = fs.readFileSync(path.join(ROOT, 'docs/byo.md'), 'utf8');

interface Fence {
  lang: string;
  code: string;
  /** The HTML comment right before the fence, if any. */
  marker: string | undefined;
}

function fences(): Fence[] {
  return [...DOC.matchAll(/^```(\w*)[^\n]*\n([\s\S]*?)^```\s*$/gm)].map((m) => {
    const marker = /<!--((?:(?!-->)[\s\S])*)-->\s*$/.exec(DOC.slice(0, m.index));
    return { lang: m[1]!, code: m[2]!, marker: marker?.[1]!.trim() };
  });
}

const shell = fences().filter((f) => ['sh', 'bash'].includes(f.lang));
const toRun = shell.filter((f) => !/^not run:/.test(f.marker ?? ''));
const commands = toRun.flatMap((f) => f.code.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#')));

/** `npx slimformer` as the installed package: the built bin/slimformer.js. */
const PRELUDE = `npx() { if [ "$1" = slimformer ]; then shift; "${process.execPath}" "${ROOT}/bin/slimformer.js" "$@"; else echo "npx $1 is not run here" >&2; return 127; fi; }\n`;

describe('docs/byo.md', () => {
  const cwd = tempDir('slimformer-byo-');
  const results: { command: string; code: number | null; stdout: string; stderr: string }[] = [];

  beforeAll(() => {
    fs.symlinkSync(path.join(ROOT, 'fixtures'), path.join(cwd, 'fixtures'));
    fs.mkdirSync(path.join(cwd, 'tmp'));
    for (const c of commands) {
      const r = spawnSync('bash', ['-c', PRELUDE + c.replaceAll('/tmp/', `${cwd}/tmp/`)], { cwd, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' } });
      results.push({ command: c, code: r.status, stdout: r.stdout, stderr: r.stderr });
    }
  }, 300_000);

  it('marks every block it does not run with the reason', () => {
    for (const f of shell.filter((s) => !toRun.includes(s))) expect(f.marker!.length, f.code).toBeGreaterThan(20);
    expect(commands.every((c) => !c.trimEnd().endsWith('\\')), 'one command per line').toBe(true);
  });

  it('runs every slimformer command it shows, each exiting 0, covering inspect, quantize, dataset make, eval and gate', () => {
    const slimformer = commands.filter((c) => c.startsWith('npx slimformer '));
    expect(new Set(slimformer.map((c) => c.split(' ')[2]))).toEqual(new Set(['inspect', 'quantize', 'dataset', 'eval', 'gate']));
    for (const r of results) expect(r.code, `${r.command}\n${r.stderr}`).toBe(0);
  });

  it('writes the variants where it says, with the names transformers.js loads', () => {
    expect(fs.readdirSync(path.join(cwd, 'tmp/my-model/onnx')).sort()).toEqual(['model.onnx', 'model_q4.onnx', 'model_quantized.onnx']);
    expect(fs.readdirSync(path.join(cwd, 'tmp/my-vit/onnx')).sort()).toEqual(['model.onnx', 'model_fp16.onnx', 'model_q4.onnx', 'model_quantized.onnx']);
  });

  it('shows the tables the quantize commands print', () => {
    const quantize = results.filter((r) => r.command.startsWith('npx slimformer quantize '));
    expect(quantize).toHaveLength(2);
    for (const r of quantize) {
      const table = r.stdout.replaceAll(`${cwd}/tmp/`, '/tmp/').trimEnd().split('\n').slice(0, -1); // all but the floor line (shown once)
      for (const line of table) expect(DOC, line).toContain(line);
    }
    expect(DOC).toContain(results.find((r) => r.command.includes('quantize /tmp/my-model '))!.stderr.replaceAll(`${cwd}/tmp/`, '/tmp/').split('\n').find((l) => l.includes('using'))!);
  });

  it('runs its onnxruntime-node block on the q4 file the commands wrote', () => {
    const block = fences().find((f) => f.lang === 'ts' && f.code.includes("from 'onnxruntime-node'"))!;
    const js = ts.transpileModule(block.code.replaceAll('/tmp/', `${cwd}/tmp/`), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    // inside the repository so that onnxruntime-node and @huggingface/tokenizers resolve
    const dir = path.join(ROOT, 'dist/byo-blocks');
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `ort-${process.pid}.mjs`);
    fs.writeFileSync(file, js);
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8' });
    fs.rmSync(file);
    expect(r.status, r.stderr).toBe(0);
    const id = Number(/^next token id: (\d+)$/m.exec(r.stdout)?.[1]);
    expect(id).toBeGreaterThanOrEqual(0);
    expect(id).toBeLessThan(76); // the vocabulary of llama_moby_kv
  });
});
