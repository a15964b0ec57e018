import type { CompressReport, OutlierRow } from './compress-report.js';

/** JSON: Infinity (an exact match) is written as null. */
export function reportJson(r: CompressReport): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2);
}

export function size(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}
const db = (x: number | null): string => (x === null || Number.isNaN(x) ? '-' : Number.isFinite(x) ? `${x.toFixed(1)} dB` : 'exact');
const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;

/** The before/after rows the CLI prints and the Markdown/HTML pages show. */
export function summaryRows(r: CompressReport): string[][] {
  const rows: string[][] = [['', 'original', 'compressed', 'change']];
  rows.push(['size', size(r.size.before), size(r.size.after), `${(r.size.before / r.size.after).toFixed(2)}x smaller`]);
  const speed = (before: number, after: number) => (after <= before ? `${(before / after).toFixed(2)}x faster` : `${(after / before).toFixed(2)}x slower`);
  if (r.latency) rows.push([`latency (batch ${r.latency.batch}, median of ${r.latency.runs})`, `${r.latency.beforeMs.toFixed(2)} ms`, `${r.latency.afterMs.toFixed(2)} ms`, speed(r.latency.beforeMs, r.latency.afterMs)]);
  const d = r.decodeLatency;
  if (d) rows.push([`decode step (1 token, cache ${d.cacheLength}, median of ${d.runs})`, `${d.beforeMs.toFixed(2)} ms`, `${d.afterMs.toFixed(2)} ms`, speed(d.beforeMs, d.afterMs)]);
  const sel = r.selection?.accuracy;
  if (sel) {
    const d = sel.after - sel.before;
    rows.push([`${sel.metric} selection (${sel.samples} samples)`, pct(sel.before), pct(sel.after), `${d >= 0 ? '+' : ''}${(d * 100).toFixed(2)} points (the search chose on these)`]);
  }
  if (r.accuracy) {
    const d = r.accuracy.after - r.accuracy.before;
    rows.push([`${r.accuracy.metric}${r.selection ? ' holdout' : ''} (${r.accuracy.samples} samples)`, pct(r.accuracy.before), pct(r.accuracy.after), `${d >= 0 ? '+' : ''}${(d * 100).toFixed(2)} points${r.accuracy.pass === null ? '' : r.accuracy.pass ? ' (pass)' : ' (FAIL)'}`]);
  }
  if (r.check) rows.push([`vs original (${r.check.samples} calib samples)`, '', `agreement ${pct(r.check.agreement)}`, `output SQNR ${db(r.check.sqnr)}`]);
  if (r.quality) rows.push([`quality floor (${r.quality.samples} calib samples)`, '', r.quality.verdict === 'below-floor' ? 'below, forced' : r.quality.verdict, `floor: SQNR ${Number.isFinite(r.quality.floor.sqnr) ? db(r.quality.floor.sqnr) : 'not held (pruned)'}, agreement ${pct(r.quality.floor.agreement)}`]);
  return rows;
}

/** Plain text table for the terminal. */
export function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((x, c) => x.padEnd(widths[c]!)).join('  ').trimEnd()).join('\n');
}

/** The auto-mode trials; a latency column (and a float row) when the search timed them. */
export function trialRows(r: CompressReport): string[][] {
  const timed = r.selection?.floatMs != null;
  const ms = (x: number | null | undefined): string => (x == null ? '-' : `${x.toFixed(3)} ms`);
  const head = ['trial', 'config', 'size', r.selection ? 'selection accuracy' : 'accuracy', ...(timed ? ['latency'] : []), 'gate'];
  const floatRow = timed ? [['-', 'float (original)', size(r.size.before), r.selection?.accuracy ? pct(r.selection.accuracy.before) : '-', ms(r.selection!.floatMs), '']] : [];
  return [
    head,
    ...floatRow,
    ...r.trials.map((t) => [String(t.index), t.label, size(t.bytes), t.accuracy === null ? '-' : pct(t.accuracy), ...(timed ? [ms(t.latencyMs)] : []), `${t.pass ? 'pass' : 'fail'}${r.chosen === t.index ? ' <- chosen' : ''}`]),
  ];
}

/** One line on how auto mode chose, and on which samples. */
export function selectionText(r: CompressReport): string {
  const s = r.selection;
  if (!s) return '';
  const same = s.data === s.holdout.data;
  const where = same ? `${s.indices.length} of the ${s.indices.length + s.holdout.indices.length} samples of ${s.data}; the reported accuracy is on the other ${s.holdout.indices.length}` : `${s.data} (${s.indices.length} samples); the reported accuracy is on ${s.holdout.data} (${s.holdout.indices.length})`;
  return `objective ${s.objective}: ${s.reason}. Trials judged on ${where}.`;
}

