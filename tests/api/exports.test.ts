// The package root is the documented API: docs/api.md lists every name src/index.ts exports
// (values and types), each with a description, and nothing else; the internals live behind
// the 'slimformer/internals' subpath.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/fixtures.js';

/** Every name the module exports, types included, as the TypeScript checker sees them. */
function exportedNames(file: string): string[] {
  const program = ts.createProgram([file], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, types: ['node'] });
  const checker = program.getTypeChecker();
  const symbol = checker.getSymbolAtLocation(program.getSourceFile(file)!)!;
  return checker.getExportsOfModule(symbol).map((s) => s.name);
}

/** `- \`name\` — description` lines of docs/api.md. */
function documented(): Map<string, string> {
  const text = fs.readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
  const out = new Map<string, string>();
  for (const [, name, doc] of text.matchAll(/^- `(\w+)` — (.*)$/gm)) {
    expect(out.has(name!), `${name} listed twice`).toBe(false);
    out.set(name!, doc!);
  }
  return out;
}

describe('the public API', () => {
  it('docs/api.md lists exactly the names src/index.ts exports, each with a description', () => {
    const names = exportedNames(path.join(ROOT, 'src/index.ts'));
    const docs = documented();
    expect(names.length).toBeGreaterThan(50);
    expect([...docs.keys()].sort()).toEqual([...names].sort());
    const thin = [...docs].filter(([, d]) => d.trim().split(/\s+/).length < 3).map(([n]) => n);
    expect(thin).toEqual([]);
  });

  it("resolves 'slimformer' to the API and 'slimformer/internals' to the building blocks", () => {
    // through package.json "exports" (self-reference from the repository, as a consumer resolves it)
    const script = `const api = await import('slimformer'); const internals = await import('slimformer/internals');
      console.log(JSON.stringify({ api: Object.keys(api), internals: Object.keys(internals) }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { api, internals } = JSON.parse(r.stdout) as { api: string[]; internals: string[] };
    const docs = documented();
    for (const name of api) expect(docs.has(name), name).toBe(true);
    for (const name of ['gptqLevelsAsync', 'MASK_INPUT', 'toDouble', 'calibrate', 'buildGradientGraph', 'reconstructBlocks', 'Session']) {
      expect(api, name).not.toContain(name);
      expect(internals, name).toContain(name);
    }
    for (const name of ['load', 'saveModel', 'pipeline', 'quantize', 'prune', 'gate', 'evaluate', 'analyzeModel', 'openDataset', 'Report', 'UserError']) expect(api, name).toContain(name);
  });
});
