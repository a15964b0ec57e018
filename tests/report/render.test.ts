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
    { index: 1, label: 'w4', scheme: 'w4', layerBits: {}, prune: null, bytes: 166502, accuracy: 0.962, pass: false, message: '' },
    { index: 2, label: 'w4, 1 layer(s) 8-bit', scheme: 'w4', layerBits: { classifier: 8 }, prune: null, bytes: 190000, accuracy: 0.972, pass: true, message: '' },
  ],
  chosen: 2,
  sensitivity: [
    { name: 'classifier', outputSqnr: 14.2 },
    { name: 'blocks.0.mlp.fc1', outputSqnr: 22.9 },
  ],
  outliers: [
    { layer: 'blocks.0.output', block: 0, kurtosis: 3.1, infNorm: 4.25 },
    { layer: 'blocks.1.output', block: 1, kurtosis: 41.7, infNorm: 38.5 },
    { layer: 'blocks.2.output', block: 2, kurtosis: 7.9, infNorm: 12 },
  ],
};

const PLOTS = ['plot-sqnr', 'plot-sensitivity', 'plot-kurtosis', 'plot-inf-norm', 'plot-pruned', 'plot-trials'];
// bars: 3 SQNR, 2 sensitivity, 3 kurtosis, 3 inf norm, 1 pruned width
const BARS = 3 + 2 + 3 + 3 + 1;

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));

describe('report renderers', () => {
  const dir = tempDir();

  it('renders JSON (Infinity as null) and Markdown tables', () => {
    const j = JSON.parse(reportJson(report));
    expect(j.layers[2].sqnr).toBeNull();
    const md = reportMarkdown(report);
    expect(md).toMatch(/\| size \| 591\.1 KiB \| 162\.6 KiB \| 3\.64x smaller \|/);
    expect(md).toMatch(/## Auto-mode trials/);
    expect(md).toMatch(/\| 2 \| w4, 1 layer\(s\) 8-bit \| 185\.5 KiB \| 97\.20% \| pass <- chosen \|/);
    expect(md).toMatch(/## Activation outliers per block/);
    expect(md).toMatch(/\| classifier \| 14\.2 dB \| 8 \|/);
    expect(md).toMatch(/\| blocks\.0\.mlp\.fc1 \| 22\.9 dB \| scheme \|/);
    expect(md).toMatch(/\| blocks\.1\.output \| 41\.70 \| 38\.500 \|/);
  });

  it('renders a self-contained HTML page with SVG plots and escaped text', () => {
    const html = reportHtml(report);
    expect(html).not.toMatch(/<script|\s(src|href)=|url\(/);
    for (const id of PLOTS) expect(html).toContain(`<svg id="${id}"`);
    expect((html.match(/class="bar"/g) ?? []).length).toBe(BARS);
    // each outlier plot has one bar per block, longest for the block with the largest value
    for (const [id, key] of [['plot-kurtosis', 'kurtosis'], ['plot-inf-norm', 'infNorm']] as const) {
      const svg = html.slice(html.indexOf(`<svg id="${id}"`), html.indexOf('</svg>', html.indexOf(`<svg id="${id}"`)));
      const widths = [...svg.matchAll(/class="bar"[^>]* width="([\d.]+)"/g)].map((m) => Number(m[1]));
      expect(widths).toHaveLength(report.outliers!.length);
      const values = report.outliers!.map((o) => o[key]);
      expect(widths.indexOf(Math.max(...widths))).toBe(values.indexOf(Math.max(...values)));
    }
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
      // the parsed DOM holds every plot, the outlier plots included, with their bars and points
      for (const id of PLOTS) expect(dom.stdout).toContain(`<svg id="${id}"`);
      expect((dom.stdout.match(/class="bar"/g) ?? []).length).toBe(BARS);
      expect(dom.stdout).toContain('blocks.1.output: 41.70');
      // laid out by the browser: a copy of the page with a probe script that writes each plot's
      // rendered box and bar widths into the DOM (the report itself has no scripts)
      const probe = path.join(dir, 'probe.html');
      const script = `<script>const out = {}; for (const id of ${JSON.stringify(PLOTS)}) { const svg = document.getElementById(id); const box = svg.getBoundingClientRect(); out[id] = { w: box.width, h: box.height, bars: [...svg.querySelectorAll('rect.bar')].map((r) => r.getBBox().width) }; } const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);</script>`;
      fs.writeFileSync(probe, reportHtml(report).replace('</body>', `${script}</body>`));
      const laid = spawnSync(CHROMIUM!, [...flags, '--dump-dom', `file://${probe}`], { encoding: 'utf8', timeout: 30_000 });
      expect(laid.status, laid.stderr).toBe(0);
      const layout = JSON.parse(/<pre id="layout">(.*?)<\/pre>/s.exec(laid.stdout)![1]!.replace(/&quot;/g, '"')) as Record<string, { w: number; h: number; bars: number[] }>;
      for (const id of PLOTS) expect(layout[id]!.w * layout[id]!.h, id).toBeGreaterThan(100 * 50);
      for (const [id, key] of [['plot-kurtosis', 'kurtosis'], ['plot-inf-norm', 'infNorm']] as const) {
        const bars = layout[id]!.bars;
        expect(bars).toHaveLength(report.outliers!.length);
        const values = report.outliers!.map((o) => o[key]);
        // rendered widths in proportion to the values
        bars.forEach((b, i) => expect(b / Math.max(...bars)).toBeCloseTo(values[i]! / Math.max(...values), 2));
      }
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
