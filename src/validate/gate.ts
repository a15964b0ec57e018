import { UserError, isUserError } from '../errors.js';
import { type BoundDataset, batchSamples, batches, bindDataset, modelInputs } from '../data/bind.js';
import { asDataset, type DatasetInput } from '../data/as-dataset.js';
import type { Dataset } from '../data/dataset.js';
import { describe } from '../ir/array-tensor.js';
import { type DataType, dtypeName } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Dim } from '../ir/value.js';
import { inStep, type Progress, silentProgress } from '../progress.js';
import { Session } from '../runtime/session.js';
import { ComparisonAccumulator, type ComparisonMetricName, isComparisonMetricName, labelsFitOutput } from './comparison.js';
import { GATE_METRICS, GATE_METRIC_INFO, type GateMetricName, isGateMetricName } from './gate-metrics.js';
import { type Limit, type Limits, checkLimit, resolveLimits } from './limits.js';
import { type LmMeasurement, type LmOptions, type LmSetup, isLmMetricName, prepareLmMetrics } from './lm-metrics.js';
import { MetricAccumulator, type MetricName, isMetricName } from './metrics.js';

export interface GateOptions {
  baseline: Model;
  candidate: Model;
  /** Needed by every metric but the language-model ones, which can read `lm.tokens` instead. */
  dataset?: DatasetInput;
  metrics: readonly GateMetricName[];
  /** One limit for every metric, or one per metric; metrics without a limit are reported only. */
  limits: Limits;
  batchSize?: number;
  threads?: number;
  /** Which model output is scored and compared (default: the baseline's first). */
  output?: string;
  /** Token stream, window and generation settings of the language-model metrics (stream-*, gen-*, topk-agreement). */
  lm?: LmOptions;
  progress?: Progress;
  signal?: AbortSignal;
}

export interface GateMetricResult {
  metric: GateMetricName;
  direction: 'higher' | 'lower';
  /** 'labels': both models scored against the labels; 'baseline': the candidate against the baseline's outputs. */
  against: 'labels' | 'baseline';
  /** The baseline's value; for metrics against the baseline, the ideal (1, or +Infinity for sqnr). */
  baseline: number;
  candidate: number;
  /** candidate − baseline. */
  delta: number;
  /** Undefined when the metric is reported but not checked. */
  limit: Limit | undefined;
  /** The bound the candidate was held to (≥ for higher-is-better metrics, ≤ for lower). */
  threshold: number | undefined;
  pass: boolean;
  message: string;
}

export interface GateResult {
  /** True when every checked metric is within its limit. */
  pass: boolean;
  metrics: GateMetricResult[];
  samples: number;
  /** Positions compared (samples for a classifier, tokens for a language model; padding left out). */
  positions: number;
  output: string;
  /** The dataset's path, or the token file when only language-model metrics ran. */
  dataset: string;
  baseline: string | undefined;
  candidate: string | undefined;
  seconds: number;
  /** What the language-model metrics ran on, when any was asked for. */
  lm?: LmSetup;
}

/**
 * Runs baseline and candidate over the same batches of the dataset in one streaming pass and
 * checks each metric against its limit. Label metrics (top1, nll, perplexity) score both
 * models against the labels; agreement, cosine, sqnr and kl score the candidate against the
 * baseline's outputs. The language-model metrics (lm-metrics.ts) run each model as a decoder
 * over a token stream and through greedy generation; they need neither labels nor the same
 * graph inputs (a KV-cache export can be compared with a no-cache one). Bad input (models with
 * different inputs or outputs, data that fits neither, a label metric on unlabelled data, a
 * limit that does not suit its metric) throws a UserError before any model runs.
 */
