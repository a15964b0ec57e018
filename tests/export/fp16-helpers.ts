// An SQNR of a float16 model against its float model computed here, independently of
// quantize/verify.ts: both models run on the same samples, every float output compared.
import { batches, bindDataset } from '../../src/data/bind.js';
import type { Dataset } from '../../src/data/dataset.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { float16BitsToFloat } from '../../src/ir/float-bits.js';
import type { Model } from '../../src/ir/model.js';
import { Session } from '../../src/runtime/session.js';

function numbers(t: ArrayTensor): Float64Array {
  if (t.dtype === DataType.FLOAT16) return Float64Array.from(t.data as Uint16Array, float16BitsToFloat);
  return Float64Array.from(t.data as Float32Array);
}

/** SQNR (dB) of each output of `candidate` against `float` over the first `samples` samples, and the candidate's output types. */
export async function outputSqnr(float: Model, candidate: Model, data: Dataset, samples = 8): Promise<{ sqnr: Record<string, number>; types: Record<string, DataType> }> {
  const a = await Session.create(float);
  const b = await Session.create(candidate);
  const signal: Record<string, number> = {};
  const noise: Record<string, number> = {};
  const types: Record<string, DataType> = {};
  let seen = 0;
  try {
    for (const batch of batches(bindDataset(data, float), 1)) {
      if (seen++ >= samples) break;
      const x = await a.run(batch.feeds);
      const y = await b.run(batch.feeds);
      for (const name of float.graph.outputs.map((v) => v.name)) {
        types[name] = y[name]!.dtype;
        const p = numbers(x[name]!);
        const q = numbers(y[name]!);
        for (let i = 0; i < p.length; i++) {
          signal[name] = (signal[name] ?? 0) + p[i]! * p[i]!;
          noise[name] = (noise[name] ?? 0) + (p[i]! - q[i]!) ** 2;
        }
      }
    }
  } finally {
    await a.release();
    await b.release();
  }
  const sqnr = Object.fromEntries(Object.keys(signal).map((k) => [k, 10 * Math.log10(signal[k]! / noise[k]!)]));
  return { sqnr, types };
}
