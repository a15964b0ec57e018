import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import { float16BitsToFloat } from '../ir/float-bits.js';
import { Session } from '../runtime/session.js';
import { traceMemory } from '../runtime/memory-trace.js';
import { defaultSegmentBytes, pairBatchSize, visitPairsBlockwise } from '../runtime/block-runner.js';

function floatData(t: ArrayTensor): ArrayLike<number> {
  return t.dtype === DataType.FLOAT16 ? Float32Array.from(t.data as Uint16Array, float16BitsToFloat) : (t.data as Float32Array);
}

/** A tensor of the float model and the tensor of the quantized model that stands for it. */
export interface TensorPair {
  name: string;
  float: string;
  quantized: string;
}

export interface SqnrResult {
  name: string;
  /** 10 log10(Σ f² / Σ (f - q)²) over all compared samples, in dB (Infinity when equal). */
  sqnr: number;
}

export interface Comparison {
  layers: SqnrResult[];
  outputs: SqnrResult[];
  samples: number;
}

/**
 * Runs both models on the first `samples` samples and measures, per layer and per model
 * output, how far the quantized tensor is from the float one. Sums are streamed, so only one
 * batch of activations is held at a time. Loading the quantized model here is also the check
 * that onnxruntime accepts it.
 */
export async function compareModels(float: Model, quantized: Model, dataset: Dataset, pairs: TensorPair[], options: { samples: number; batchSize?: number; threads?: number; signal?: AbortSignal; maxSegmentBytes?: number }): Promise<Comparison> {
  const outputs = float.graph.outputs.map((v) => v.name);
  traceMemory('comparing with the float model');
  const all: TensorPair[] = [...pairs, ...outputs.map((o) => ({ name: o, float: o, quantized: o }))];
  const signal = all.map(() => 0);
  const noise = all.map(() => 0);
  const add = (i: number, f: ArrayTensor, q: ArrayTensor): void => {
    // a float16 model's tensors (fp16, q4f16) are compared as the numbers they hold
    const a = floatData(f);
    const b = floatData(q);
    for (let j = 0; j < a.length; j++) {
      signal[i] += a[j]! * a[j]!;
      noise[i] += (a[j]! - b[j]!) ** 2;
    }
  };
  let seen = 0;
  // batches as before: dynamic quantization's activation scales span a batch, so the batch
  // size is part of what the figures measure
  const batchSize = options.batchSize ?? 4;
  const segmentBytes = options.maxSegmentBytes ?? defaultSegmentBytes(float);
  const weightBytes = float.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
  if (weightBytes > 2 * segmentBytes) {
    // a large model: both run a segment at a time side by side, never whole in a session
    const feeds: Record<string, ArrayTensor>[] = [];
    for (const batch of batches(bindDataset(dataset, float), options.batchSize ?? pairBatchSize(quantized, 4))) {
      if (seen >= options.samples) break;
      feeds.push(batch.feeds);
      seen += batch.count;
    }
    const ran = await visitPairsBlockwise(float, quantized, feeds, feeds, all.map((p) => ({ a: p.float, b: p.quantized })), (i, _batch, f, q) => add(i, f, q), { maxSegmentBytes: segmentBytes, threads: options.threads, signal: options.signal });
    if (!ran) seen = 0;
    else return result(pairs, outputs, signal, noise, seen);
  }
  const fs = await Session.create(float, { expose: pairs.map((p) => p.float), threads: options.threads, memoryArena: false });
  const qs = await Session.create(quantized, { expose: pairs.map((p) => p.quantized), threads: options.threads, memoryArena: false });
  try {
    const bound = bindDataset(dataset, float);
    for (const batch of batches(bound, batchSize)) {
      options.signal?.throwIfAborted();
      if (seen >= options.samples) break;
      const f = await fs.run(batch.feeds, [...new Set(all.map((p) => p.float))]);
      const q = await qs.run(batch.feeds, [...new Set(all.map((p) => p.quantized))]);
      all.forEach((p, i) => add(i, f[p.float]!, q[p.quantized]!));
      seen += batch.count;
    }
  } finally {
    await fs.release();
    await qs.release();
  }
  return result(pairs, outputs, signal, noise, seen);
}

function result(pairs: TensorPair[], outputs: string[], signal: number[], noise: number[], seen: number): Comparison {
  traceMemory('compared with the float model');
  const sqnr = (i: number): number => (noise[i] === 0 ? Infinity : 10 * Math.log10(signal[i]! / noise[i]!));
  return {
    layers: pairs.map((p, i) => ({ name: p.name, sqnr: sqnr(i) })),
    outputs: outputs.map((o, i) => ({ name: o, sqnr: sqnr(pairs.length + i) })),
    samples: seen,
  };
}
