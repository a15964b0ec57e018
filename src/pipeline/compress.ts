import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { asDataset, type DatasetInput } from '../data/as-dataset.js';
import type { Model } from '../ir/model.js';
import { modelToBytes } from '../onnx/save.js';
import { type Progress, silentProgress } from '../progress.js';
import { type CompressReport, gateCheck, layerData } from '../report/compress-report.js';
import { medianLatencies } from '../runtime/latency.js';
import { DEFAULT_DECODE_CACHE, measureDecodeLatency } from './decode-latency.js';
import { gate } from '../validate/gate.js';
import type { Limit } from '../validate/limits.js';
import type { MetricName } from '../validate/metrics.js';
import type { Pipeline } from './pipeline.js';

export interface CompressOptions {
  /** Calibration samples: a Dataset or a dataset path. */
  calibration: DatasetInput;
  /** Labelled evaluation data (a Dataset or a path): accuracy before and after. */
  data?: DatasetInput;
  /** Accuracy metric on `data` (default top1). */
  metric?: MetricName;
  /** Limit on the accuracy metric (the gate); reported only when absent. */
  limit?: Limit;
  threads?: number;
  progress?: Progress;
  signal?: AbortSignal;
  /** Timed runs per model for latency (default 20; 0: no latency). */
  latencyRuns?: number;
  /** Decoders with a key/value cache: cached tokens before the timed decode step (default 32). */
  decodeCache?: number;
  /** Keep a result measured below the quality floor instead of throwing QualityFloorError (pipeline's `force`). */
  force?: boolean;
}

export interface CompressResult {
  model: Model;
  report: CompressReport;
}

/**
 * Runs a pipeline on a copy of `model`, then measures the original and the result in the same
 * process: serialized size, onnxruntime latency, agreement and SQNR against the original on
 * calibration data, and accuracy on `data` when given.
 */
export async function compressModel(model: Model, p: Pipeline, recipeName: string, options: CompressOptions): Promise<CompressResult> {
  const started = Date.now();
  options = { ...options, calibration: asDataset(options.calibration), data: options.data === undefined ? undefined : asDataset(options.data) };
  const { model: out, report } = await p.apply(model, { calibration: options.calibration, threads: options.threads, progress: options.progress ?? silentProgress, signal: options.signal, force: options.force });
  const m = await measure(model, out, options);
  return {
    model: out,
    report: {
      input: model.sourcePath ?? '<memory>',
      output: null,
      recipe: { name: recipeName, passes: p.passes.map((x) => x.name) },
      seconds: (Date.now() - started) / 1000,
      ...m,
      quality: report.quality,
      ...layerData(report.passes),
      passes: report.passes,
      entries: report.entries,
      trials: [],
      chosen: null,
    },
  };
}

/** Size, latency, check and accuracy of a compressed model against the original. */
export async function measure(original: Model, compressed: Model, options: CompressOptions): Promise<Pick<CompressReport, 'size' | 'latency' | 'decodeLatency' | 'check' | 'accuracy'>> {
  const calibration = asDataset(options.calibration);
  const data = options.data === undefined ? undefined : asDataset(options.data);
  const size = { before: modelToBytes(original).byteLength, after: modelToBytes(compressed).byteLength };
  const runs = options.latencyRuns ?? 20;
  const latency = runs > 0 ? await measureLatency(original, compressed, calibration, runs, options.threads, options.signal) : null;
  const decodeLatency = runs > 0 ? await measureDecodeLatency(original, compressed, options.decodeCache ?? DEFAULT_DECODE_CACHE, runs, options.threads, options.signal) : null;
  const checkGate = await gate({ baseline: original, candidate: compressed, dataset: calibration, metrics: ['agreement', 'sqnr', 'cosine'], limits: { agreement: { kind: 'min', value: 0 }, cosine: { kind: 'min', value: -1 }, sqnr: { kind: 'min', value: -1e30 } }, threads: options.threads, signal: options.signal });
  const check = gateCheck(checkGate);
  let accuracy: CompressReport['accuracy'] = null;
  if (data) {
    const metric = options.metric ?? 'top1';
    const g = await gate({ baseline: original, candidate: compressed, dataset: data, metrics: [metric], limits: { [metric]: options.limit ?? REPORT_ONLY }, threads: options.threads, progress: options.progress, signal: options.signal });
    const r = g.metrics[0]!;
    accuracy = { metric, before: r.baseline, after: r.candidate, samples: g.samples, limit: options.limit ? limitText(options.limit) : null, pass: options.limit ? r.pass : null };
  }
  return { size, latency, decodeLatency, check, accuracy };
}

/** A limit nothing exceeds: the gate's figures without a verdict. */
const REPORT_ONLY: Limit = { kind: 'max-drop', value: 1e30, relative: false };

export function limitText(l: Limit): string {
  return l.kind === 'max-drop' ? `max drop ${l.relative ? `${l.value * 100}%` : l.value}` : `${l.kind} ${l.value}`;
}

/**
 * Median latency of one batch of calibration data for both models (medianLatencies: interleaved
 * rounds, onnxruntime's default thread spinning, each timed run after an untimed one).
 */
export async function measureLatency(a: Model, b: Model, data: Dataset, runs: number, threads?: number, signal?: AbortSignal): Promise<NonNullable<CompressReport['latency']>> {
  const batch = batches(bindDataset(data, a), 1).next().value!;
  const [beforeMs, afterMs] = await medianLatencies([a, b], batch.feeds, { rounds: runs, threads, signal });
  return { beforeMs: beforeMs!, afterMs: afterMs!, runs, batch: batch.count };
}

