// The quality floor: a model slimformer writes is first compared with the model it came from
// on the verification samples (the first calibration samples), and an output measured as broken
// is refused. Two figures of the first graph output: end-to-end SQNR (dB) and top-1 agreement
// (share of positions whose argmax is the original's). The figures below were chosen from what
// every scheme and method gives on the bundled models (docs/ci.md, `node
// dist/benchmarks/quality-floor.js`): the worst legitimate output stays above the floor.
import { batches, bindDataset, fitEmptyInputs } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import { defaultSegmentBytes, pairBatchSize, visitPairsBlockwise } from '../runtime/block-runner.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { ComparisonAccumulator } from './comparison.js';

export interface QualityFigures {
  /** End-to-end SQNR of the first output against the original model, dB (Infinity when equal). */
  sqnr: number;
  /** Share of positions (samples, or tokens of a language model) whose argmax is the original's. */
  agreement: number;
}

/** Below `floor` the output is refused; below `warnBelow` (and at or above the floor) it is written with a warning. */
export interface QualityFloor {
  floor: QualityFigures;
  warnBelow: QualityFigures;
}

/**
 * Refused below 3 dB (the error's power over half the output's: the issue that asked for a floor
 * saw a broken model at 2.7 dB) or 10% agreement (chance for ten classes). Warned below 8 dB or
 * 50%. Measured on the bundled models (16 verification samples), the lowest figures of the
 * default granularities are 6.3 dB and 23.9% (gpt_moby w2 rtn, warned); one scale per tensor
 * gives 3.5 dB and 16.3% (gpt_moby w2, warned); every 8-bit, dynamic, w4 and w3 result passes
 * without a warning; pruning (magnitude 50% of the MLP neurons, one sublayer dropped) gives at
 * least 9.2 dB and 54.4%.
 */
export const QUALITY_FLOOR: QualityFloor = {
  floor: { sqnr: 3, agreement: 0.1 },
  warnBelow: { sqnr: 8, agreement: 0.5 },
};

/**
 * The floor of a result that was pruned: agreement only. Pruning without retraining shifts the
 * logits as a whole, so their SQNR falls while the answers hold: vit_mnist with 95% of its MLP
 * neurons removed by magnitude measures 2.7 dB but keeps top-1 87.2% (from 97.4%) and 81%
 * agreement. SQNR still warns below 8 dB; -Infinity (null in JSON) means not held.
 */
export const PRUNING_FLOOR: QualityFloor = {
  floor: { sqnr: -Infinity, agreement: QUALITY_FLOOR.floor.agreement },
  warnBelow: QUALITY_FLOOR.warnBelow,
};

/** The floor for a run whose passes are these: PRUNING_FLOOR when a prune pass changed the model. */
export function floorFor(passes: readonly { pass: string; modified: boolean }[]): QualityFloor {
  return passes.some((p) => p.pass === 'prune' && p.modified) ? PRUNING_FLOOR : QUALITY_FLOOR;
}

/** Verification samples: the first calibration samples, as quantize's own check uses. */
export const QUALITY_SAMPLES = 16;

export type QualityVerdict = 'pass' | 'warning' | 'below-floor';

export interface QualityCheck extends QualityFigures {
  verdict: QualityVerdict;
  /** The output the figures are about and how many samples / positions they cover. */
  output: string;
  samples: number;
  positions: number;
  floor: QualityFigures;
  warnBelow: QualityFigures;
  /** The figures under the floor (verdict below-floor) or in the warning band (verdict warning). */
  failing: (keyof QualityFigures)[];
  /** Written although below the floor (`--force`, `force: true`). */
  forced: boolean;
}

