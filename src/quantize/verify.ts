import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import { float16BitsToFloat } from '../ir/float-bits.js';
import { Session } from '../runtime/session.js';
import { traceMemory } from '../runtime/memory-trace.js';

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
export async function compareModels(float: Model, quantized: Model, dataset: Dataset, pairs: TensorPair[], options: { samples: number; batchSize?: number; threads?: number; signal?: AbortSignal }): Promise<Comparison> {
  const outputs = float.graph.outputs.map((v) => v.name);
  const fs = await Session.create(float, { expose: pairs.map((p) => p.float), threads: options.threads, memoryArena: false });
  const qs = await Session.create(quantized, { expose: pairs.map((p) => p.quantized), threads: options.threads, memoryArena: false });
  const all: TensorPair[] = [...pairs, ...outputs.map((o) => ({ name: o, float: o, quantized: o }))];
  const signal = all.map(() => 0);
  const noise = all.map(() => 0);
  let seen = 0;
  try {
    const bound = bindDataset(dataset, float);
    // every layer's output of both models comes back per batch: one sample at a time when there
    // are many layers (BERT-base, 72 layers, 128 tokens: 85 MB a sample and model)
    for (const batch of batches(bound, pairs.length > 8 ? 1 : (options.batchSize ?? 4))) {
      options.signal?.throwIfAborted();
      if (seen >= options.samples) break;
      const f = await fs.run(batch.feeds, [...new Set(all.map((p) => p.float))]);
      const q = await qs.run(batch.feeds, [...new Set(all.map((p) => p.quantized))]);
      all.forEach((p, i) => {
        // a float16 model's tensors (fp16, q4f16) are compared as the numbers they hold
        const a = floatData(f[p.float]!);
        const b = floatData(q[p.quantized]!);
        for (let j = 0; j < a.length; j++) {
          signal[i] += a[j]! * a[j]!;
          noise[i] += (a[j]! - b[j]!) ** 2;
        }
      });
      seen += batch.count;
    }
  } finally {
    await fs.release();
    await qs.release();
  }
  traceMemory('compared with the float model');
  const sqnr = (i: number): number => (noise[i] === 0 ? Infinity : 10 * Math.log10(signal[i]! / noise[i]!));
  return {
    layers: pairs.map((p, i) => ({ name: p.name, sqnr: sqnr(i) })),
    outputs: outputs.map((o, i) => ({ name: o, sqnr: sqnr(pairs.length + i) })),
    samples: seen,
  };
}
