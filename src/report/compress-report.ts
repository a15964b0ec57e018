import type { AnalysisResult } from '../analyze/analyze.js';
import type { GateResult } from '../validate/gate.js';
import type { QualityCheck } from '../validate/quality-floor.js';
import type { PassRecord, ReportEntry } from './report.js';

/** One auto-mode trial: what was tried and what it gave. */
export interface Trial {
  index: number;
  /** Short description: scheme and the layers kept at higher precision. */
  label: string;
  scheme: string;
  /** Layers (and embedding tables) at other bits than the scheme's, or 'float'. */
  layerBits: Record<string, number | 'float'>;
  /** AMP entropy budget of MLP pruning in front of quantization (null: no pruning). */
  prune: number | null;
  bytes: number;
  /** Accuracy of the trial on the selection samples (the gate's metric). */
  accuracy: number | null;
  pass: boolean;
  message: string;
  /** Median latency as deployed (objectives latency and balanced; passing trials only). */
  latencyMs?: number | null;
}

/** Auto mode: how the model was chosen, and on which samples (disjoint from the reported accuracy's). */
export interface AutoSelection {
  objective: 'size' | 'latency' | 'balanced';
  /** Why the chosen trial won. */
  reason: string;
  /** Latency objectives: float's median in the same timing rounds as the candidates, and the rounds. */
  floatMs: number | null;
  latencyRuns: number | null;
  /** Relative margin under which two medians count as tied. */
  margin: number | null;
  /** The gate's metric on the samples the search chose on: float and the chosen trial. */
  accuracy: { metric: string; before: number; after: number; samples: number; pass: boolean } | null;
  /** The samples (indices into `data`) the trials were judged on. */
  data: string;
  indices: number[];
  /** The samples (indices into `data`) of the reported accuracy: never any of the selection's when `data` is the same. */
  holdout: { data: string; indices: number[] };
}

/** The one report object of `slimformer compress`; rendered as JSON, Markdown and HTML. */
export interface CompressReport {
  input: string;
  output: string | null;
  recipe: { name: string; passes: string[] };
  seconds: number;
  size: { before: number; after: number };
  latency: { beforeMs: number; afterMs: number; runs: number; batch: number } | null;
  /** A decoder with a key/value cache: one generated token after `cacheLength` cached ones. */
  decodeLatency?: { beforeMs: number; afterMs: number; runs: number; cacheLength: number } | null;
  /** The output compared with the original on calibration data. */
  check: { samples: number; agreement: number; sqnr: number; cosine: number } | null;
  /** The output against the quality floor on the verification samples (src/validate/quality-floor.ts). */
  quality?: QualityCheck | null;
  /** Accuracy on --data: baseline, compressed, and the gate's verdict when a limit was given (auto mode: on the held-out samples). */
  accuracy: { metric: string; before: number; after: number; samples: number; limit: string | null; pass: boolean | null } | null;
  /** Per-layer figures the passes recorded (quantize: bits and SQNR; prune: widths). */
  layers: { name: string; bits: number | null; sqnr: number | null }[];
  pruned: { block: number; heads: number | null; mlpWidth: number | null }[];
  passes: PassRecord[];
  entries: ReportEntry[];
  trials: Trial[];
  /** Auto mode: the trial kept, or null when none passed (then the closest was kept). */
  chosen: number | null;
  /** Auto mode: the objective, why the chosen trial won, and the selection accuracy apart from the held-out one. */
  selection?: AutoSelection;
  /** Auto mode: layers by sensitivity, most sensitive first (output SQNR with that layer alone quantized). */
  sensitivity?: { name: string; outputSqnr: number }[];
  /** Activation outliers per transformer block output (analyze's metrics), when measured. */
  outliers?: OutlierRow[] | null;
}

/** Outlier metrics of one tensor (Quantizable Transformers: kurtosis and inf norm of block outputs). */
export interface OutlierRow {
  layer: string;
  block: number | null;
  kurtosis: number;
  infNorm: number;
}

export function gateCheck(g: GateResult): CompressReport['check'] {
  const m = (name: string): number => g.metrics.find((x) => x.metric === name)?.candidate ?? NaN;
  return { samples: g.samples, agreement: m('agreement'), sqnr: m('sqnr'), cosine: m('cosine') };
}

/** Reads the per-layer data the passes' summaries carry. */
export function layerData(passes: PassRecord[]): Pick<CompressReport, 'layers' | 'pruned'> {
  const layers: CompressReport['layers'] = [];
  const pruned: CompressReport['pruned'] = [];
  for (const p of passes) {
    const s = p.summary as { layers?: { name: string; bits?: number; sqnr?: number | null }[]; blocks?: { index: number; heads: number | null; mlpWidth: number | null }[] };
    if (p.pass === 'quantize' && Array.isArray(s.layers)) for (const l of s.layers) layers.push({ name: l.name, bits: l.bits ?? null, sqnr: l.sqnr ?? null });
    if (p.pass === 'prune' && Array.isArray(s.blocks)) for (const b of s.blocks) pruned.push({ block: b.index, heads: b.heads, mlpWidth: b.mlpWidth });
  }
  return { layers, pruned };
}

/** The outlier rows a report carries: each transformer block's output (analyze's block-output tensors). */
export function outlierRows(a: AnalysisResult): OutlierRow[] {
  return a.layers.filter((l) => l.kinds.includes('block-output')).map((l) => ({ layer: l.layer, block: l.block, kurtosis: l.kurtosis, infNorm: l.infNorm }));
}