function mdTable(rows: string[][]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [`| ${rows[0]!.map(esc).join(' | ')} |`, `|${rows[0]!.map(() => '---').join('|')}|`, ...rows.slice(1).map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export function reportMarkdown(r: CompressReport): string {
  const out = [`# slimformer compress: ${r.input}`, '', `Recipe **${r.recipe.name}** (${r.recipe.passes.join(' → ')}), ${r.seconds.toFixed(1)} s.${r.output ? ` Written to \`${r.output}\`.` : ''}`, '', mdTable(summaryRows(r)), ''];
  if (r.trials.length) out.push('## Auto-mode trials', '', mdTable(trialRows(r)), '', r.chosen === null ? 'No trial passed the gate; the closest was kept.' : `Chosen: trial ${r.chosen}.`, '', ...(r.selection ? [selectionText(r), ''] : []));
  if (r.layers.length) out.push('## Per-layer SQNR', '', mdTable([['layer', 'bits', 'SQNR'], ...r.layers.map((l) => [l.name, l.bits === null ? '-' : String(l.bits), db(l.sqnr)])]), '');
  if (r.sensitivity?.length) out.push('## Layer sensitivity (auto mode)', '', mdTable([['layer', 'output SQNR alone', 'in the kept model'], ...r.sensitivity.map((x) => [x.name, db(x.outputSqnr), String(r.trials.find((t) => t.index === r.chosen)?.layerBits[x.name] ?? 'scheme')])]), '');
  if (r.outliers?.length) out.push('## Activation outliers per block', '', mdTable([['tensor', 'kurtosis', 'inf norm'], ...r.outliers.map((o) => [o.layer, o.kurtosis.toFixed(2), o.infNorm.toFixed(3)])]), '');
  if (r.pruned.length) out.push('## Pruned widths', '', mdTable([['block', 'heads', 'MLP width'], ...r.pruned.map((b) => [String(b.block), String(b.heads ?? '-'), String(b.mlpWidth ?? '-')])]), '');
  const notes = r.entries.filter((e) => e.level !== 'info');
  if (notes.length) out.push('## Warnings and skips', '', ...notes.map((e) => `- ${e.level} (${e.pass})${e.target ? ` \`${e.target}\`` : ''}: ${e.message}`), '');
  return out.join('\n');
}

const escHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A horizontal bar chart as inline SVG (one bar per item). */
export function barChart(id: string, title: string, items: { label: string; value: number; color?: string }[], unit: string, digits = unit ? 1 : 0): string {
  const finite = items.filter((i) => Number.isFinite(i.value));
  const max = Math.max(1e-9, ...finite.map((i) => i.value));
  const rowH = 18;
  const labelW = 240;
  const barW = 400;
  const h = 30 + items.length * rowH;
  const bars = items
    .map((it, i) => {
      const v = Number.isFinite(it.value) ? it.value : max;
      const w = Math.max(1, (Math.max(0, v) / max) * barW);
      const y = 24 + i * rowH;
      const text = Number.isFinite(it.value) ? `${it.value.toFixed(digits)}${unit ? ` ${unit}` : ''}` : 'exact';
      return `<text x="${labelW - 6}" y="${y + 12}" text-anchor="end" font-size="11">${escHtml(it.label)}</text><rect class="bar" x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 4}" fill="${it.color ?? '#3b7dd8'}"><title>${escHtml(it.label)}: ${text}</title></rect><text x="${labelW + w + 4}" y="${y + 12}" font-size="10">${text}</text>`;
    })
    .join('');
  return `<svg id="${id}" xmlns="http://www.w3.org/2000/svg" width="${labelW + barW + 80}" height="${h}" role="img" aria-label="${escHtml(title)}"><text x="0" y="14" font-size="13" font-weight="bold">${escHtml(title)}</text>${bars}</svg>`;
}

/** Kurtosis and inf norm of each block's output (the outlier metrics of `analyze`), as two bar charts. */
export function outlierCharts(rows: readonly OutlierRow[]): string {
  const items = (v: (o: OutlierRow) => number, color: string): { label: string; value: number; color: string }[] => rows.map((o) => ({ label: o.layer, value: v(o), color }));
  return (
    barChart('plot-kurtosis', 'Kurtosis of the block outputs (3 for a Gaussian; high means outliers)', items((o) => o.kurtosis, '#8a5cd1'), '', 2) +
    barChart('plot-inf-norm', 'Inf norm (max |x|, mean over samples) of the block outputs', items((o) => o.infNorm, '#d0453a'), '', 2)
  );
}

