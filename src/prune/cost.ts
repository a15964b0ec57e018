// Parameters and FLOPs of a model, and what each head and neuron costs.
import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { type ArrayTensor, concatBatch, sliceBatch } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';

/** The first `count` samples of a dataset as one batch of feeds for `model`. */
export function calibrationBatch(dataset: Dataset, model: Model, count: number): { feeds: Record<string, ArrayTensor>; count: number } {
  const bound = bindDataset(dataset, model);
  const parts: Record<string, ArrayTensor>[] = [];
  let n = 0;
  for (const b of batches(bound, Math.min(count, 64))) {
    parts.push(b.feeds);
    n += b.count;
    if (n >= count) break;
  }
  if (parts.length === 0) throw new UserError(`dataset ${dataset.path} has no samples`);
  const feeds: Record<string, ArrayTensor> = {};
  for (const name of Object.keys(parts[0]!)) {
    const joined = concatBatch(parts.map((p) => p[name]!));
    feeds[name] = joined.dims[0]! > count ? sliceBatch(joined, 0, count) : joined;
  }
  return { feeds, count: Math.min(n, count) };
}

/** Every batch tensor repeated `times` along the first axis (variant after variant). */
export function repeatBatch(feeds: Record<string, ArrayTensor>, times: number): Record<string, ArrayTensor> {
  const out: Record<string, ArrayTensor> = {};
  for (const [k, v] of Object.entries(feeds)) out[k] = concatBatch(new Array<ArrayTensor>(times).fill(v));
  return out;
}

/** One sample of the batch. */
export function firstSample(feeds: Record<string, ArrayTensor>): Record<string, ArrayTensor> {
  const out: Record<string, ArrayTensor> = {};
  for (const [k, v] of Object.entries(feeds)) out[k] = sliceBatch(v, 0, 1);
  return out;
}

/**
 * FLOPs of one sample, measured: every MatMul, Gemm and FusedMatMul is run by onnxruntime on one
 * sample and counted as 2 * (output elements) * (reduced dimension). Elementwise ops are not
 * counted.
 */
export async function measureFlops(model: Model, sample: Record<string, ArrayTensor>, threads?: number): Promise<number> {
  const ops = model.graph.nodes.filter((n) => n.opType === 'MatMul' || n.opType === 'Gemm' || (n.opType === 'FusedMatMul' && n.domain === 'com.microsoft'));
  const expose = new Set<string>();
  for (const n of ops) {
    expose.add(n.input(0)!.name);
    expose.add(n.output(0).name);
  }
  const session = await Session.create(model, { expose: [...expose], threads, optimization: 'disabled' });
  try {
    const out = await session.run(sample);
    let flops = 0;
    for (const n of ops) {
      // (an operand may be a graph input: the sample has it)
      const a = out[n.input(0)!.name] ?? sample[n.input(0)!.name]!;
      const y = out[n.output(0).name]!;
      // the reduced dimension: A's last, or the one before it when A is transposed
      const transA = n.opType !== 'MatMul' && n.intAttr('transA', 0) === 1;
      const k = transA ? a.dims[a.dims.length - 2]! : a.dims[a.dims.length - 1]!;
      flops += 2 * y.data.length * k;
    }
    return flops;
  } finally {
    await session.release();
  }
}

export interface UnitCosts {
  /** FLOPs of one head of each block's attention, per sample. */
  head: Map<number, number>;
  /** FLOPs of one neuron of each block's MLP, per sample. */
  neuron: Map<number, number>;
  /** Parameters of one neuron (fc1 column, its bias, fc2 row; and the gate's). */
  neuronParams: Map<number, number>;
  tokens: number;
}

/** Per-unit costs for `tokens` tokens per sample. */
export function unitCosts(structure: Structure, tokens: number): UnitCosts {
  const head = new Map<number, number>();
  const neuron = new Map<number, number>();
  const neuronParams = new Map<number, number>();
  for (const b of structure.blocks) {
    if (b.attention) {
      const a = b.attention;
      const d = a.q.inFeatures;
      const hd = a.headSize;
      // one head unit: its query heads, and the k/v head they share when grouped
      const per = a.numKvHeads < a.numHeads ? a.numHeads / a.numKvHeads : 1;
      head.set(b.index, 2 * tokens * ((per + 2) * d * hd + per * hd * a.o.outFeatures) + 2 * 2 * tokens * tokens * hd * per);
    }
    if (b.mlp) {
      const m = b.mlp;
      const mats = m.gate ? 3 : 2;
      neuron.set(b.index, 2 * tokens * (m.fc1.inFeatures * (mats - 1) + m.fc2.outFeatures));
      neuronParams.set(b.index, m.fc1.inFeatures * (mats - 1) + m.fc2.outFeatures + (m.fc1.bias ? 1 : 0) + (m.gate?.bias ? 1 : 0));
    }
  }
  return { head, neuron, neuronParams, tokens };
}

/** Tokens per sample seen by the first MLP or attention (from the measured fc1 input). */
export async function tokensPerSample(model: Model, structure: Structure, sample: Record<string, ArrayTensor>, threads?: number): Promise<number> {
  const l = structure.mlps[0]?.fc1 ?? structure.attentions[0]?.q;
  if (!l) return 1;
  const session = await Session.create(model, { expose: [l.input.name], threads });
  try {
    const out = await session.run(sample, [l.input.name]);
    const t = out[l.input.name]!;
    return t.data.length / t.dims[t.dims.length - 1]! / (t.dims.length > 2 ? t.dims[0]! : 1);
  } finally {
    await session.release();
  }
}

/** MLP parameters (fc1, gate, fc2 weights and biases) of a structure. */
export function mlpParameters(structure: Structure): number {
  let n = 0;
  for (const m of structure.mlps) for (const l of [m.fc1, m.gate, m.fc2]) if (l) n += l.inFeatures * l.outFeatures + (l.bias ? l.outFeatures : 0);
  return n;
}
