import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CompressReport } from '../../src/report/compress-report.js';
import { reportHtml, reportJson, reportMarkdown } from '../../src/report/render.js';
import { tempDir } from '../helpers/tmp.js';

const report: CompressReport = {
  input: 'fixtures/vit_mnist.onnx',
  output: 'out.onnx',
  recipe: { name: 'auto-w4', passes: ['quantize', 'cleanup'] },
  seconds: 3.2,
  size: { before: 605327, after: 166502 },
  latency: { beforeMs: 0.18, afterMs: 0.24, runs: 20, batch: 1 },
  check: { samples: 128, agreement: 0.992, sqnr: 25.6, cosine: 0.998 },
  accuracy: { metric: 'top1', before: 0.974, after: 0.972, samples: 500, limit: 'max drop 0.005', pass: true },
  layers: [
    { name: 'blocks.0.attn.q', bits: 4, sqnr: 21.5 },
    { name: 'blocks.0.mlp.fc1', bits: 4, sqnr: 18.2 },
    { name: 'classifier', bits: 4, sqnr: Infinity },
  ],
  pruned: [{ block: 0, heads: 4, mlpWidth: 96 }],
  passes: [],
  entries: [{ pass: 'quantize', level: 'skipped', message: 'no constant weight <x>', target: 'n1' }],
  trials: [
    { index: 1, label: 'w4', scheme: 'w4', exclude: [], embeddings: true, prune: null, bytes: 166502, accuracy: 0.962, pass: false, message: '' },
    { index: 2, label: 'w4, 1 layer(s) float', scheme: 'w4', exclude: ['classifier'], embeddings: true, prune: null, bytes: 190000, accuracy: 0.972, pass: true, message: '' },
  ],
  chosen: 2,
};

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

describe('report renderers', () => {
  const dir = tempDir();

  it('renders JSON (Infinity as null) and Markdown tables', () => {
    const j = JSON.parse(reportJson(report));
    expect(j.layers[2].sqnr).toBeNull();
    const md = reportMarkdown(report);
    expect(md).toMatch(/\| size \| 591\.1 KiB \| 162\.6 KiB \| 3\.64x smaller \|/);
    expect(md).toMatch(/## Auto-mode trials/);
    expect(md).toMatch(/\| 2 \| w4, 1 layer\(s\) float \| 185\.5 KiB \| 97\.20% \| pass <- chosen \|/);
  });

  it('renders a self-contained HTML page with SVG plots and escaped text', () => {
    const html = reportHtml(report);
    expect(html).not.toMatch(/<script|\s(src|href)=|url\(/);
    for (const id of ['plot-sqnr', 'plot-pruned', 'plot-trials']) expect(html).toContain(`<svg id="${id}"`);
    expect((html.match(/class="bar"/g) ?? []).length).toBe(4);
    expect((html.match(/class="point"/g) ?? []).length).toBe(2);
    expect(html).toContain('no constant weight &lt;x&gt;');
  });

  it.skipIf(!CHROMIUM)('renders the plots in headless Chromium', () => {
    const file = path.join(dir, 'report.html');
    fs.writeFileSync(file, reportHtml(report));
    const shot = path.join(dir, 'shot.png');
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-chromium-'));
    const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`, '--enable-logging=stderr', '--v=0'];
    try {
      const dom = spawnSync(CHROMIUM!, [...flags, '--dump-dom', `file://${file}`], { encoding: 'utf8', timeout: 30_000 });
      expect(dom.status, dom.stderr).toBe(0);
      // the parsed DOM holds the three plots with their bars and points
      for (const id of ['plot-sqnr', 'plot-pruned', 'plot-trials']) expect(dom.stdout).toContain(`<svg id="${id}"`);
      expect((dom.stdout.match(/class="bar"/g) ?? []).length).toBe(4);
      expect(dom.stderr).not.toMatch(/CONSOLE\(|Uncaught|SyntaxError/);
      const r = spawnSync(CHROMIUM!, [...flags, '--window-size=900,1200', `--screenshot=${shot}`, `file://${file}`], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(0);
      const png = fs.readFileSync(shot);
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      // a blank white page compresses to a few KiB; text, tables and bars make it larger
      expect(png.byteLength).toBeGreaterThan(20_000);
    } finally {
      fs.rmSync(profile, { recursive: true, force: true });
    }
  });

  it.skipIf(CHROMIUM)('skips the Chromium check: chromium is not installed (apt-get install -y chromium)', () => {
    console.warn('headless Chromium not found at /usr/bin/chromium; the HTML report render check was skipped');
  });
});