export async function gate(options: GateOptions): Promise<GateResult> {
  const started = Date.now();
  const { baseline, candidate } = options;
  const dataset = options.dataset === undefined ? undefined : asDataset(options.dataset);
  const metrics = [...new Set(options.metrics)];
  if (metrics.length === 0) throw new UserError('the gate needs at least one metric');
  const unknown = metrics.find((m) => !isGateMetricName(m));
  if (unknown) throw new UserError(`unknown metric '${unknown}' (choose from ${GATE_METRICS.join(', ')})`);
  const limits = resolveLimits(metrics, options.limits);

  const names = { baseline: roleName('baseline', baseline), candidate: roleName('candidate', candidate) };
  const labelMetrics = metrics.filter(isMetricName);
  const comparisonMetrics = metrics.filter(isComparisonMetricName);
  const lmMetrics = metrics.filter(isLmMetricName);
  const runLm =
    lmMetrics.length > 0
      ? prepareLmMetrics(
          [
            { model: baseline, who: names.baseline },
            { model: candidate, who: names.candidate },
          ],
          lmMetrics,
          options.lm ?? {},
          dataset,
        )
      : undefined;
  const datasetMetrics = [...labelMetrics, ...comparisonMetrics];
  const output = options.output ?? baseline.graph.outputs[0]?.name;
  if (!output || !baseline.graph.outputs.some((v) => v.name === output)) {
    throw new UserError(`the ${names.baseline} has no output named '${options.output ?? ''}'`);
  }
  if (datasetMetrics.length === 0) return finish(await runLmOnly(runLm!, options));
  if (!dataset) throw new UserError(`metric ${datasetMetrics[0]} runs the models over a dataset: give one (--data)`);
  checkSameInterface(baseline, candidate, names);

  const boundBaseline = bind(dataset, baseline, names.baseline);
  // the check reads every sample: skip the second read when the candidate's inputs are the same
  const sameInputs = JSON.stringify(modelInputs(baseline)) === JSON.stringify(modelInputs(candidate));
  const boundCandidate = sameInputs ? boundBaseline : bind(dataset, candidate, names.candidate);
  if (labelMetrics.length > 0 && !boundBaseline.hasLabels) {
    throw new UserError(`dataset ${dataset.path} has no labels (label.pb per sample, or a 'label' array), which metric ${labelMetrics[0]} needs; agreement, cosine, sqnr and kl compare with the baseline and need none`);
  }

  const progress = options.progress ?? silentProgress;
  const accBaseline = new MetricAccumulator();
  const accCandidate = new MetricAccumulator();
  const comparison = new ComparisonAccumulator();
  const sessions: Session[] = [];
  try {
    const sb = await Session.create(baseline, { threads: options.threads });
    sessions.push(sb);
    const sc = await Session.create(candidate, { threads: options.threads });
    sessions.push(sc);
    await inStep(progress, 'gate', dataset.size, async (tick) => {
      const batchSize = Math.min(options.batchSize ?? 32, boundCandidate.maxBatch);
      for (const batch of batches(boundBaseline, batchSize)) {
        options.signal?.throwIfAborted();
        const b = (await sb.run(batch.feeds, [output]))[output]!;
        const c = (await sc.run(batch.feeds, [output]))[output]!;
        if (labelMetrics.length > 0) {
          accBaseline.add(b, batch.label!, output, batchSamples(dataset, batch));
          accCandidate.add(c, batch.label!, output, batchSamples(dataset, batch));
        }
        if (comparisonMetrics.length > 0) {
          if (b.dtype !== c.dtype) throw new UserError(`output '${output}' is ${describe(b)} in the ${names.baseline} but ${describe(c)} in the ${names.candidate}`);
          const mask = batch.label && labelsFitOutput(batch.label.dims, b.dims) ? batch.label : undefined;
          comparison.add(b, c, output, mask);
        }
        tick(batch.start + batch.count);
      }
    });
  } finally {
    for (const s of sessions) await s.release();
  }
  const lm = runLm ? await runLm(options.threads, options.signal) : undefined;
  if (labelMetrics.length > 0 && accCandidate.count === 0) throw new UserError(`dataset ${dataset.path} has no labelled positions to score`);
  if (comparisonMetrics.length > 0 && comparison.count === 0) throw new UserError(`dataset ${dataset.path} gave no output positions to compare`);

  const base: Record<string, number> = { ...accBaseline.result(labelMetrics as MetricName[]), ...lm?.values[0] };
  const cand: Record<string, number> = { ...accCandidate.result(labelMetrics as MetricName[]), ...comparison.result(comparisonMetrics as ComparisonMetricName[]), ...lm?.values[1] };
  for (const m of comparisonMetrics) base[m] = GATE_METRIC_INFO[m].ideal!;
  return finish({ base, cand, samples: dataset.size, positions: Math.max(accCandidate.count, comparison.count), output, dataset: dataset.path, lm: lm?.setup });

  function finish(r: Measured): GateResult {
    return {
      ...checkAll(metrics, limits, r.base, r.cand),
      samples: r.samples,
      positions: r.positions,
      output: r.output,
      dataset: r.dataset,
      baseline: baseline.sourcePath,
      candidate: candidate.sourcePath,
      seconds: (Date.now() - started) / 1000,
      ...(r.lm ? { lm: r.lm } : {}),
    };
  }
}

/** The values measured for each model, before the limits are checked. */
interface Measured {
  base: Record<string, number>;
  cand: Record<string, number>;
  samples: number;
  positions: number;
  output: string;
  dataset: string;
  lm?: LmSetup;
}