/** A scatter plot as inline SVG (accuracy against size across trials). */
export function scatterChart(id: string, title: string, points: { x: number; y: number; label: string; pass: boolean }[], xUnit: string, yUnit: string): string {
  const W = 560;
  const H = 300;
  const m = { l: 60, r: 20, t: 28, b: 40 };
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number): number => m.l + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number): number => H - m.b - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const dots = points
    .map((p) => `<circle class="point" cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="5" fill="${p.pass ? '#2e9d4b' : '#d0453a'}"><title>${escHtml(p.label)}</title></circle><text x="${(sx(p.x) + 7).toFixed(1)}" y="${(sy(p.y) - 6).toFixed(1)}" font-size="10">${escHtml(p.label.split(':')[0]!)}</text>`)
    .join('');
  return `<svg id="${id}" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${escHtml(title)}"><text x="0" y="14" font-size="13" font-weight="bold">${escHtml(title)}</text><line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="#444"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="#444"/><text x="${(W / 2).toFixed(0)}" y="${H - 8}" font-size="11" text-anchor="middle">size (${xUnit})</text><text x="12" y="${(H / 2).toFixed(0)}" font-size="11" transform="rotate(-90 12 ${(H / 2).toFixed(0)})" text-anchor="middle">${escHtml(yUnit)}</text><text x="${m.l}" y="${H - m.b + 14}" font-size="10">${x0.toFixed(1)}</text><text x="${W - m.r}" y="${H - m.b + 14}" font-size="10" text-anchor="end">${x1.toFixed(1)}</text><text x="${m.l - 4}" y="${H - m.b}" font-size="10" text-anchor="end">${y0.toFixed(2)}</text><text x="${m.l - 4}" y="${m.t + 8}" font-size="10" text-anchor="end">${y1.toFixed(2)}</text>${dots}</svg>`;
}

/** A self-contained HTML page (no scripts, no external resources) with inline SVG plots. */
export function reportHtml(r: CompressReport): string {
  const table = (rows: string[][]): string => `<table><thead><tr>${rows[0]!.map((c) => `<th>${escHtml(c)}</th>`).join('')}</tr></thead><tbody>${rows.slice(1).map((row) => `<tr>${row.map((c) => `<td>${escHtml(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  const parts: string[] = [];
  parts.push(`<h1>slimformer compress: ${escHtml(r.input)}</h1>`, `<p>Recipe <b>${escHtml(r.recipe.name)}</b> (${escHtml(r.recipe.passes.join(' → '))}), ${r.seconds.toFixed(1)} s.${r.output ? ` Written to <code>${escHtml(r.output)}</code>.` : ''}</p>`, table(summaryRows(r)));
  if (r.layers.length) {
    const colors: Record<number, string> = { 8: '#3b7dd8', 6: '#8a5cd1', 4: '#e0902f', 3: '#d0453a' };
    parts.push('<h2>Per-layer SQNR</h2>', barChart('plot-sqnr', 'Output SQNR per quantized layer (dB, higher is better)', r.layers.map((l) => ({ label: `${l.name} (${l.bits ?? '?'}b)`, value: l.sqnr ?? NaN, color: colors[l.bits ?? 8] })), 'dB'));
  }
  if (r.sensitivity?.length) {
    parts.push('<h2>Layer sensitivity (auto mode)</h2>', barChart('plot-sensitivity', 'Output SQNR with only this layer quantized (dB, lower is more sensitive; green: kept at higher precision)', r.sensitivity.map((x) => ({ label: x.name, value: x.outputSqnr, color: r.trials.find((t) => t.index === r.chosen)?.layerBits[x.name] !== undefined ? '#2e9d4b' : '#3b7dd8' })), 'dB'));
  }
  if (r.outliers?.length) parts.push('<h2>Activation outliers per block</h2>', outlierCharts(r.outliers));
  if (r.pruned.length) parts.push('<h2>Pruned widths</h2>', barChart('plot-pruned', 'MLP width per block after pruning', r.pruned.map((b) => ({ label: `block ${b.block}`, value: b.mlpWidth ?? 0 })), ''));
  if (r.trials.length) {
    parts.push('<h2>Auto-mode trials</h2>', scatterChart('plot-trials', `${r.selection ? 'Selection accuracy' : 'Accuracy'} against size across trials (green: passed the gate)`, r.trials.filter((t) => t.accuracy !== null).map((t) => ({ x: t.bytes / 1024, y: t.accuracy! * 100, label: `${t.index}: ${t.label}`, pass: t.pass })), 'KiB', 'accuracy (%)'), table(trialRows(r)), ...(r.selection ? [`<p>${escHtml(selectionText(r))}</p>`] : []));
  }
  const notes = r.entries.filter((e) => e.level !== 'info');
  if (notes.length) parts.push('<h2>Warnings and skips</h2><ul>', ...notes.map((e) => `<li>${escHtml(e.level)} (${escHtml(e.pass)})${e.target ? ` <code>${escHtml(e.target)}</code>` : ''}: ${escHtml(e.message)}</li>`), '</ul>');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slimformer report: ${escHtml(r.input)}</title>
<style>body{font-family:sans-serif;margin:2em;color:#222;background:#fff}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f0f0f0}svg{display:block;margin:1em 0}</style>
</head><body>
${parts.join('\n')}
</body></html>
`;
}

/** Renders by file extension: .json, .md or .html. */
export function renderReport(r: CompressReport, file: string): string {
  if (file.endsWith('.json')) return reportJson(r) + '\n';
  if (file.endsWith('.md')) return reportMarkdown(r);
  if (file.endsWith('.html') || file.endsWith('.htm')) return reportHtml(r);
  throw new Error(`unsupported report format: ${file}`);
}
