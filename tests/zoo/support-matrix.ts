// The support matrix of docs/architectures.md: every pass run on every zoo model, each cell
// either "works" with one figure, "fails" with the check it failed, or "skipped" with the exact
// reason the pass gave (its UserError sentence). Report entries a working pass skipped are
// listed under the table, so nothing is left out silently. Built by support-matrix.test.ts.
import { analyzeModel } from '../../src/analyze/analyze.js';
import { type Dataset, openDataset, type Sample } from '../../src/data/dataset.js';
import { isUserError } from '../../src/errors.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import type { Value } from '../../src/ir/value.js';
import { loadModel } from '../../src/onnx/index.js';
import { flexRound, gptq } from '../../src/passes/flexround.js';
import type { Pass } from '../../src/passes/pass.js';
import { prune, type PruneSummary } from '../../src/passes/prune.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import type { Report } from '../../src/report/report.js';
import { evaluate } from '../../src/validate/evaluate.js';
import { QualityFloorError } from '../../src/validate/quality-floor.js';
import { type ZooModel, zooModels, zooPath } from '../helpers/zoo.js';

/** Calibration samples each pass gets (and that its check and the quality floor run on). */
export const CALIB_SAMPLES = 8;
/** Samples OPTIN scores heads on (each head is one more masked variant per sample). */
const SCORING_SAMPLES = 4;
/** Samples analyze measures. */
const ANALYZE_SAMPLES = 4;
/** One onnxruntime thread: the figures are the same on every run. */
const THREADS = 1;

/** The accuracy limits of the bundled fixtures' 8-bit results (tests/fixtures/quantized-fixtures.test.ts). */
export const LIMITS = { top1Drop: 0.005, nllRise: 0.02 };

type Kind = 'quantize8' | 'quantize4' | 'prune' | 'analyze';

export interface PassColumn {
  id: string;
  title: string;
  kind: Kind;
  /** What exactly runs, for the legend. */
  how: string;
  make?: () => Pass;
}

export const COLUMNS: PassColumn[] = [
  { id: 'w8a8', title: 'w8a8', kind: 'quantize8', how: "quantize({ scheme: 'w8a8' })", make: () => quantize({ scheme: 'w8a8', verifySamples: CALIB_SAMPLES, cacheDir: false }) },
  { id: 'dynamic', title: 'dynamic', kind: 'quantize8', how: "quantize({ scheme: 'dynamic' })", make: () => quantize({ scheme: 'dynamic', verifySamples: CALIB_SAMPLES, cacheDir: false }) },
  { id: 'w4', title: 'w4 RTN', kind: 'quantize4', how: "quantize({ scheme: 'w4' })", make: () => quantize({ scheme: 'w4', verifySamples: CALIB_SAMPLES, cacheDir: false }) },
  { id: 'gptq', title: 'w4 GPTQ', kind: 'quantize4', how: 'gptq({ bits: 4 })', make: () => gptq({ bits: 4, verifySamples: CALIB_SAMPLES, cacheDir: false }) },
  {
    id: 'flexround',
    title: 'w4 FlexRound',
    kind: 'quantize4',
    how: "flexRound({ bits: 4, iters: 5, mode: 'layer' })",
    make: () => flexRound({ bits: 4, iters: 5, mode: 'layer', verifySamples: CALIB_SAMPLES, cacheDir: false }),
  },
  { id: 'repquant', title: 'w8a8 RepQuant', kind: 'quantize8', how: "quantize({ scheme: 'w8a8', method: 'repquant', repquantObserver: 'minmax' })", make: () => quantize({ scheme: 'w8a8', method: 'repquant', repquantObserver: 'minmax', verifySamples: CALIB_SAMPLES, cacheDir: false }) },
  {
    id: 'smoothquant',
    title: 'w8a8 SmoothQuant',
    kind: 'quantize8',
    how: "quantize({ scheme: 'w8a8', method: 'smoothquant' })",
    make: () => quantize({ scheme: 'w8a8', method: 'smoothquant', verifySamples: CALIB_SAMPLES, cacheDir: false }),
  },
  { id: 'heads', title: 'prune heads', kind: 'prune', how: "prune({ method: 'optin', headRatio: 0.25, samples: 4 })", make: () => prune({ method: 'optin', headRatio: 0.25, samples: SCORING_SAMPLES }) },
  { id: 'mlp', title: 'prune MLP', kind: 'prune', how: "prune({ method: 'magnitude', ratio: 0.25 })", make: () => prune({ method: 'magnitude', ratio: 0.25, samples: CALIB_SAMPLES }) },
  { id: 'drop', title: 'drop-attention', kind: 'prune', how: "prune({ method: 'drop-attention', count: 1 })", make: () => prune({ method: 'drop-attention', count: 1, samples: CALIB_SAMPLES }) },
  { id: 'analyze', title: 'analyze', kind: 'analyze', how: 'analyzeModel(model, calib, { samples: 4 })' },
];

