// Fidelity: how far a compressed model's outputs are from the float model's on the same inputs,
// measured directly rather than through the labels (top1 saturates and eval nll moves by noise
// on small classifiers; a quantized model's nll can even fall below float's). The float outputs
// are run once and kept, so several candidates are scored against them. KL, agreement and SQNR
// are ComparisonAccumulator's (comparison.ts); one position per sample for a classifier, one
// per token for a language model.
import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import { ComparisonAccumulator } from './comparison.js';

export interface Fidelity {
  /** Mean KL(float ‖ candidate) per position, nats. */
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
    outs.forEach((q, i) => acc.add(this.outputs[i]!, q, this.output));
    const m = acc.result(['kl', 'agreement', 'sqnr']);
    return { kl: m.kl!, agreement: m.agreement!, sqnr: m.sqnr!, positions: acc.count };
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
