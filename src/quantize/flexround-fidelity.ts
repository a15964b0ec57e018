// Quantization fidelity: how far a quantized model's outputs are from the float model's on the
// same inputs, measured directly rather than through the labels (top1 saturates and eval nll
// moves by noise on small classifiers; a quantized model's nll can even fall below float's).
//  kl:        mean over positions of KL(softmax(float) ‖ softmax(quantized)) in nats; one
//             position per sample for a classifier, one per token for a language model
//  agreement, sqnr: src/validate/comparison.ts (argmax agreement; output SQNR in dB)
import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import { ComparisonAccumulator } from '../validate/comparison.js';

/**
 * KL(softmax(p) ‖ softmax(q)) summed over the positions of two logit tensors of one shape
 * (positions along every axis but the last), in float64. Returns the sum and the count.
 */
export function klSum(p: ArrayLike<number>, q: ArrayLike<number>, width: number): { sum: number; positions: number } {
  const positions = p.length / width;
  let sum = 0;
  for (let r = 0; r < positions; r++) {
    const base = r * width;
    let mp = -Infinity;
    let mq = -Infinity;
    for (let c = 0; c < width; c++) {
      mp = Math.max(mp, p[base + c]!);
      mq = Math.max(mq, q[base + c]!);
    }
    let zp = 0;
    let zq = 0;
    for (let c = 0; c < width; c++) {
      zp += Math.exp(p[base + c]! - mp);
      zq += Math.exp(q[base + c]! - mq);
    }
    const lzp = Math.log(zp) + mp;
    const lzq = Math.log(zq) + mq;
    let kl = 0;
    for (let c = 0; c < width; c++) {
      const lp = p[base + c]! - lzp;
      const lq = q[base + c]! - lzq;
      kl += Math.exp(lp) * (lp - lq);
    }
    sum += Math.max(0, kl);
  }
  return { sum, positions };
}

export interface Fidelity {
  /** Mean KL(float ‖ quantized) per position, nats. */
  kl: number;
  /** Share of positions whose argmax matches the float model's. */
  agreement: number;
  /** Output SQNR against the float model, dB. */
  sqnr: number;
  positions: number;
}

/** Float outputs of a model over a dataset, kept to score several quantized models against. */
export class FloatReference {
  private constructor(
    readonly output: string,
    private readonly outputs: ArrayTensor[],
    private readonly batchSize: number,
  ) {}

  static async create(float: Model, dataset: Dataset, options: { batchSize?: number; threads?: number } = {}): Promise<FloatReference> {
    const output = float.graph.outputs[0]!.name;
    const batchSize = options.batchSize ?? 32;
    const outputs = await runAll(float, dataset, output, batchSize, options.threads);
    return new FloatReference(output, outputs, batchSize);
  }

  /** KL, agreement and SQNR of `quantized` against the float outputs on the same dataset. */
  async compare(quantized: Model, dataset: Dataset, options: { threads?: number } = {}): Promise<Fidelity> {
    const outs = await runAll(quantized, dataset, this.output, this.batchSize, options.threads);
    const acc = new ComparisonAccumulator();
    let kl = 0;
    let positions = 0;
    outs.forEach((q, i) => {
      const f = this.outputs[i]!;
      acc.add(f, q, this.output);
      const r = klSum(f.data as Float32Array, q.data as Float32Array, f.dims[f.dims.length - 1]!);
      kl += r.sum;
      positions += r.positions;
    });
    const m = acc.result(['agreement', 'sqnr']);
    return { kl: kl / positions, agreement: m.agreement!, sqnr: m.sqnr!, positions };
  }
}

async function runAll(model: Model, dataset: Dataset, output: string, batchSize: number, threads?: number): Promise<ArrayTensor[]> {
  const session = await Session.create(model, { threads });
  const out: ArrayTensor[] = [];
  try {
    for (const batch of batches(bindDataset(dataset, model), batchSize)) out.push((await session.run(batch.feeds, [output]))[output]!);
  } finally {
    await session.release();
  }
  return out;
}