export interface Cell {
  status: 'works' | 'fails' | 'skipped';
  /** The figure (works), the failed check (fails) or the reason (skipped). */
  text: string;
  /** Report entries of level 'skipped' (works or fails), "reason" with a count, and other notes. */
  notes: string[];
  seconds: number;
}

export interface MatrixRow {
  model: ZooModel;
  cells: Map<string, Cell>;
  /** Why the eval-set figures are missing on a trained member, when they are. */
  note?: string;
}

/** The first `n` samples of `d`, read once. */
function firstSamples(d: Dataset, n: number): Dataset {
  const cache = new Map<number, Sample>();
  return {
    path: d.path,
    size: Math.min(n, d.size),
    where: (i) => d.where(i),
    read(i) {
      let s = cache.get(i);
      if (!s) cache.set(i, (s = d.read(i)));
      return s;
    },
  };
}

const ROOT_PREFIX = `${zooPath('.')}/`;

/** Messages name files by their path from the repository root, so the matrix is the same in every checkout. */
function tidy(message: string): string {
  return message.split(ROOT_PREFIX).join('').replace(/\s+/g, ' ').trim();
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

function db(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(1)} dB` : x > 0 ? 'exact' : 'not held';
}

interface Accuracy {
  metric: 'top1' | 'nll';
  value: number;
}

async function accuracy(m: Model, z: ZooModel, evalSet: Dataset): Promise<Accuracy> {
  const lm = z.task !== 'classification';
  const metric = lm ? 'nll' : 'top1';
  const r = await evaluate(m, evalSet, { metrics: [metric], threads: THREADS, batchSize: 16 });
  return { metric, value: r.metrics[metric]! };
}

/** "top-1 96.9% → 95.3%" or "nll 1.618 → 1.650", and whether the bundled fixtures' 8-bit limit holds. */
function accuracyText(before: Accuracy, after: Accuracy): { text: string; withinLimit: boolean; limit: string } {
  if (before.metric === 'top1') {
    return { text: `top-1 ${pct(before.value)} → ${pct(after.value)}`, withinLimit: before.value - after.value <= LIMITS.top1Drop + 1e-12, limit: `top-1 may fall by at most ${LIMITS.top1Drop}` };
  }
  return { text: `nll ${before.value.toFixed(3)} → ${after.value.toFixed(3)}`, withinLimit: after.value <= before.value * (1 + LIMITS.nllRise), limit: `nll may rise by at most ${100 * LIMITS.nllRise}%` };
}

function reportNotes(report: Report): string[] {
  const counts = new Map<string, number>();
  for (const e of report.entries) {
    if (e.level !== 'skipped') continue;
    const key = tidy(e.message);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([reason, n]) => `skipped ${n}×: ${reason}`);
}

/**
 * Layers a quantize pass left with a float weight that no report entry names: a Conv, MatMul or
 * Gemm whose weight is still a float constant.
 */
function silentlyFloat(out: Model, report: Report): string[] {
  const said = report.entries.map((e) => `${e.target ?? ''} ${e.message}`).join('\n');
  const left = out.graph.nodes.filter((n) => {
    if (!['Conv', 'MatMul', 'Gemm'].includes(n.opType) || n.domain) return false;
    const w = n.input(1)?.initializer;
    if (!w || w.dtype !== DataType.FLOAT || w.dims.length < 2) return false;
    return ![n.name, n.output(0).name, n.input(1)!.name].some((x) => said.includes(x));
  });
  return left.map((n) => `left in float with no report entry: ${n.opType} '${n.name}'`);
}

/** Weights the exporter shares between layers (identical initial weights deduplicated), or undefined. */
function sharedWeights(m: Model): string | undefined {
  const linear = new Set(['MatMul', 'Gemm', 'Conv', 'FusedMatMul', 'FusedGemm', 'Identity']);
  // readers in the main graph only: a merged decoder's branches share every weight by design
  const main = new Set(m.graph.nodes);
  const readers = (v: Value) => v.consumers().filter((n) => main.has(n));
  const shared = m.graph.initializers.filter((v) => (v.initializer?.dims.length ?? 0) >= 2 && (readers(v).some((n) => n.opType === 'Identity') || readers(v).filter((n) => linear.has(n.opType)).length > 1));
  if (shared.length === 0) return undefined;
  return `${shared.length} weights are shared between layers (randomly initialised identical copies, which the exporter deduplicated): pruning one layer copies the weight it cuts, so parameters can rise, and dropping a sublayer frees none`;
}

/** Runs one column's pass on one zoo model and judges the result. */
async function runCell(col: PassColumn, z: ZooModel, model: Model, calib: Dataset, evalSet: Dataset | undefined, floatAccuracy: Accuracy | undefined): Promise<Omit<Cell, 'seconds'>> {
  if (col.kind === 'analyze') {
    const r = await analyzeModel(model, calib, { threads: THREADS, samples: ANALYZE_SAMPLES });
    const measured = r.attention.filter((a) => a.heads.length > 0).length;
    const blocksWithAttention = r.attention.length;
    const notes: string[] = [];
    const missing = r.attention.filter((a) => a.heads.length === 0).map((a) => a.block);
    if (missing.length) notes.push(`heads not measured in blocks ${missing.join(', ')}`);
    for (const k of r.skipped) notes.push(`block ${k.block}: ${tidy(k.reason)}`);
    const attentions = blocksWithAttention + r.skipped.length;
    return { status: 'works', text: `max kurtosis ${r.summary.maxKurtosis.toFixed(0)}, heads of ${measured}/${attentions} attentions, ${r.summary.noOpHeads} no-op`, notes };
  }
  const { model: out, report } = await pipeline([col.make!()]).apply(model, { calibration: calib, threads: THREADS });
  const notes = reportNotes(report);
  if (col.kind !== 'prune') notes.push(...silentlyFloat(out, report));
  const record = report.passes[0]!;
  if (!record.modified) return { status: 'fails', text: 'the pass changed nothing', notes };
  const q = report.quality!;
  let text: string;
  if (col.kind === 'prune') {
    const s = record.summary as unknown as PruneSummary;
    const what = s.headsRemoved ? `${s.headsRemoved} heads` : s.neuronsRemoved ? `${s.neuronsRemoved} neurons` : `${s.sublayersRemoved} sublayer`;
    text = `−${what}, params ${pct(s.parametersAfter / s.parametersBefore)}, agreement ${pct(q.agreement)}`;
  } else {
    const s = record.summary as unknown as QuantizeSummary;
    text = `${db(s.outputs[0]?.sqnr ?? q.sqnr)}`;
  }
  if (evalSet && floatAccuracy) {
    const a = accuracyText(floatAccuracy, await accuracy(out, z, evalSet));
    text += `, ${a.text}`;
    if (col.kind === 'quantize8' && !a.withinLimit) return { status: 'fails', text: `${text} (the bundled fixtures' limit: ${a.limit})`, notes };
  }
  return { status: 'works', text, notes };
}

