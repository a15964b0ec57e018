import { outlierRows } from '../report/compress-report.js';
import { outlierCharts } from '../report/render.js';
import type { AnalysisResult } from './analyze.js';

const f = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/** The analysis as the terminal table `slimformer analyze` prints. */
export function analysisText(r: AnalysisResult): string {
  const lines: string[] = [];
  lines.push(`${r.model} on ${r.dataset}: ${r.samples} samples`);
  lines.push('');
  lines.push(`${'layer'.padEnd(34)} ${'inf norm'.padStart(10)} ${'kurtosis'.padStart(10)}  outlier channels`);
  for (const l of r.layers) {
    lines.push(`${l.layer.padEnd(34)} ${f(l.infNorm).padStart(10)} ${f(l.kurtosis, 2).padStart(10)}  ${l.outlierChannels.slice(0, 8).join(',') || '-'}`);
  }
  if (r.attention.length > 0) {
    lines.push('');
    lines.push('attention');
    for (const a of r.attention) {
      const form = a.form === 'clipped-softmax' ? `clipped softmax (gamma ${a.gamma}, zeta ${a.zeta})` : 'softmax';
      lines.push(`  block ${a.block}: ${form}${a.gated ? ', gated' : ''}; no-op heads: ${a.noOpHeads.length ? `${a.noOpHeads.join(',')} (feeding ${a.feeds})` : 'none'}`);
      for (const h of a.heads) {
        lines.push(`    head ${h.head}: first token ${f(h.firstTokenShare, 2)}, sink key ${h.sinkKey} ${f(h.sinkShare, 2)}, entropy ${f(h.entropy, 2)}/${f(h.maxEntropy, 2)}, update/residual ${h.relativeUpdate === null ? '-' : f(h.relativeUpdate, 3)}${h.noOp ? '  NO-OP' : ''}`);
      }
    }
  }
  for (const k of r.skipped) lines.push(`  block ${k.block}: skipped: ${k.reason}`);
  lines.push('');
  lines.push(`${'linear (w8a8, per-tensor activations)'.padEnd(40)} ${'local dB'.padStart(9)} ${'predicted dB'.padStart(13)}  advice`);
  for (const p of r.predictions) lines.push(`${p.layer.padEnd(40)} ${f(p.localSqnr, 1).padStart(9)} ${f(p.predictedSqnr, 1).padStart(13)}  ${p.recommendation}${p.breaks ? ` (${p.reason})` : ''}`);
  const s = r.summary;
  lines.push('');
  lines.push(`max inf norm ${f(s.maxInfNorm)} (${s.maxInfNormLayer}); avg kurtosis ${f(s.avgKurtosis, 2)}; max kurtosis ${f(s.maxKurtosis, 2)} (${s.maxKurtosisLayer})`);
  lines.push(`outlier channels ${s.outlierChannels}; no-op heads ${s.noOpHeads}; layers w8a8 per-tensor breaks: ${s.breaking.join(', ') || 'none'}`);
  if (s.exclude.length > 0) lines.push(`suggested: slimformer quantize ... --scheme w8a8 ${s.exclude.map((x) => `--exclude '${x}'`).join(' ')}`);
  return lines.join('\n') + '\n';
}

const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A self-contained HTML page: tables plus a bar per layer for kurtosis and inf norm. */
export function analysisHtml(r: AnalysisResult): string {
  const maxK = Math.max(1e-9, ...r.layers.map((l) => l.kurtosis));
  const maxI = Math.max(1e-9, ...r.layers.map((l) => l.infNorm));
  const bar = (v: number, max: number, color: string): string => `<div style="background:${color};height:10px;width:${Math.max(1, (200 * v) / max).toFixed(0)}px"></div>`;
  const rows = r.layers
    .map((l) => `<tr><td>${esc(l.layer)}</td><td>${esc(l.kinds.join(', '))}</td><td>${f(l.infNorm)}</td><td>${bar(l.infNorm, maxI, '#c44')}</td><td>${f(l.kurtosis, 2)}</td><td>${bar(l.kurtosis, maxK, '#44c')}</td><td>${l.outlierChannels.join(', ')}</td></tr>`)
    .join('\n');
  const preds = r.predictions
    .map((p) => `<tr${p.breaks ? ' style="background:#fdd"' : ''}><td>${esc(p.layer)}</td><td>${f(p.localSqnr, 1)}</td><td>${f(p.predictedSqnr, 1)}</td><td>${p.recommendation}</td><td>${esc(p.reason)}</td></tr>`)
    .join('\n');
  const heads = r.attention
    .flatMap((a) => a.heads.map((h) => `<tr${h.noOp ? ' style="background:#fdd"' : ''}><td>${a.block}</td><td>${h.head}</td><td>${a.form}${a.gated ? ' gated' : ''}</td><td>${f(h.firstTokenShare, 2)}</td><td>${h.sinkKey}: ${f(h.sinkShare, 2)}</td><td>${f(h.entropy, 2)}</td><td>${h.relativeUpdate === null ? '-' : f(h.relativeUpdate, 3)}</td><td>${h.noOp ? 'no-op' : ''}</td></tr>`))
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>slimformer analyze: ${esc(r.model)}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style></head><body>
<h1>Outlier analysis: ${esc(r.model)}</h1>
<p>${r.samples} samples of ${esc(r.dataset)}. Max inf norm ${f(r.summary.maxInfNorm)} (${esc(r.summary.maxInfNormLayer ?? '-')}), avg kurtosis ${f(r.summary.avgKurtosis, 2)}, max kurtosis ${f(r.summary.maxKurtosis, 2)} (${esc(r.summary.maxKurtosisLayer ?? '-')}).</p>
${outlierRows(r).length ? `<h2>Outliers per block</h2>${outlierCharts(outlierRows(r))}` : ''}
<h2>Layers</h2><table><tr><th>layer</th><th>tensor</th><th>inf norm</th><th></th><th>kurtosis</th><th></th><th>outlier channels</th></tr>
${rows}</table>
<h2>Attention heads</h2><table><tr><th>block</th><th>head</th><th>form</th><th>first token</th><th>sink key</th><th>entropy</th><th>update / residual</th><th></th></tr>
${heads}</table>
<h2>Predicted w8a8 SQNR (per-tensor activations)</h2><table><tr><th>linear</th><th>local dB</th><th>predicted dB</th><th>advice</th><th>why</th></tr>
${preds}</table></body></html>
`;
}
