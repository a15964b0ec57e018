import { type Batch, type BoundDataset, batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import { float16BitsToFloat } from '../ir/float-bits.js';
import type { Model } from '../ir/model.js';
import { elementCount } from '../ir/tensor.js';
import { inStep, type Progress, silentProgress } from '../progress.js';
import { Session, type SessionOptions } from '../runtime/session.js';
import { defaultSegmentBytes, planSegments, runBlockwise } from '../runtime/block-runner.js';
import { collectGarbage } from '../runtime/collect-garbage.js';
import { cacheFile, cacheKey, defaultCacheDir, readCache, writeCache } from './cache.js';
import { hashDataset, hashModel } from './hash.js';
import { MinMaxObserver } from './minmax.js';
import { NonFiniteError } from './non-finite.js';
import { type Observer, type ObserverSpec, type ResolvedObserverSpec, type TensorRange, createObserver, resolveObserverSpec } from './observer.js';
import { planExposure } from './plan.js';
import { type TensorStatOutputs, withStatistics } from './stats-graph.js';

export interface CalibrateOptions {
  /** Tensors (value names) to calibrate: activations, graph inputs, or weights. */
  tensors: string[];
  /** The observer for every tensor (default minmax, per-tensor, asymmetric). */
  observer?: ObserverSpec;
  /** Observers for particular tensors, overriding `observer`. */
  perTensor?: Record<string, ObserverSpec>;
  /** Samples per forward pass (default 8; lowered to fit memoryBudgetBytes). */
  batchSize?: number;
  threads?: number;
  /** onnxruntime graph optimization level for the calibration runs (default 'all'). */
  optimization?: SessionOptions['optimization'];
  progress?: Progress;
  signal?: AbortSignal;
  /**
   * Where cached ranges live (default: SLIMFORMER_CACHE_DIR, else .slimformer-cache in the
   * current folder); false turns the cache off. An entry is keyed by the model's graph and
   * weights, the samples' input data, each tensor's observer and, for histogram observers,
   * the batch size and memory budget (their re-binning depends on the batches); threads and
   * minmaxIn do not change results.
   */
  cacheDir?: string | false;
  /**
   * Most bytes of activations copied out of onnxruntime per run, for observers that need whole
   * tensors (default 256 MiB). Over it the batch shrinks, then tensors split into groups that
   * each take their own pass.
   */
  memoryBudgetBytes?: number;
  /**
   * Where minmax observers reduce: 'graph' (default) adds ReduceMin/ReduceMax nodes so only a
   * few numbers come back per tensor; 'js' copies whole tensors out and reduces in JavaScript.
   */
  minmaxIn?: 'graph' | 'js';
  /**
   * onnxruntime's memory arena for the calibration sessions (default: on for the passes that
   * return only reductions, off for those that copy whole tensors out, where the arena would
   * keep their peak for the whole run).
   */
  memoryArena?: boolean;
}

export interface CalibrationResult {
  ranges: Map<string, TensorRange>;
  specs: Map<string, ResolvedObserverSpec>;
  samples: number;
  /** True when the ranges came from the cache and nothing ran. */
  fromCache: boolean;
  /** The cache entry read or written (undefined with the cache off). */
  cacheFile: string | undefined;
  /** Why the entry could not be written, when it could not (calibration still succeeded). */
  cacheWriteError: string | undefined;
  /** onnxruntime runs made (0 from the cache). */
  forwardPasses: number;
  /** Passes over the data (groups of tensors; 1 unless the memory budget split them). */
  groups: number;
  batchSize: number;
  seconds: number;
}

export const DEFAULT_MEMORY_BUDGET = 256 * 2 ** 20;
const DEFAULT_BATCH = 8;

/**
 * Streams the dataset through the model once per batch, feeding each tensor's observer, and
 * returns each tensor's range. Batches are dropped after use, so memory does not grow with the
 * number of samples. With the cache on, a second call with the same model, data and observers
 * reads the ranges back without running anything.
 */
export async function calibrate(model: Model, data: Dataset | BoundDataset, options: CalibrateOptions): Promise<CalibrationResult> {
  const started = performance.now();
  const bound: BoundDataset = 'feeds' in data ? data : bindDataset(data, model);
  const dataset = bound.dataset;
  const specs = resolveSpecs(model, options);
  options.signal?.throwIfAborted();
  const progress = options.progress ?? silentProgress;
  const result = (ranges: Map<string, TensorRange>, extra: Partial<CalibrationResult>): CalibrationResult => ({
    ranges,
    specs,
    samples: dataset.size,
    fromCache: false,
    cacheFile: undefined,
    cacheWriteError: undefined,
    forwardPasses: 0,
    groups: 0,
    batchSize: 0,
    ...extra,
    seconds: (performance.now() - started) / 1000,
  });

  const dir = options.cacheDir === false ? undefined : (options.cacheDir ?? defaultCacheDir());
  const batchSize = Math.max(1, Math.min(options.batchSize ?? DEFAULT_BATCH, bound.maxBatch));
  const budget = options.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET;
  let key: string | undefined;
  let file: string | undefined;
  if (dir !== undefined) {
    // minmax is exact whatever the batching; a histogram's re-binning depends on the batches
    const histograms = [...specs.values()].some((s) => s.kind !== 'minmax');
    key = cacheKey(hashModel(model), hashDataset(dataset), specs, histograms ? { batchSize, budget } : {});
    file = cacheFile(dir, key);
    const hit = readCache(file, key, specs);
    if (hit) return result(hit.ranges, { fromCache: true, cacheFile: file });
  }

  const observers = new Map<string, Observer>([...specs].map(([name, spec]) => [name, createObserver(spec)]));
  const graphMinmax: string[] = [];
  const full: string[] = [];
  for (const [name, spec] of specs) {
    const v = model.graph.value(name)!;
    if (v.initializer) {
      observe(observers.get(name)!, name, v.initializer.toFloat32(), [...v.initializer.dims], () => `weight '${name}'`);
    } else if (spec.kind === 'minmax' && (options.minmaxIn ?? 'graph') === 'graph') {
      graphMinmax.push(name);
    } else {
      full.push(name);
    }
  }

  const run = new Runner(options);
  let plan = { batchSize, groups: [] as string[][] };
  if (graphMinmax.length > 0 || full.length > 0) {
    const stats = withStatistics(model, [
      ...graphMinmax.map((name) => ({ name, reduce: true, channelAxis: specs.get(name)!.channelAxis })),
      ...full.map((name) => ({ name, reduce: false })),
    ]);
    if (full.length > 0) {
      // one sample through a graph that returns only shapes, to size what whole tensors take
      const first = batches(bound, 1).next().value!;
      const shapes = full.map((n) => stats.outputs.get(n)!.shape);
      const out: Record<string, ArrayTensor> = {};
      const keep = (name: string, o: Record<string, ArrayTensor>): void => void Object.assign(out, o);
      if (!(await calibrateBlockwise(model, stats.model, () => [first], shapes, new Map(full.map((n) => [n, [stats.outputs.get(n)!.shape]])), keep, options, run, () => {}))) {
        const session = await run.session(stats.model, []);
        try {
          Object.assign(out, await run.run(session, first.feeds, shapes));
        } finally {
          await session.release();
        }
      }
      const bytes = new Map(full.map((n) => [n, (4 * elementCount(shapeOf(out[stats.outputs.get(n)!.shape]!))) / first.count]));
      plan = planExposure(bytes, budget, batchSize);
    } else {
      plan.groups = [[]];
    }
    const total = dataset.size * plan.groups.length;
    let done = 0;
    await inStep(progress, 'calibrate', total, async (tick) => {
      for (let g = 0; g < plan.groups.length; g++) {
        const group = plan.groups[g]!;
        const reduced = g === 0 ? graphMinmax : [];
        const fetch = [...group, ...reduced.flatMap((n) => statNames(stats.outputs.get(n)!))];
        // what one tensor needs, all from the same batch: its statistics or itself
        const needs = new Map<string, string[]>([...reduced.map((n) => [n, statNames(stats.outputs.get(n)!)] as [string, string[]]), ...group.map((n) => [n, [n]] as [string, string[]])]);
        const update = (name: string, out: Record<string, ArrayTensor>, batch: { start: number; count: number }): void => {
          const where = (): string => describeBatch(dataset, batch.start, batch.count);
          if (group.includes(name)) {
            const t = out[name]!;
            observe(observers.get(name)!, name, toFloat32(t, name), t.dims, where);
            return;
          }
          const o = stats.outputs.get(name)!;
          const flag = out[o.nonFinite!]!.data[0] as number;
          if (Number.isNaN(flag)) throw nonFinite(name, where());
          const obs = observers.get(name) as MinMaxObserver;
          const min = out[o.min!]!.data as Float32Array;
          const max = out[o.max!]!.data as Float32Array;
          observe(obs, name, undefined, [], where, () => obs.updateMinMax(min, max, elementCount(shapeOf(out[o.shape]!))));
        };
        const passModel = g === 0 ? stats.model : model;
        if (await calibrateBlockwise(model, passModel, () => [...batches(bound, plan.batchSize)], fetch, needs, update, options, run, (fraction) => tick(done + Math.round(fraction * dataset.size), `${group.length + reduced.length} tensors`))) {
          done += dataset.size;
          continue;
        }
        const session = await run.session(passModel, group);
        try {
          for (const batch of batches(bound, plan.batchSize)) {
            options.signal?.throwIfAborted();
            const out = await run.run(session, batch.feeds, fetch);
            for (const name of needs.keys()) {
              update(name, out, batch);
              if (group.includes(name)) delete out[name];
            }
            done += batch.count;
            tick(done, `${group.length + reduced.length} tensors`);
          }
        } finally {
          await session.release();
        }
      }
    });
  }

  const ranges = new Map<string, TensorRange>();
  for (const [name, o] of observers) ranges.set(name, o.range());
  let cacheWriteError: string | undefined;
  if (file !== undefined && key !== undefined) {
    try {
      writeCache(file, key, ranges, dataset.size);
    } catch (e) {
      cacheWriteError = `cannot write the calibration cache ${file}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  return result(ranges, { cacheFile: file, cacheWriteError, forwardPasses: run.count, groups: plan.groups.length, batchSize: plan.batchSize });
}

/**
 * One calibration pass over `model` (`source`, or `source` with its statistics graph) a
 * segment of the graph at a time (runtime/block-runner.ts) when `source`'s weights are more
 * than two segments: no session then holds the whole model (a BERT-base-sized model in one
 * session took 325 MiB of prepacked weights plus its arena).
 * Each tensor's observer is updated once all it `needs` of a batch has come, batch after batch
 * as in the whole-model pass, so the ranges are those of that pass up to the rounding of
 * kernels fused across a cut. Returns false, having run nothing, for a model it does not cut.
 */
async function calibrateBlockwise(source: Model, model: Model, batchList: () => Batch[], fetch: string[], needs: Map<string, string[]>, update: (name: string, out: Record<string, ArrayTensor>, batch: { start: number; count: number }) => void, options: CalibrateOptions, run: Runner, progress: (fraction: number) => void): Promise<boolean> {
  const segmentBytes = defaultSegmentBytes(source);
  const weightBytes = source.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
  if (weightBytes <= 2 * segmentBytes) return false;
  // cut the model itself, then put each statistic with the tensor it reduces (planSegments
  // with `follow`): cut on its own, the statistics graph's reductions, appended after every node
  // of the model, all fell in the last segment, and every calibrated activation of every batch
  // was carried to it (BERT-base w8a8: ~1 GB)
  // at half the budget: beside a segment's session run the statistics graph's reductions and
  // the boundary values of every batch (BERT-base w8a8: the calibration's peak 502 -> 461 MiB)
  const base = planSegments(source, [...needs.keys()], segmentBytes / 2);
  const plan = base && (model === source ? base : planSegments(model, fetch, 0, base));
  if (!plan) return false;
  const list = batchList();
  // a forward pass per batch, as the whole-model pass counts them
  run.count += list.length;
  // per batch, the fetched tensors that came and the tensors whose observer has been updated
  const got = list.map(() => new Map<string, ArrayTensor>());
  const left = list.map(() => new Set(needs.keys()));
  for await (const r of runBlockwise(model, list.map((b) => b.feeds), fetch, { plan, threads: options.threads, signal: options.signal })) {
    const have = got[r.batch]!;
    for (const [n, t] of Object.entries(r.tensors)) have.set(n, t);
    for (const name of [...left[r.batch]!]) {
      const parts = needs.get(name)!;
      if (!parts.every((p) => have.has(p))) continue;
      update(name, Object.fromEntries(parts.map((p) => [p, have.get(p)!])), list[r.batch]!);
      for (const p of parts) have.delete(p);
      left[r.batch]!.delete(name);
    }
    progress((r.segment + (r.batch + 1) / list.length) / r.segments);
    // the batch's statistics are taken: its outputs are freed before the next run makes more
    // (BERT-base w8a8: the calibration's peak 528 -> 493 MiB)
    collectGarbage();
  }
  return true;
}

/** Sessions and runs, counted. */
class Runner {
  count = 0;
  constructor(private readonly options: CalibrateOptions) {}
  session(model: Model, expose: string[]): Promise<Session> {
    const memoryArena = this.options.memoryArena ?? expose.length === 0;
    return Session.create(model, { expose, threads: this.options.threads, optimization: this.options.optimization, memoryArena });
  }
  run(session: Session, feeds: Record<string, ArrayTensor>, fetch: string[]): Promise<Record<string, ArrayTensor>> {
    this.count++;
    return session.run(feeds, fetch);
  }
}

function resolveSpecs(model: Model, options: CalibrateOptions): Map<string, ResolvedObserverSpec> {
  const names = [...new Set(options.tensors)];
  if (names.length === 0) throw new UserError('no tensors to calibrate');
  for (const n of Object.keys(options.perTensor ?? {})) {
    if (!names.includes(n)) throw new UserError(`an observer is given for tensor '${n}', which is not among the tensors to calibrate`);
  }
  const specs = new Map<string, ResolvedObserverSpec>();
  for (const name of names) {
    const v = model.graph.value(name);
    if (!v) throw new UserError(`the model has no tensor named '${name}' to calibrate`);
    const spec = resolveObserverSpec(options.perTensor?.[name] ?? options.observer ?? { kind: 'minmax' });
    const rank = v.initializer ? v.initializer.dims.length : v.type?.kind === 'tensor' ? v.type.shape?.length : undefined;
    const axis = spec.channelAxis;
    if (axis !== undefined && rank !== undefined && (axis >= rank || axis < -rank)) {
      throw new UserError(`cannot calibrate tensor '${name}' per channel on axis ${axis}: it has ${rank} dimensions`);
    }
    specs.set(name, spec);
  }
  return specs;
}

function statNames(o: TensorStatOutputs): string[] {
  return [o.min!, o.max!, o.nonFinite!, o.shape];
}

function shapeOf(t: ArrayTensor): number[] {
  return Array.from(t.data as BigInt64Array, (x) => Number(x));
}

/** Feeds an observer, turning NaN/Inf into a UserError that names the tensor and the samples. */
function observe(o: Observer, name: string, data: Float32Array | undefined, dims: readonly number[], where: () => string, update?: () => void): void {
  try {
    if (update) update();
    else o.update(data!, dims);
  } catch (e) {
    if (e instanceof NonFiniteError) throw nonFinite(name, where());
    // a channel axis the tensor does not have, or a channel count that changes between batches
    if (e instanceof RangeError) throw new UserError(`cannot calibrate tensor '${name}': ${e.message}`);
    throw e;
  }
}

function nonFinite(name: string, where: string): UserError {
  return new UserError(`tensor '${name}' holds NaN or infinite values on ${where}; the model overflows on this data, so it cannot be calibrated`);
}

function describeBatch(dataset: Dataset, start: number, count: number): string {
  if (count === 1) return dataset.where(start);
  return `one of the samples ${dataset.where(start)} to ${dataset.where(start + count - 1)}`;
}

function toFloat32(t: ArrayTensor, name: string): Float32Array {
  if (t.data instanceof Float32Array) return t.data;
  if (t.dtype === DataType.FLOAT16) return Float32Array.from(t.data as Uint16Array, float16BitsToFloat);
  if (t.data instanceof BigInt64Array || t.data instanceof BigUint64Array) return Float32Array.from(t.data as BigInt64Array, Number);
  if (t.dtype === DataType.BFLOAT16 || t.dtype === DataType.BOOL) throw new UserError(`tensor '${name}' is not numeric data that can be calibrated`);
  return Float32Array.from(t.data as Float64Array);
}
