import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { cli } from '../helpers/cli.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const DOC = fs.readFileSync(path.join(ROOT, 'docs/data.md'), 'utf8');
const dir = tempDir('slimformer-docs-data-');
/** The docs write outputs under /tmp/; the test writes them into its own folder. */
const here = (s: string): string => s.replaceAll('/tmp/', `${dir}/`);

describe('docs/data.md', () => {
  it('every slimformer command in it runs, in order, and exits 0', () => {
    const commands = [...DOC.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n').filter((l) => l.startsWith('npx slimformer ')));
    expect(commands.length).toBeGreaterThanOrEqual(6);
    for (const line of commands) {
      const r = cli(...here(line).slice('npx slimformer '.length).split(/\s+/));
      expect(r.code, `${line}\n${r.stdout}${r.stderr}`).toBe(0);
    }
    expect(openDataset(path.join(dir, 'spam-calib')).size).toBe(16);
    expect(openDataset(path.join(dir, 'mnist-eval.npz')).size).toBe(20);
  });

  it('the code example runs against the built package and writes its .npz', () => {
    const block = /```ts\n([\s\S]*?)```/.exec(DOC)![1]!;
    const file = path.join(dir, 'example.mjs');
    fs.writeFileSync(file, here(block).replace("from 'slimformer'", `from '${path.join(ROOT, 'dist/src/index.js')}'`));
    const r = spawnSync(process.execPath, [file], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/top1: 1\b/);
    expect(openDataset(path.join(dir, 'spam-calib.npz')).size).toBe(16);
  });
});
