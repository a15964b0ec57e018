// Every code block of README.md and docs/*.md is checked: TypeScript blocks are compiled
// together against the package as a consumer imports it ('slimformer' through package.json
// "exports", strict), and those marked to run are run; JSON and YAML blocks are parsed, and
// the recipes among them (a `passes` list) are built into pipelines, which checks every
// option. Shell blocks and program output (unlabelled blocks) are not code this test compiles;
// tests/docs/cli-commands.test.ts runs the shell commands.
//
// A block may be preceded by an HTML comment (invisible on GitHub and npm):
//   <!-- doc-test run -->                 run it (from a folder where fixtures/ and calibration/ resolve)
//   <!-- doc-test prelude                 code put before the block when compiling a fragment
//   declare const model: Model; -->
//   <!-- not compiled: REASON -->         neither compiled nor run (code for a package this
//                                         repository does not install); REASON is required
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { fromRecipe, parseRecipe } from '../../src/pipeline/recipe.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

interface Block {
  /** file:line of the opening fence, for messages. */
  where: string;
  lang: string;
  code: string;
  run: boolean;
  prelude: string;
  /** The reason of a `<!-- not compiled: REASON -->` marker; undefined: compiled. */
  notCompiled?: string;
}

const TS = new Set(['ts', 'typescript', 'js', 'mjs', 'javascript']);

function blocks(): Block[] {
  const files = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const out: Block[] = [];
  for (const file of files) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/^```(\w*)[^\n]*\n([\s\S]*?)^```\s*$/gm)) {
      const before = text.slice(0, m.index);
      const marker = /<!-- doc-test([^\n]*?)(?:\n([\s\S]*?))?\s*-->\s*$/.exec(before);
      const words = marker ? marker[1]!.trim().split(/\s+/) : [];
      const skip = /<!--\s*not compiled:?([^\n]*?)-->\s*$/.exec(before);
      out.push({
        where: `${file}:${before.split('\n').length}`,
        lang: m[1]!,
        code: m[2]!,
        run: words.includes('run'),
        prelude: words.includes('prelude') ? (marker![2] ?? '') : '',
        ...(skip ? { notCompiled: skip[1]!.trim() } : {}),
      });
    }
  }
  return out;
}

const all = blocks();
const code = all.filter((b) => TS.has(b.lang) && b.notCompiled === undefined);

describe('code blocks of README.md and docs/', () => {
  // under the repository so that 'slimformer' resolves to this package (self-reference)
  const dir = path.join(ROOT, 'dist/doc-blocks');
  const fileOf = (b: Block): string => path.join(dir, `${b.where.replace(/\W+/g, '_')}.ts`);

  it('gives the reason of every block left uncompiled', () => {
    expect(all.filter((b) => b.notCompiled !== undefined && b.notCompiled.length < 10).map((b) => b.where)).toEqual([]);
  });

  it('finds the TypeScript blocks, some of them marked to run', () => {
    expect(code.length).toBeGreaterThanOrEqual(9);
    expect(code.filter((b) => b.run).length).toBeGreaterThanOrEqual(3);
  });

  it('compiles every TypeScript block, strict, against the package as a consumer imports it', () => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const b of code) fs.writeFileSync(fileOf(b), `${b.prelude}\n${b.code}\nexport {};\n`);
    const options: ts.CompilerOptions = { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, skipLibCheck: true, types: ['node'], outDir: dir, rootDir: dir };
    const program = ts.createProgram(code.map(fileOf), options);
    const errors = ts.getPreEmitDiagnostics(program).map((d) => {
      const block = code.find((b) => d.file && path.resolve(d.file.fileName) === fileOf(b));
      return `${block?.where ?? d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    expect(errors).toEqual([]);
    const emitted = program.emit();
    expect(emitted.emitSkipped).toBe(false);
  }, 120_000);

  it.each(code.filter((b) => b.run).map((b) => [b.where, b] as const))('runs %s', (_, b) => {
    // the blocks use repository paths (fixtures/, calibration/) and write their outputs to the cwd
    const cwd = tempDir('slimformer-doc-');
    for (const d of ['fixtures', 'calibration']) fs.symlinkSync(path.join(ROOT, d), path.join(cwd, d));
    const js = fileOf(b).replace(/\.ts$/, '.js');
    expect(fs.existsSync(js), `${js}: compiled by the test above`).toBe(true);
    const r = spawnSync(process.execPath, [js], { cwd, encoding: 'utf8', env: { ...process.env, SLIMFORMER_THREADS: '2' }, timeout: 170_000 });
    expect(r.status, `${b.where}\n${r.stdout}\n${r.stderr}`).toBe(0);
  }, 180_000);

  it('parses every JSON and YAML block, and builds the recipes among them', () => {
    const data = all.filter((b) => ['json', 'yaml', 'yml'].includes(b.lang));
    expect(data.length).toBeGreaterThanOrEqual(8);
    let recipes = 0;
    for (const b of data) {
      const value = b.lang === 'json' ? JSON.parse(b.code) : parseYaml(b.code);
      if (value && typeof value === 'object' && 'passes' in value) {
        // parseRecipe checks the schema and every option; fromRecipe builds the passes
        const recipe = parseRecipe(b.code, b.where);
        expect(fromRecipe(recipe).passes.length, b.where).toBeGreaterThan(0);
        recipes++;
      }
    }
    expect(recipes).toBeGreaterThanOrEqual(6);
  });
});