/** Every column on every zoo model (models in manifest order). */
export async function supportMatrix(options: { models?: ZooModel[]; columns?: PassColumn[]; onCell?: (model: string, column: string, cell: Cell) => void } = {}): Promise<MatrixRow[]> {
  const rows: MatrixRow[] = [];
  for (const z of options.models ?? zooModels()) {
    const cells = new Map<string, Cell>();
    const model = loadModel(zooPath(z.file));
    const calib = z.calib ? firstSamples(openDataset(zooPath(z.calib)), CALIB_SAMPLES) : undefined;
    const evalSet = z.trained && z.eval ? firstSamples(openDataset(zooPath(z.eval)), 64) : undefined;
    let note = sharedWeights(model);
    let floatAccuracy: Accuracy | undefined;
    try {
      floatAccuracy = evalSet ? await accuracy(model, z, evalSet) : undefined;
    } catch (e) {
      if (!isUserError(e)) throw e;
      note = `${note ? `${note}; ` : ''}no eval-set figures: evaluating the float model on ${z.eval} stops with: ${tidy(e.message)}`;
    }
    for (const col of options.columns ?? COLUMNS) {
      const started = performance.now();
      let cell: Omit<Cell, 'seconds'>;
      if (!calib) cell = { status: 'skipped', text: 'no calibration data in the zoo', notes: [] };
      else {
        try {
          cell = await runCell(col, z, model, calib, floatAccuracy && evalSet, floatAccuracy);
        } catch (e) {
          if (isUserError(e)) cell = { status: 'skipped', text: tidy(e.message), notes: [] };
          else if (e instanceof QualityFloorError) cell = { status: 'fails', text: tidy(e.message), notes: [] };
          else throw new Error(`${z.name} × ${col.id}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
      }
      const done: Cell = { ...cell, seconds: (performance.now() - started) / 1000 };
      cells.set(col.id, done);
      options.onCell?.(z.name, col.id, done);
    }
    rows.push({ model: z, cells, note });
  }
  return rows;
}

function escape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/** The markdown of docs/architectures.md. */
export function matrixMarkdown(rows: MatrixRow[], columns: PassColumn[] = COLUMNS): string {
  const lines: string[] = [];
  lines.push('# Supported architectures');
  lines.push('');
  lines.push('<!-- Generated by tests/zoo/support-matrix.test.ts; regenerate with UPDATE_MATRIX=1 (do not edit by hand). -->');
  lines.push('');
  lines.push('Every pass run on every model of the zoo of real exporter output (`fixtures/zoo/`, described in');
  lines.push('`fixtures/zoo/README.md`), through the library API with one onnxruntime thread and the first');
  lines.push(`${CALIB_SAMPLES} calibration samples of \`calibration/zoo/<name>/calib\`. A cell is`);
  lines.push('');
  lines.push('- **✓** the pass produced a model that onnxruntime runs and that passed the pass\'s own check and');
  lines.push('  the quality floor (docs/ci.md), with one figure: end-to-end SQNR of the first output against the');
  lines.push('  float model for quantization; for pruning what was removed, the parameters kept and top-1');
  lines.push('  agreement with the original; on trained members (★) also top-1 or nll on the first 64 samples');
  lines.push('  of the eval set before → after;');
  lines.push(`- **✗** a check failed: an 8-bit result (w8a8, dynamic, RepQuant, SmoothQuant) of a trained member`);
  lines.push(`  outside the bundled fixtures' limits (top-1 down by more than ${LIMITS.top1Drop}, nll up by more than ${100 * LIMITS.nllRise}%), or a result below the`);
  lines.push('  quality floor, or a pass that changed nothing;');
  lines.push('- **skipped** the pass refused the model, with its own sentence.');
  lines.push('');
  lines.push('Members without ★ keep their random initial weights: their outputs differ little between');
  lines.push('classes, so top-1 agreement after pruning (and the floor it is held to) says less there.');
  lines.push('');
  lines.push('Parts of a model a working pass left alone are listed under the table with the reason the');
  lines.push('report gives, and so is a layer a quantize pass left in float without saying so (nothing is');
  lines.push('skipped silently). Removing equals masking (1e-4 relative) is checked on every zoo model but the');
  lines.push('merged decoder by tests/prune/surgery.test.ts, the exactness of the folds (1e-5 relative) on the');
  lines.push('top-level zoo files by tests/reparam/fold-zoo.test.ts.');
  lines.push('');
  lines.push('| pass | what runs |');
  lines.push('| --- | --- |');
  for (const c of columns) lines.push(`| ${c.title} | \`${c.how}\` |`);
  lines.push('');
  lines.push(`| model | ${columns.map((c) => c.title).join(' | ')} |`);
  lines.push(`| --- | ${columns.map(() => '---').join(' | ')} |`);
  // one note per distinct sentence, listing the cells it is about
  const notes = new Map<string, string[]>();
  const ref = (text: string, where: string): string => {
    const cells = notes.get(text) ?? [];
    if (cells.length === 0) notes.set(text, cells);
    cells.push(where);
    return `[${[...notes.keys()].indexOf(text) + 1}](#notes)`;
  };
  for (const r of rows) {
    const cells = columns.map((c) => {
      const cell = r.cells.get(c.id)!;
      const refs: string[] = [];
      if (cell.status === 'skipped') refs.push(ref(`skipped: ${cell.text}`, `${r.model.name} × ${c.title}`));
      for (const n of cell.notes) refs.push(ref(n, `${r.model.name} × ${c.title}`));
      const mark = cell.status === 'works' ? `✓ ${cell.text}` : cell.status === 'fails' ? `✗ ${cell.text}` : 'skipped';
      return escape(mark) + (refs.length ? ` ${refs.join(' ')}` : '');
    });
    let name = `${r.model.trained ? '★ ' : ''}\`${r.model.name}\``;
    if (r.note) name += ` ${ref(r.note, r.model.name)}`;
    lines.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push('## Notes');
  lines.push('');
  const listed = [...notes].map(([text, cells], i) => `${i + 1}. ${escape(text)} (${cells.map((c) => `\`${c}\``).join(', ')})`);
  lines.push(...(listed.length ? listed : ['None.']));
  lines.push('');
  return lines.join('\n');
}