async function runLmOnly(run: (threads: number | undefined, signal?: AbortSignal) => Promise<LmMeasurement>, options: GateOptions): Promise<Measured> {
  const progress = options.progress ?? silentProgress;
  let lm: LmMeasurement | undefined;
  await inStep(progress, 'gate', 1, async (tick) => {
    lm = await run(options.threads, options.signal);
    tick(1);
  });
  const { values, setup } = lm!;
  return { base: values[0]!, cand: values[1]!, samples: 0, positions: setup.scoredTokens ?? 0, output: setup.output, dataset: setup.source, lm: setup };
}

function checkAll(metrics: readonly GateMetricName[], limits: Partial<Record<GateMetricName, Limit>>, base: Record<string, number>, cand: Record<string, number>): { pass: boolean; metrics: GateMetricResult[] } {
  const results = metrics.map((metric): GateMetricResult => {
    const info = GATE_METRIC_INFO[metric];
    const b = base[metric]!;
    const c = cand[metric]!;
    const limit = limits[metric];
    const check = limit ? checkLimit(metric, b, c, limit) : undefined;
    return {
      metric,
      direction: info.direction,
      against: info.against,
      baseline: b,
      candidate: c,
      delta: c - b,
      limit,
      threshold: check?.threshold,
      pass: check?.pass ?? true,
      message: check?.message ?? `${metric} is reported, not checked (no limit)`,
    };
  });
  return { pass: results.every((r) => r.pass), metrics: results };
}

function roleName(role: 'baseline' | 'candidate', model: Model): string {
  return model.sourcePath ? `${role} ${model.sourcePath}` : role;
}

/** Binds the dataset to one model; a misfit names the model as well as the sample. */
function bind(dataset: Dataset, model: Model, name: string): BoundDataset {
  try {
    return bindDataset(dataset, model);
  } catch (e) {
    if (isUserError(e)) throw new UserError(`${e.message} (checking the data against the ${name})`, { cause: e });
    throw e;
  }
}

/** Baseline and candidate must take the same inputs and give the same outputs. */
export function checkSameInterface(baseline: Model, candidate: Model, names = { baseline: roleName('baseline', baseline), candidate: roleName('candidate', candidate) }): void {
  const differ = (what: string): UserError => new UserError(`the ${names.baseline} and the ${names.candidate} have different ${what}`);
  const inputsB = modelInputs(baseline);
  const inputsC = modelInputs(candidate);
  for (const x of inputsB) {
    const y = inputsC.find((i) => i.name === x.name);
    if (!y) throw differ(`inputs: the candidate has no input '${x.name}'`);
    if (x.dtype !== y.dtype || !shapesCompatible(x.shape, y.shape)) {
      throw differ(`inputs: '${x.name}' is ${describeValue(x)} in the baseline but ${describeValue(y)} in the candidate`);
    }
  }
  const extra = inputsC.find((y) => !inputsB.some((x) => x.name === y.name));
  if (extra) throw differ(`inputs: the candidate has an input '${extra.name}' that the baseline does not`);
  const outputsB = baseline.graph.outputs;
  const outputsC = candidate.graph.outputs;
  for (const x of outputsB) {
    const y = outputsC.find((v) => v.name === x.name);
    if (!y) throw differ(`outputs: the candidate has no output '${x.name}'`);
    const shapeX = x.type?.kind === 'tensor' ? x.type.shape : undefined;
    const shapeY = y.type?.kind === 'tensor' ? y.type.shape : undefined;
    if ((x.dtype !== undefined && y.dtype !== undefined && x.dtype !== y.dtype) || !shapesCompatible(shapeX, shapeY)) {
      throw differ(`outputs: '${x.name}' is ${describeValue({ dtype: x.dtype, shape: shapeX })} in the baseline but ${describeValue({ dtype: y.dtype, shape: shapeY })} in the candidate`);
    }
  }
  const extraOut = outputsC.find((y) => !outputsB.some((x) => x.name === y.name));
  if (extraOut) throw differ(`outputs: the candidate has an output '${extraOut.name}' that the baseline does not`);
}

/** Unknown shapes and symbolic dims fit anything; ranks and fixed sizes must agree. */
function shapesCompatible(a: Dim[] | undefined, b: Dim[] | undefined): boolean {
  if (!a || !b) return true;
  return a.length === b.length && a.every((d, i) => typeof d !== 'number' || typeof b[i] !== 'number' || d === b[i]);
}

function describeValue(v: { dtype: DataType | undefined; shape: Dim[] | undefined }): string {
  if (v.dtype === undefined) return 'of unknown type';
  return v.shape ? describe({ dtype: v.dtype, dims: v.shape }) : `${dtypeName(v.dtype)} of unknown shape`;
}
