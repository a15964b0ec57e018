import type { Dataset } from '../data/dataset.js';
import { isUserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { modelToBytes } from '../onnx/save.js';
import { type Progress, silentProgress } from '../progress.js';
import type { Scheme } from '../quantize/scheme.js';
import { type CompressReport, type Trial, layerData } from '../report/compress-report.js';
import { measure } from '../pipeline/compress.js';
import { fromRecipe, type Recipe } from '../pipeline/recipe.js';
import { gate } from '../validate/gate.js';
import type { Limit } from '../validate/limits.js';
import type { MetricName } from '../validate/metrics.js';

export interface AutoOptions {
  calibration: Dataset;
  data: Dataset;
  limit: Limit;
  metric?: MetricName;
  /** Schemes tried first, most aggressive first (default w4, w8, w8a8; w3 is stored in 4-bit slots, so it is no smaller than w4). */
  schemes?: Scheme[];
  /** Try structured MLP pruning (AMP) in front of the best quantization (default true). */
  prune?: boolean;
  /** AMP entropy budgets tried, most aggressive first (default 0.05, 0.02, 0.01, 0.005, 0.002 nats). */
  pruneBudgets?: number[];
  /** Trials at most (default 16). */
  maxTrials?: number;
  threads?: number;
  progress?: Progress;
  /** Called after each trial (the CLI prints it). */
  onTrial?: (t: Trial) => void;
  signal?: AbortSignal;
  latencyRuns?: number;
}

export interface AutoResult {
  model: Model;
  report: CompressReport;
  /** The recipe that reproduces the kept model. */
  recipe: Recipe;
}

/** The recipe of one trial: one scheme, sensitive layers kept in float. */
export function trialRecipe(scheme: Scheme, exclude: string[], embeddings = true, prune: number | null = null): Recipe {
  return {
    name: `auto-${prune !== null ? `prune${prune}-` : ''}${scheme}${exclude.length ? `-float${exclude.length}` : ''}${embeddings ? '' : '-float-embeddings'}`,
    passes: [
      ...(prune !== null ? [{ pass: 'prune', method: 'mlp', maxIncrease: prune }] : []),
      { pass: 'quantize', scheme, ...(exclude.length ? { exclude } : {}), ...(embeddings ? {} : { embeddings: false }) },
      { pass: 'cleanup' },
    ],
  };
}

/**
 * Accuracy-driven search. First each scheme as is, most aggressive first (4-bit weights
 * everywhere), until one passes; then, for the schemes that failed, the layers with the lowest
 * output SQNR in the quantize summary (the most sensitive) are kept in float, doubling their
 * number each trial, while the model stays smaller than the best passing one. The smallest passing model is kept; when none passes, the closest (highest
 * accuracy) is kept and the report says so.
 */
export async function autoCompress(model: Model, options: AutoOptions): Promise<AutoResult> {
  const started = Date.now();
  const metric = options.metric ?? 'top1';
  const schemes = options.schemes ?? ['w4', 'w8', 'w8a8'];
  const maxTrials = options.maxTrials ?? 16;
  const trials: Trial[] = [];
  interface Kept { model: Model; trial: Trial; recipe: Recipe; passes: CompressReport['passes']; entries: CompressReport['entries'] }
  let best: Kept | undefined;
  let closest: Kept | undefined;
  const ranked = new Map<Scheme, string[]>();
  const embeddingCount = new Map<Scheme, number>();
  const tryOne = async (scheme: Scheme, exclude: string[], embeddings = true, prune: number | null = null): Promise<Trial> => {
    options.signal?.throwIfAborted();
    const recipe = trialRecipe(scheme, exclude, embeddings, prune);
    const { model: out, report } = await fromRecipe(recipe).apply(model, { calibration: options.calibration, threads: options.threads, progress: silentProgress, signal: options.signal });
    const g = await gate({ baseline: model, candidate: out, dataset: options.data, metrics: [metric], limits: { [metric]: options.limit }, threads: options.threads, signal: options.signal });
    const r = g.metrics[0]!;
    const trial: Trial = {
      index: trials.length + 1,
      label: `${prune !== null ? `prune mlp ${prune} + ` : ''}${scheme}${exclude.length ? `, ${exclude.length} layer(s) float` : ''}${embeddings ? '' : ', embeddings float'}`,
      scheme,
      exclude,
      embeddings,
      prune,
      bytes: modelToBytes(out).byteLength,
      accuracy: r.candidate,
      pass: r.pass,
      message: r.message,
    };
    trials.push(trial);
    options.onTrial?.(trial);
    const kept: Kept = { model: out, trial, recipe, passes: report.passes, entries: report.entries };
    if (!closest || r.candidate > closest.trial.accuracy!) closest = kept;
    if (r.pass && (!best || trial.bytes < best.trial.bytes)) best = kept;
    if (!ranked.has(scheme)) {
      const q = report.passes.find((x) => x.pass === 'quantize')?.summary as { embeddings?: unknown[] } | undefined;
      embeddingCount.set(scheme, q?.embeddings?.length ?? 0);
      const layers = layerData(report.passes).layers.filter((l) => l.sqnr !== null);
      ranked.set(scheme, layers.sort((a, b) => a.sqnr! - b.sqnr!).map((l) => l.name));
    }
    return trial;
  };
  // 1. each scheme as is, most aggressive first, until one passes (the later ones are larger)
  const failed: Scheme[] = [];
  for (const scheme of schemes) {
    if (trials.length >= maxTrials) break;
    const t = await tryOne(scheme, []);
    if (t.pass) break;
    failed.push(scheme);
  }
  // 2. the schemes that failed, relaxed step by step: the most sensitive layers (lowest output
  //    SQNR in the first trial's summary) kept in float, 1, 2, 4, ... of them, each count
  //    with and without the embedding tables in float (when the model has any), while the
  //    model stays smaller than the best passing one
  for (const scheme of failed) {
    const order = ranked.get(scheme) ?? [];
    const hasEmbeddings = embeddingCount.get(scheme)! > 0;
    let stop = false;
    for (let k = 0; k < order.length && !stop; k = k === 0 ? 1 : k * 2) {
      for (const embeddings of hasEmbeddings ? [true, false] : [true]) {
        if (k === 0 && embeddings) continue; // the plain trial of phase 1
        if (trials.length >= maxTrials) {
          stop = true;
          break;
        }
        const t = await tryOne(scheme, order.slice(0, k), embeddings);
        if (t.pass || (best && t.bytes >= best.trial.bytes)) {
          stop = true;
          break;
        }
      }
    }
  }
  // 3. pruning in front of the best passing point: AMP (MLP widths searched per MLP under an
  //    entropy budget), most aggressive budget first, relaxed until the gate passes
  if (best && (options.prune ?? true)) {
    const base = best.trial;
    for (const budget of options.pruneBudgets ?? [0.05, 0.02, 0.01, 0.005, 0.002]) {
      if (trials.length >= maxTrials) break;
      let t: Trial;
      try {
        t = await tryOne(base.scheme as Scheme, base.exclude, base.embeddings, budget);
      } catch (e) {
        // a model discovery cannot prune (no MLP blocks found): pruning is left out
        if (isUserError(e)) break;
        throw e;
      }
      if (t.pass) break;
    }
  }
  const kept = best ?? closest!;
  const m = await measure(model, kept.model, { calibration: options.calibration, data: options.data, metric, limit: options.limit, threads: options.threads, signal: options.signal, latencyRuns: options.latencyRuns, progress: options.progress });
  return {
    model: kept.model,
    recipe: kept.recipe,
    report: {
      input: model.sourcePath ?? '<memory>',
      output: null,
      recipe: { name: kept.recipe.name!, passes: kept.recipe.passes.map((p) => p.pass) },
      seconds: (Date.now() - started) / 1000,
      ...m,
      ...layerData(kept.passes),
      passes: kept.passes,
      entries: kept.entries,
      trials,
      chosen: best ? best.trial.index : null,
    },
  };
}
