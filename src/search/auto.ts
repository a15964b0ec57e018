import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { splitDataset } from '../data/split.js';
import { UserError, isUserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { modelToBytes } from '../onnx/save.js';
import type { LayerBits, QuantizeSummary } from '../passes/quantize.js';
import { inStep, type Progress, silentProgress } from '../progress.js';
import { type Scheme, isWeightOnly, weightBits } from '../quantize/scheme.js';
import { type CompressReport, type Trial, layerData } from '../report/compress-report.js';
import type { PassRecord, ReportEntry } from '../report/report.js';
import { measure } from '../pipeline/compress.js';
import { fromRecipe, type Recipe } from '../pipeline/recipe.js';
import { medianLatencies } from '../runtime/latency.js';
import { type Objective, chooseByObjective } from './objective.js';
import { evaluate } from '../validate/evaluate.js';
import { GATE_METRIC_INFO } from '../validate/gate-metrics.js';
import { checkLimit, type Limit } from '../validate/limits.js';
import type { MetricName } from '../validate/metrics.js';
import { QualityFloorError, checkQuality, floorFor, qualityWarning } from '../validate/quality-floor.js';

export interface AutoOptions {
  calibration: Dataset;
  /**
   * Labelled evaluation data. Without `selection`, it is split in two disjoint halves
   * (splitDataset): the trials are judged on one, the reported accuracy comes from the other.
   */
  data: Dataset;
  /** Labelled data the trials are judged on; then all of `data` is held out for the reported accuracy. */
  selection?: Dataset;
  /** What to optimize among the passing trials (default 'size'; see objective.ts). */
  objective?: Objective;
  /** Relative latency margin under which two medians count as tied (default 0.05). */
  latencyMargin?: number;
  /** Timed rounds per candidate in the search (latency objectives; default 20). */
  searchLatencyRuns?: number;
  /**
   * Median latency in ms of each model (the float model first), as deployed. Default:
   * medianLatencies on one calibration sample, every model interleaved in the same rounds.
   */
  timeModels?: (models: Model[]) => Promise<number[]>;
  limit: Limit;
  metric?: MetricName;
  /**
   * Weight-only schemes from the most aggressive up (default w4, w8). The search starts with
   * every layer at the first; the most sensitive layers move to the next one's bits, then to
   * float (w3 is stored in 4-bit slots, so it is no smaller than w4).
   */
  schemes?: Scheme[];
  /** Try structured MLP pruning (AMP) in front of quantization (default true). */
  prune?: boolean;
  /** AMP entropy budgets tried, most aggressive first (default 0.05, 0.02, 0.01, 0.005, 0.002 nats). */
  pruneBudgets?: number[];
  /** Trials at most (default 20; 30 for the latency objectives, which add the INT8 candidates). */
  maxTrials?: number;
  threads?: number;
  progress?: Progress;
  /** Called after each trial (the CLI prints it). */
  onTrial?: (t: Trial) => void;
  /** Called once the layers are ranked by sensitivity (most sensitive first). */
  onRanking?: (ranked: Sensitivity[]) => void;
  signal?: AbortSignal;
  latencyRuns?: number;
  /** Keep a result measured below the quality floor instead of throwing QualityFloorError. */
  force?: boolean;
}

/** How much one layer (or embedding table) alone costs when quantized at the search's lowest precision. */
export interface Sensitivity {
  name: string;
  /** Output SQNR (dB) vs the float model on calibration data with only this layer quantized. */
  outputSqnr: number;
}

export interface AutoResult {
  model: Model;
  report: CompressReport;
  /** The recipe that reproduces the kept model. */
  recipe: Recipe;
  /** The layers, most sensitive first. */
  ranking: Sensitivity[];
}

/** One point of the search space: MLP pruning budget, base scheme, per-layer precision. */
export interface TrialConfig {
  scheme: Scheme;
  /** Layers (exact names) at other bits than the scheme's, or in float. */
  layerBits?: Record<string, LayerBits>;
  /** AMP entropy budget of MLP pruning in front (null or absent: no pruning). */
  prune?: number | null;
}

/** The recipe of one trial: optional MLP pruning, then one scheme with per-layer precision. */
export function trialRecipe(c: TrialConfig): Recipe {
  const prune = c.prune ?? null;
  const lb = c.layerBits ?? {};
  const counts = countBits(lb);
  return {
    name: `auto-${prune !== null ? `prune${prune}-` : ''}${c.scheme}${counts.map(([b, n]) => `-${b === 'float' ? 'float' : `${b}bit`}${n}`).join('')}`,
    passes: [
      ...(prune !== null ? [{ pass: 'prune', method: 'mlp', maxIncrease: prune }] : []),
      { pass: 'quantize', scheme: c.scheme, ...(Object.keys(lb).length ? { layerBits: lb } : {}) },
      { pass: 'cleanup' },
    ],
  };
}

function countBits(lb: Record<string, LayerBits>): [LayerBits, number][] {
  const m = new Map<LayerBits, number>();
  for (const b of Object.values(lb)) m.set(b, (m.get(b) ?? 0) + 1);
  return [...m].sort((a, b) => (a[0] === 'float' ? 1 : b[0] === 'float' ? -1 : a[0] - b[0]));
}

function trialLabel(c: TrialConfig): string {
  const parts = countBits(c.layerBits ?? {}).map(([b, n]) => `${n} layer(s) ${b === 'float' ? 'float' : `${b}-bit`}`);
  return `${c.prune != null ? `prune mlp ${c.prune} + ` : ''}${c.scheme}${parts.length ? `, ${parts.join(', ')}` : ''}`;
}

/**
 * Ranks the layers and embedding tables of `model` by how much quantizing each one alone to
 * `scheme` changes the model's output on calibration data (output SQNR, lowest first): the
 * quantize pass runs once per layer with every other layer kept in float.
 */
export async function rankLayers(model: Model, scheme: Scheme, names: string[], calibration: Dataset, options: { threads?: number; signal?: AbortSignal; progress?: Progress } = {}): Promise<Sensitivity[]> {
  const out: Sensitivity[] = [];
  const progress = options.progress ?? silentProgress;
  await inStep(progress, 'auto: layer sensitivity', names.length, async (tick) => {
    for (const name of names) {
      options.signal?.throwIfAborted();
      const recipe: Recipe = { name: 'sensitivity', passes: [{ pass: 'quantize', scheme, layerBits: { [name]: weightBits(scheme), '*': 'float' }, verifySamples: 8 }] };
      const { report } = await fromRecipe(recipe).apply(model, { calibration, threads: options.threads, progress: silentProgress, signal: options.signal, floor: false });
      const s = quantizeSummary(report.passes);
      out.push({ name, outputSqnr: s?.outputs[0]?.sqnr ?? Infinity });
      tick(out.length, name);
    }
  });
  // most sensitive first; ties keep the graph order
  return out.map((s, i) => ({ s, i })).sort((a, b) => a.s.outputSqnr - b.s.outputSqnr || a.i - b.i).map((x) => x.s);
}

function quantizeSummary(passes: PassRecord[]): QuantizeSummary | undefined {
  return passes.find((p) => p.pass === 'quantize')?.summary as QuantizeSummary | undefined;
}

/**
 * Accuracy-driven search for the smallest model within the limit:
 *  1. start aggressive: MLP pruning at the largest budget plus every layer at the lowest
 *     precision (w4); when that fails, the same precision without pruning;
 *  2. rank layers and embedding tables by sensitivity (output SQNR on calibration data when
 *     that layer alone is quantized) and move the most sensitive ones to the next precision
 *     (8-bit, then float): 1, 2, 4, ... of them until the gate passes, then bisect for the
 *     fewest;
 *  3. relax pruning: in front of the smallest passing precision, the pruning budgets from the
 *     most aggressive down, until one passes; at the last budget that failed, when it missed
 *     by less than the limit allows, 1, 2, 4 more layers one step up.
 * With the latency objectives (latency, balanced), static w8a8 and dynamic INT8 are tried
 * first, each alone and then with the most MLP pruning that passes; every passing model is then
 * timed as deployed, with the float model in the same interleaved rounds, and the objective
 * picks (objective.ts).
 * Trials are judged with the gate's metric on the selection samples against the float model's
 * value there (evaluated once); the reported accuracy is measured on the held-out samples,
 * which no trial saw. The size objective keeps the smallest passing model; when none passes,
 * the closest is kept and the report says so.
 */
export async function autoCompress(model: Model, options: AutoOptions): Promise<AutoResult> {
  const started = Date.now();
  const metric = options.metric ?? 'top1';
  const objective = options.objective ?? 'size';
  const timed = objective !== 'size';
  const schemes = options.schemes ?? ['w4', 'w8'];
  for (const s of schemes) if (!isWeightOnly(s)) throw new UserError(`auto mode searches weight-only schemes (w8, w4, w3), not ${s}`);
  if (options.selection && options.selection.path === options.data.path) throw new UserError(`the selection data and the evaluation data are the same (${options.data.path}): the reported accuracy must come from other samples`);
  // the trials are judged on `selection`; the reported accuracy comes from `holdout`, which the search never saw
  const split = options.selection ? undefined : splitDataset(options.data);
  const selection = options.selection ?? split!.selection;
  const holdout = split ? split.holdout : options.data;
  const maxTrials = options.maxTrials ?? (timed ? 30 : 20);
  const budgets = options.pruneBudgets ?? [0.05, 0.02, 0.01, 0.005, 0.002];
  let canPrune = (options.prune ?? true) && budgets.length > 0;
  const progress = options.progress ?? silentProgress;
  const trials: Trial[] = [];
  interface Kept { model: Model; trial: Trial; config: TrialConfig; passes: PassRecord[]; entries: ReportEntry[] }
  let best: Kept | undefined;
  let closest: Kept | undefined;
  // latency objectives: every passing model is kept until it has been timed
  const passing: Kept[] = [];
  // trials are judged by the accuracy limit; the quality floor is checked once, on the kept model
  const ctx = { calibration: options.calibration, threads: options.threads, progress: silentProgress, signal: options.signal, floor: false as const };
  // a calibration set that does not fit the model is the user's error, not "this model cannot be
  // pruned" (which the first pruning trial would take it for): say so before any trial
  bindDataset(options.calibration, model);
  const baseline = (await evaluate(model, selection, { metrics: [metric], threads: options.threads, signal: options.signal })).metrics[metric]!;
  const { threshold } = checkLimit(metric, baseline, baseline, options.limit);
  const higher = GATE_METRIC_INFO[metric].direction === 'higher';
  // pruning depends only on the budget: each budget is pruned once and reused
  const pruned = new Map<number, { model: Model; passes: PassRecord[]; entries: ReportEntry[] }>();
  const prunedModel = async (budget: number) => {
    if (!pruned.has(budget)) {
      const r = await fromRecipe({ name: 'prune', passes: [{ pass: 'prune', method: 'mlp', maxIncrease: budget }] }).apply(model, ctx);
      pruned.set(budget, { model: r.model, passes: r.report.passes, entries: r.report.entries });
    }
    return pruned.get(budget)!;
  };
  const tried = new Map<string, Trial>();
  const summaries = new Map<string, PassRecord[]>();
  const key = (c: TrialConfig): string => JSON.stringify([c.prune ?? null, c.scheme, Object.entries(c.layerBits ?? {}).sort()]);
  const full = (): boolean => trials.length >= maxTrials;

  const tryOne = async (c: TrialConfig): Promise<Trial> => {
    options.signal?.throwIfAborted();
    const seen = tried.get(key(c));
    if (seen) return seen;
    const recipe = trialRecipe(c);
    const front = c.prune != null ? await prunedModel(c.prune) : { model, passes: [], entries: [] };
    const rest = { ...recipe, passes: recipe.passes.filter((p) => p.pass !== 'prune') };
    const { model: out, report } = await fromRecipe(rest).apply(front.model, ctx);
    const accuracy = (await evaluate(out, selection, { metrics: [metric], threads: options.threads, signal: options.signal })).metrics[metric]!;
    const check = checkLimit(metric, baseline, accuracy, options.limit);
    const trial: Trial = {
      index: trials.length + 1,
      label: trialLabel(c),
      scheme: c.scheme,
      layerBits: c.layerBits ?? {},
      prune: c.prune ?? null,
      bytes: modelToBytes(out).byteLength,
      accuracy,
      pass: check.pass,
      message: check.message,
    };
    trials.push(trial);
    tried.set(key(c), trial);
    summaries.set(key(c), report.passes);
    options.onTrial?.(trial);
    const kept: Kept = { model: out, trial, config: c, passes: [...front.passes, ...report.passes], entries: [...front.entries, ...report.entries] };
    if (!closest || (higher ? accuracy > closest.trial.accuracy! : accuracy < closest.trial.accuracy!)) closest = kept;
    if (trial.pass && (!best || trial.bytes < best.trial.bytes)) best = kept;
    if (trial.pass && timed) passing.push(kept);
    return trial;
  };
  /** Like tryOne, but a model that MLP pruning cannot handle turns pruning off (null). */
  const tryPruned = async (c: TrialConfig): Promise<Trial | null> => {
    try {
      return await tryOne(c);
    } catch (e) {
      if (!isUserError(e)) throw e;
      canPrune = false;
      return null;
    }
  };

  // 0. latency objectives: the INT8 formats onnxruntime runs with integer kernels (static
  //    w8a8, dynamic), each alone and then with the most MLP pruning that passes
  if (timed) {
    // the pruning budgets still worth trying: at 8 bits pruning's accuracy cost dominates the
    // rounding's (gpt_moby: 39.84% with w8a8, 39.89% with dynamic at 0.05 nats), so a budget
    // that failed in front of one INT8 format is not tried in front of the other
    let from = 0;
    for (const scheme of INT8_SCHEMES) {
      if (full()) break;
      if (!(await tryOne({ scheme })).pass) continue;
      let b = from;
      for (; canPrune && b < budgets.length && !full(); b++) {
        const t = await tryPruned({ scheme, prune: budgets[b]! });
        if (t === null || t.pass) break;
      }
      from = b;
    }
  }

  // 1. the most aggressive point, then (when it fails) the same precision without pruning
  const low = schemes[0]!;
  const first = canPrune ? await tryPruned({ scheme: low, prune: budgets[0]! }) : null;
  const plain = first?.pass ? first : await tryOne({ scheme: low });

  // 2. precision: the most sensitive layers one step up the ladder (w4 -> 8-bit -> float)
  let ranking: Sensitivity[] = [];
  const rank = async (): Promise<string[]> => {
    if (ranking.length === 0) {
      const q = quantizeSummary(summaries.get(key({ scheme: low })) ?? [])!;
      const names = [...q.layers.map((l) => l.name), ...q.embeddings.map((e) => e.name)];
      ranking = await rankLayers(model, low, names, options.calibration, { threads: options.threads, signal: options.signal, progress });
      options.onRanking?.(ranking);
    }
    return ranking.map((r) => r.name);
  };
  const ladder: LayerBits[] = [...schemes.slice(1).map(weightBits), 'float'];
  /** `base` with the k most sensitive layers at `up` bits (every layer: the next scheme itself, or nothing for float). */
  const promote = (order: string[], base: Scheme, up: LayerBits, k: number): TrialConfig | undefined => {
    if (k < order.length) return { scheme: base, layerBits: Object.fromEntries(order.slice(0, k).map((n) => [n, up])) };
    const next = schemes.find((x) => weightBits(x) === up);
    return next ? { scheme: next } : undefined;
  };
  let chosen: { config: TrialConfig; up: number; k: number } | undefined = plain.pass && plain.prune === null ? { config: { scheme: low }, up: 0, k: 0 } : undefined;
  if (!plain.pass) {
    const order = await rank();
    let base: Scheme = low;
    for (const [u, up] of ladder.entries()) {
      if (full()) break;
      let lo = 0;
      let hi: number | undefined;
      // 1, 2, 4, ... layers up, then every layer (the next scheme)
      for (let k = 1; !full(); k = Math.min(k * 2, order.length)) {
        const c = promote(order, base, up, k);
        if (c && (await tryOne(c)).pass) {
          hi = k;
          break;
        }
        if (k === order.length) break;
        lo = k;
      }
      if (hi === undefined) {
        const next = schemes.find((x) => weightBits(x) === up);
        if (!next) break;
        base = next;
        continue;
      }
      // bisect for the fewest
      while (hi - lo > 1 && !full()) {
        const mid = Math.floor((lo + hi) / 2);
        if ((await tryOne(promote(order, base, up, mid)!)).pass) hi = mid;
        else lo = mid;
      }
      chosen = hi < order.length ? { config: promote(order, base, up, hi)!, up: u, k: hi } : { config: promote(order, base, up, hi)!, up: u + 1, k: 0 };
      break;
    }
  }

  // 3. pruning relaxed step by step in front of the chosen precision; then, at the last
  //    budget that failed, a few more layers one step up, while smaller than the best
  if (chosen && canPrune) {
    let failed: Trial | undefined;
    for (const budget of budgets) {
      if (full()) break;
      const t = await tryPruned({ ...chosen.config, prune: budget });
      if (t === null) break;
      if (t.pass) break;
      failed = t;
    }
    const up = ladder[chosen.up];
    // only when that trial missed by less than the limit allows (more precision will not win back more)
    const near = failed !== undefined && Math.abs(failed.accuracy! - threshold) <= Math.abs(baseline - threshold);
    if (canPrune && failed !== undefined && near && up !== undefined && best) {
      const order = await rank();
      const base = chosen.config.scheme;
      for (let extra = 1; extra <= 4 && chosen.k + extra < order.length && !full(); extra *= 2) {
        const c = promote(order, base, up, chosen.k + extra)!;
        const t = await tryOne({ ...c, prune: failed.prune });
        if (t.pass || t.bytes >= best.trial.bytes) break;
      }
    }
  }

  // the objective picks among the passing trials; latency objectives time them all, with the
  // float model, in the same interleaved rounds
  let kept = best ?? closest!;
  let reason = best ? 'the smallest passing model' : 'no trial passed: the closest';
  let floatMs: number | null = null;
  const searchRuns = options.searchLatencyRuns ?? 20;
  const margin = options.latencyMargin ?? 0.05;
  if (timed && passing.length > 0) {
    await inStep(progress, `auto: latency of ${passing.length} passing model(s) and float`, 1, async (tick) => {
      const time = options.timeModels ?? ((ms: Model[]) => timeAsDeployed(ms, options.calibration, searchRuns, options.threads, options.signal));
      const ms = await time([model, ...passing.map((k) => k.model)]);
      floatMs = ms[0]!;
      passing.forEach((k, i) => (k.trial.latencyMs = ms[i + 1]!));
      tick(1);
    });
    const choice = chooseByObjective(objective, passing.map((k) => ({ index: k.trial.index, bytes: k.trial.bytes, latencyMs: k.trial.latencyMs! })), floatMs!, margin)!;
    kept = passing.find((k) => k.trial.index === choice.index)!;
    reason = choice.reason;
    if (objective === 'latency' && !choice.fasterThanFloat) kept.entries.push({ pass: 'auto', level: 'warning', message: `no passing model ran faster than float by more than ${margin * 100}% in the search's timing` });
  }
  const quality = await checkQuality(model, kept.model, options.calibration, { threads: options.threads, signal: options.signal, force: options.force, floor: floorFor(kept.passes) });
  if (quality.verdict === 'below-floor' && !quality.forced) throw new QualityFloorError(quality);
  const warning = qualityWarning(quality);
  if (warning) kept.entries.push({ pass: 'quality', level: 'warning', message: warning });
  const m = await measure(model, kept.model, { calibration: options.calibration, data: holdout, metric, limit: options.limit, threads: options.threads, signal: options.signal, latencyRuns: options.latencyRuns, progress: options.progress });
  const recipe = trialRecipe(kept.config);
  return {
    model: kept.model,
    recipe,
    ranking,
    report: {
      input: model.sourcePath ?? '<memory>',
      output: null,
      recipe: { name: recipe.name!, passes: recipe.passes.map((p) => p.pass) },
      seconds: (Date.now() - started) / 1000,
      ...m,
      quality,
      ...layerData(kept.passes),
      passes: kept.passes,
      entries: kept.entries,
      trials,
      chosen: best ? kept.trial.index : null,
      selection: {
        objective,
        reason,
        floatMs,
        latencyRuns: timed ? searchRuns : null,
        margin: timed ? margin : null,
        accuracy: kept.trial.accuracy === null ? null : { metric, before: baseline, after: kept.trial.accuracy, samples: selection.size, pass: kept.trial.pass },
        data: selection.path,
        indices: split ? split.selectionIndices : [...Array(selection.size).keys()],
        holdout: { data: holdout.path, indices: split ? split.holdoutIndices : [...Array(holdout.size).keys()] },
      },
      sensitivity: ranking,
    },
  };
}

/** The formats with integer kernels in onnxruntime on CPU (faster than float on BERT-sized layers). */
const INT8_SCHEMES: Scheme[] = ['w8a8', 'dynamic'];

/** Median latency of each model on one calibration sample, interleaved rounds (medianLatencies). */
async function timeAsDeployed(models: Model[], calibration: Dataset, runs: number, threads?: number, signal?: AbortSignal): Promise<number[]> {
  const batch = batches(bindDataset(calibration, models[0]!), 1).next().value!;
  return medianLatencies(models, batch.feeds, { rounds: runs, threads, signal });
}