/** Runs both models on the first `samples` samples of `dataset` and measures SQNR and agreement of the first output. */
export async function measureQuality(original: Model, candidate: Model, dataset: Dataset, options: { samples?: number; threads?: number; signal?: AbortSignal } = {}): Promise<{ figures: QualityFigures; output: string; samples: number; positions: number }> {
  const want = options.samples ?? QUALITY_SAMPLES;
  const output = original.graph.outputs[0]!.name;
  const acc = new ComparisonAccumulator();
  let seen = 0;
  const segmentBytes = defaultSegmentBytes(original);
  if (original.graph.initializers.reduce((t, v) => t + (v.initializer?.byteLength ?? 0), 0) > 2 * segmentBytes) {
    // a large model: both run a segment at a time side by side (runtime/block-runner.ts)
    const feedsA: Record<string, ArrayTensor>[] = [];
    const feedsB: Record<string, ArrayTensor>[] = [];
    for (const batch of batches(bindDataset(dataset, original), Math.min(pairBatchSize(candidate, 4), want))) {
      if (seen >= want) break;
      feedsA.push(batch.feeds);
      feedsB.push(fitEmptyInputs(batch.feeds, candidate));
      seen += batch.count;
    }
    if (await visitPairsBlockwise(original, candidate, feedsA, feedsB, [{ a: output, b: output }], (_p, _b, x, y) => acc.add(x, y, output), { maxSegmentBytes: segmentBytes, threads: options.threads, signal: options.signal })) {
      const m = acc.result(['sqnr', 'agreement']);
      return { figures: { sqnr: m.sqnr!, agreement: m.agreement! }, output, samples: seen, positions: acc.count };
    }
    seen = 0;
  }
  const a = await Session.create(original, { threads: options.threads, memoryArena: false });
  const b = await Session.create(candidate, { threads: options.threads, memoryArena: false });
  try {
    const bound = bindDataset(dataset, original);
    for (const batch of batches(bound, Math.min(4, want))) {
      if (seen >= want) break;
      options.signal?.throwIfAborted();
      const x = (await a.run(batch.feeds, [output]))[output]!;
      const y = (await b.run(fitEmptyInputs(batch.feeds, candidate), [output]))[output]!;
      acc.add(x, y, output);
      seen += batch.count;
    }
  } finally {
    await a.release();
    await b.release();
  }
  const m = acc.result(['sqnr', 'agreement']);
  return { figures: { sqnr: m.sqnr!, agreement: m.agreement! }, output, samples: seen, positions: acc.count };
}

/** The verdict on measured figures; NaN (a non-finite output) counts as below the floor. */
export function judgeQuality(figures: QualityFigures, floor: QualityFloor = QUALITY_FLOOR): { verdict: QualityVerdict; failing: (keyof QualityFigures)[] } {
  const keys: (keyof QualityFigures)[] = ['sqnr', 'agreement'];
  const under = (limit: QualityFigures) => keys.filter((k) => !(figures[k] >= limit[k]));
  const below = under(floor.floor);
  if (below.length) return { verdict: 'below-floor', failing: below };
  const warn = under(floor.warnBelow);
  return warn.length ? { verdict: 'warning', failing: warn } : { verdict: 'pass', failing: [] };
}

/** Measures and judges `candidate` against `original`. */
export async function checkQuality(original: Model, candidate: Model, dataset: Dataset, options: { samples?: number; threads?: number; signal?: AbortSignal; floor?: QualityFloor; force?: boolean } = {}): Promise<QualityCheck> {
  const floor = options.floor ?? QUALITY_FLOOR;
  const m = await measureQuality(original, candidate, dataset, options);
  const j = judgeQuality(m.figures, floor);
  return { ...m.figures, ...j, output: m.output, samples: m.samples, positions: m.positions, floor: floor.floor, warnBelow: floor.warnBelow, forced: j.verdict === 'below-floor' && options.force === true };
}

const LABELS: Record<keyof QualityFigures, string> = { sqnr: 'end-to-end SQNR', agreement: 'top-1 agreement' };

export function formatFigure(k: keyof QualityFigures, v: number): string {
  if (k === 'sqnr') return Number.isFinite(v) ? `${v.toFixed(1)} dB` : Number.isNaN(v) ? 'NaN' : v > 0 ? 'exact' : 'not held';
  return Number.isNaN(v) ? 'NaN' : `${(100 * v).toFixed(1)}%`;
}

/** "end-to-end SQNR 2.7 dB (floor 5 dB), top-1 agreement 40.0% (floor 50.0%)" for the failing figures. */
export function describeFailing(check: QualityCheck, against: 'floor' | 'warnBelow'): string {
  const limit = against === 'floor' ? check.floor : check.warnBelow;
  const word = against === 'floor' ? 'floor' : 'warning below';
  return check.failing.map((k) => `${LABELS[k]} ${formatFigure(k, check[k])} (${word} ${formatFigure(k, limit[k])})`).join(' and ');
}

/** The report's warning for a result kept in the warning band or forced below the floor; null for a pass. */
export function qualityWarning(check: QualityCheck): string | null {
  if (check.verdict === 'pass' || (check.verdict === 'below-floor' && !check.forced)) return null;
  const what = check.verdict === 'below-floor' ? `kept although below the quality floor (force): ${describeFailing(check, 'floor')}` : `in the quality floor's warning band: ${describeFailing(check, 'warnBelow')}`;
  return `${what} against the original on ${check.samples} calibration samples`;
}

/**
 * The output was measured below the quality floor and not written. Carries the check; the
 * library's override is `force: true` (the CLI's `--force`).
 */
export class QualityFloorError extends Error {
  constructor(readonly check: QualityCheck) {
    super(`the compressed model is below the quality floor: ${describeFailing(check, 'floor')} against the original on ${check.samples} calibration samples; pass force: true to accept it anyway`);
    this.name = 'QualityFloorError';
  }
}
