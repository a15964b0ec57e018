// The calibration rows of layer-wise FlexRound: each linear's input, flattened to [tokens, k],
// at most `tokens` rows per tensor taken at an even stride from every batch. Captured either by
// one session over the whole model (captureRows) or a segment of the graph at a time through
// the block runner (captureRowsBlockwise), which holds only one segment's weights in a session
// and one segment's rows in memory; both take the same rows from the same batches.
import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { defaultSegmentBytes, planSegments, runBlockwise } from '../runtime/block-runner.js';
import { traceMemory } from '../runtime/memory-trace.js';
import { Session } from '../runtime/session.js';

export interface RowCaptureOptions {
  /** Most rows per tensor over all samples (default 4096). */
  tokens?: number;
  /** Calibration samples used (default all). */
  samples?: number;
  batchSize?: number;
  threads?: number;
  signal?: AbortSignal;
  /** Block-wise capture: most weight bytes in one segment (default defaultSegmentBytes). */
  maxSegmentBytes?: number;
}

/** Rows of one layer input, a segment at a time: take them in the model's order. */
export interface RowStream {
  /** The rows ([tokens, k], flattened) of tensor `name`. */
  take(name: string): Promise<Float32Array>;
  /** The segment that computes `name` (0 for every tensor when the model is run whole). */
  segmentOf(name: string): number;
  close(): Promise<void>;
}

/** How many rows a batch of `count` samples gives, the `seen` samples before it having given theirs. */
function shareOf(budget: number, count: number, seen: number, samples: number): number {
  return Math.max(1, Math.ceil((budget * Math.min(count, samples - seen)) / samples));
}

/** At most `share` rows of `a` ([rows, k]) at an even stride. */
function strideRows(a: Float32Array, k: number, share: number): Float32Array {
  const total = a.length / k;
  const take = Math.min(total, share);
  const out = new Float32Array(take * k);
  for (let i = 0; i < take; i++) {
    const r = Math.floor((i * total) / take);
    out.set(a.subarray(r * k, (r + 1) * k), i * k);
  }
  return out;
}

function concat(list: Float32Array[]): Float32Array {
  const all = new Float32Array(list.reduce((a, b) => a + b.length, 0));
  let at = 0;
  for (const p of list) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

/** The rows of every tensor of `tensors` from one session over the whole of `model`. */
export async function captureRows(model: Model, data: Dataset, tensors: { name: string; k: number }[], options: RowCaptureOptions = {}): Promise<Map<string, Float32Array>> {
  const budget = options.tokens ?? 4096;
  const samples = Math.min(options.samples ?? data.size, data.size);
  const parts = new Map<string, Float32Array[]>(tensors.map((t) => [t.name, []]));
  if (tensors.length === 0) return new Map();
  const session = await Session.create(model, { expose: tensors.map((t) => t.name), threads: options.threads, memoryArena: false });
  try {
    let seen = 0;
    for (const batch of batches(bindDataset(data, model), options.batchSize ?? 8)) {
      options.signal?.throwIfAborted();
      if (seen >= samples) break;
      const acts = await session.run(batch.feeds, tensors.map((t) => t.name));
      const share = shareOf(budget, batch.count, seen, samples);
      for (const t of tensors) parts.get(t.name)!.push(strideRows(acts[t.name]!.data as Float32Array, t.k, share));
      seen += batch.count;
    }
  } finally {
    await session.release();
  }
  return new Map([...parts].map(([name, list]) => [name, concat(list)]));
}

/**
 * The same rows as captureRows, a segment of the graph at a time (the block runner): all
 * batches go through one segment, its tensors' rows are handed out, and they are dropped once a
 * tensor of a later segment is asked for. Graphs the block runner cannot cut (If, Loop) are run
 * whole.
 */
export async function captureRowsBlockwise(model: Model, data: Dataset, tensors: { name: string; k: number }[], options: RowCaptureOptions = {}): Promise<RowStream> {
  const plan = tensors.length > 0 ? planSegments(model, tensors.map((t) => t.name), options.maxSegmentBytes ?? defaultSegmentBytes(model)) : undefined;
  if (!plan) {
    const all = await captureRows(model, data, tensors, options);
    return { take: async (name) => all.get(name) ?? Promise.reject(new Error(`no rows captured for '${name}'`)), segmentOf: () => 0, close: async () => {} };
  }
  const budget = options.tokens ?? 4096;
  const samples = Math.min(options.samples ?? data.size, data.size);
  const feeds: Record<string, ArrayTensor>[] = [];
  const shares: number[] = [];
  let seen = 0;
  for (const batch of batches(bindDataset(data, model), options.batchSize ?? 8)) {
    if (seen >= samples) break;
    feeds.push(batch.feeds);
    shares.push(shareOf(budget, batch.count, seen, samples));
    seen += batch.count;
  }
  const k = new Map(tensors.map((t) => [t.name, t.k]));
  const segment = new Map<string, number>();
  plan.wanted.forEach((names, s) => names.forEach((n) => segment.set(n, s)));
  const ready = new Map<string, Float32Array>();
  const partial = new Map<string, Float32Array[]>();
  const runs = runBlockwise(model, feeds, tensors.map((t) => t.name), { plan, threads: options.threads, signal: options.signal });
  let done = false;
  const finish = async (): Promise<void> => {
    if (done) return;
    done = true;
    await runs.return(undefined);
  };
  return {
    segmentOf: (name) => segment.get(name) ?? 0,
    async take(name) {
      while (!ready.has(name)) {
        const next = done ? undefined : await runs.next();
        if (!next || next.done) {
          await finish();
          throw new Error(`rows of '${name}' were asked for after a later segment's (take them in the model's order), or it is not one of the tensors given`);
        }
        const r = next.value;
        for (const [n, a] of Object.entries(r.tensors)) {
          const list = partial.get(n) ?? [];
          list.push(strideRows(a.data as Float32Array, k.get(n)!, shares[r.batch]!));
          partial.set(n, list);
        }
        if (r.lastOfSegment) {
          // what earlier segments gave is done with: the caller has moved past them
          ready.clear();
          for (const n of Object.keys(r.tensors)) {
            ready.set(n, concat(partial.get(n)!));
            partial.delete(n);
          }
          traceMemory(`FlexRound rows of segment ${r.segment + 1}/${r.segments} captured`);
        }
      }
      return ready.get(name)!;
    },
    close: finish,
  };
}
