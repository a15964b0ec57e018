// Importance of heads, neurons and sublayers: weight magnitude, OPTIN trajectory scores (masked
// forward passes, batched), first-order Taylor scores of the prediction entropy (gradients from
// src/autodiff), and LLM-Drop's input/output similarity of attention sublayers.
import { buildGradientGraph } from '../autodiff/index.js';
import { constantTensor } from '../discover/constants.js';
import type { LinearLayer, Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { type ArrayTensor, sliceBatch } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import { Session } from '../runtime/session.js';
import { repeatBatch } from './cost.js';
import { buildMaskedModel, MASK_INPUT, type MaskedModel, type MaskLayout } from './mask.js';

/** One score per unit of the layout (higher = more important). */
export type Scores = Float64Array;

/** Neurons: |fc1 column| * |fc2 row| (with the gate's column); heads: the same over q, k, v, o. */
export function magnitudeScores(structure: Structure, layout: MaskLayout): Scores {
  const s = new Float64Array(layout.units.length);
  for (const b of structure.blocks) {
    if (b.mlp) {
      const w = b.mlp.width;
      const n1 = outNorms(b.mlp.fc1);
      const ng = b.mlp.gate ? outNorms(b.mlp.gate) : undefined;
      const n2 = inNorms(b.mlp.fc2);
      const off = layout.neuronOffset.get(b.index)!;
      for (let k = 0; k < w; k++) s[off + k] = Math.sqrt(n1[k]! * (ng ? ng[k]! : 1) * n2[k]!);
    }
    if (b.attention) {
      const a = b.attention;
      const q = outNorms(a.q);
      const k = outNorms(a.k);
      const v = outNorms(a.v);
      const o = inNorms(a.o);
      const off = layout.headOffset.get(b.index)!;
      const per = layout.headsPerUnit.get(b.index) ?? 1;
      const group = a.numHeads / a.numKvHeads;
      const hd = a.headSize;
      const dv = a.vFeatures.size / a.numKvHeads;
      for (let h = 0; h < a.numHeads; h++) {
        // q/k/v may sit anywhere in a packed projection; a grouped head reads its group's k and v
        const kv = Math.floor(h / group);
        let qk = 0;
        let vo = 0;
        for (let j = 0; j < hd; j++) qk += q[a.qFeatures.start + h * hd + j]! * k[a.kFeatures.start + kv * hd + j]!;
        for (let j = 0; j < dv; j++) vo += v[a.vFeatures.start + kv * dv + j]! * o[h * dv + j]!;
        s[off + Math.floor(h / per)] += Math.sqrt(qk) + Math.sqrt(vo);
      }
    }
  }
  return s;
}

/** Squared L2 norm of each output feature's weights. */
function outNorms(l: LinearLayer): Float64Array {
  const t = constantTensor(l.weight)!.toFloat32();
  const out = new Float64Array(l.outFeatures);
  for (let i = 0; i < l.inFeatures; i++) {
    for (let o = 0; o < l.outFeatures; o++) {
      const x = l.transB ? t[o * l.inFeatures + i]! : t[i * l.outFeatures + o]!;
      out[o] += x * x;
    }
  }
  return out;
}

/** Squared L2 norm of each input feature's weights. */
function inNorms(l: LinearLayer): Float64Array {
  const t = constantTensor(l.weight)!.toFloat32();
  const out = new Float64Array(l.inFeatures);
  for (let i = 0; i < l.inFeatures; i++) {
    for (let o = 0; o < l.outFeatures; o++) {
      const x = l.transB ? t[o * l.inFeatures + i]! : t[i * l.outFeatures + o]!;
      out[i] += x * x;
    }
  }
  return out;
}

export interface VariantResult {
  entropy: number;
  kl: number;
  /** Feature distortion of each block's output (by block index). */
  distortion: Map<number, number>;
}

/**
 * Runs masked variants of a model on one calibration batch: each mask (1 keeps a unit, 0 removes
 * it) becomes a group of rows in one onnxruntime call, next to an unmasked reference group.
 */
export class MaskRunner {
  private readonly repeated = new Map<number, Record<string, ArrayTensor>>();
  private constructor(
    readonly masked: MaskedModel,
    private readonly session: Session,
    private readonly feeds: Record<string, ArrayTensor>,
    readonly samples: number,
    readonly variantsPerRun: number,
  ) {}

  static async create(model: Model, feeds: Record<string, ArrayTensor>, samples: number, options: { threads?: number; variantsPerRun?: number } = {}): Promise<MaskRunner> {
    // shapes of the logits and block outputs for one variant
    const probe = buildMaskedModel(model);
    const outName = model.graph.outputs[0]!.name;
    const ones = onesMask(1, probe.layout.units.length);
    const blockNames = [...probe.blockOutputs.values()];
    const s0 = await Session.create(probe.model, { expose: blockNames, threads: options.threads });
    let logitRows: number;
    let classes: number;
    let featureRows: number | undefined;
    let featureWidth: number | undefined;
    try {
      const out = await s0.run({ ...feeds, [MASK_INPUT]: rowsMask(ones, samples) }, [outName, ...blockNames]);
      const logits = out[outName]!;
      classes = logits.dims[logits.dims.length - 1]!;
      logitRows = logits.data.length / classes;
      const f = blockNames.length ? out[blockNames[0]!] : undefined;
      if (f) {
        featureWidth = f.dims[f.dims.length - 1]!;
        featureRows = f.data.length / featureWidth;
      }
    } finally {
      await s0.release();
    }
    const masked = buildMaskedModel(model, { samples, logitRows, classes, featureRows, featureWidth });
    const session = await Session.create(masked.model, { threads: options.threads });
    return new MaskRunner(masked, session, feeds, samples, options.variantsPerRun ?? 16);
  }

  get layout(): MaskLayout {
    return this.masked.layout;
  }

  /** Results for each mask, in order; variant 0 of every run is the unmasked model. */
  async evaluate(masks: Float32Array[], signal?: AbortSignal, onProgress?: (done: number) => void): Promise<VariantResult[]> {
    const results: VariantResult[] = [];
    const per = Math.max(1, this.variantsPerRun - 1);
    for (let start = 0; start < masks.length; start += per) {
      signal?.throwIfAborted();
      const chunk = masks.slice(start, start + per);
      const variants = [onesMask(1, this.layout.units.length), ...chunk];
      let feeds = this.repeated.get(variants.length);
      if (!feeds) {
        feeds = repeatBatch(this.feeds, variants.length);
        this.repeated.set(variants.length, feeds);
      }
      const rows = new Float32Array(variants.length * this.samples * this.layout.units.length);
      variants.forEach((m, v) => {
        for (let s = 0; s < this.samples; s++) rows.set(m, (v * this.samples + s) * m.length);
      });
      const mask: ArrayTensor = { dtype: DataType.FLOAT, dims: [variants.length * this.samples, this.layout.units.length], data: rows };
      const names = [this.masked.entropy!, this.masked.kl!, ...this.masked.distortion.values()];
      const out = await this.session.run({ ...feeds, [MASK_INPUT]: mask }, names);
      for (let v = 1; v < variants.length; v++) {
        const distortion = new Map<number, number>();
        for (const [b, name] of this.masked.distortion) distortion.set(b, out[name]!.data[v] as number);
        results.push({ entropy: out[this.masked.entropy!]!.data[v] as number, kl: out[this.masked.kl!]!.data[v] as number, distortion });
      }
      onProgress?.(results.length);
    }
    return results;
  }

  /** Entropy of the unmasked model's predictions on the batch. */
  async baseEntropy(): Promise<number> {
    const r = await this.evaluate([onesMask(1, this.layout.units.length)]);
    return r[0]!.entropy;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export function onesMask(_rows: number, units: number): Float32Array {
  return new Float32Array(units).fill(1);
}

function rowsMask(mask: Float32Array, rows: number): ArrayTensor {
  const data = new Float32Array(rows * mask.length);
  for (let r = 0; r < rows; r++) data.set(mask, r * mask.length);
  return { dtype: DataType.FLOAT, dims: [rows, mask.length], data };
}

/**
 * OPTIN trajectory importance: for each unit alone, the distortion (manifold distillation) of
 * the outputs of its own and every later block, plus c times the KL divergence of the logits,
 * with c chosen so that distortion / (c * KL) is about `lambda` (10).
 */
export async function optinScores(runner: MaskRunner, signal?: AbortSignal, lambda = 10, onProgress?: (done: number) => void): Promise<Scores> {
  const units = runner.layout.units;
  const masks = units.map((_, i) => {
    const m = onesMask(1, units.length);
    m[i] = 0;
    return m;
  });
  const results = await runner.evaluate(masks, signal, onProgress);
  const md = new Float64Array(units.length);
  const kl = new Float64Array(units.length);
  results.forEach((r, i) => {
    const block = units[i]!.block;
    let sum = 0;
    for (const [b, d] of r.distortion) if (b > block) sum += d;
    else if (b === block) sum += 0.5 * d;
    md[i] = sum;
    kl[i] = Math.max(0, r.kl);
  });
  const mdMean = md.reduce((a, b) => a + b, 0) / units.length;
  const klMean = kl.reduce((a, b) => a + b, 0) / units.length;
  const c = klMean > 0 && mdMean > 0 ? 10 ** Math.trunc(Math.log10(mdMean / klMean) - Math.log10(lambda)) : 1;
  return Float64Array.from(units, (_, i) => md[i]! + c * kl[i]!);
}

/**
 * First-order Taylor importance |sum_t a * dE/da| of each neuron (at the input of fc2) and each
 * head (its slice of the merged context entering the output projection), averaged over samples,
 * where E is the entropy of the model's own predictions. Gradients come from an ONNX gradient
 * graph built by src/autodiff and run by onnxruntime.
 */
export async function taylorScores(model: Model, structure: Structure, layout: MaskLayout, feeds: Record<string, ArrayTensor>, samples: number, options: { threads?: number; batch?: number; signal?: AbortSignal } = {}): Promise<Scores> {
  const m = model.clone();
  const g = m.graph;
  const logits = g.outputs[0]!;
  const c64 = (name: string, values: number[]) => g.addInitializer(Tensor.from(g.uniqueName(name), DataType.INT64, [values.length], values.map((x) => BigInt(x))));
  const logp = g.addNode('LogSoftmax', [logits], [g.uniqueName('slimformer_taylor_logp')], { attributes: { axis: { type: 'int', value: -1 } } }).output(0);
  const p = g.addNode('Exp', [logp], [g.uniqueName('slimformer_taylor_p')]).output(0);
  const plogp = g.addNode('Mul', [p, logp], [g.uniqueName('slimformer_taylor_plogp')]).output(0);
  const rank = logits.shape?.length ?? 2;
  const sum = g.addNode('ReduceSum', [plogp, c64('slimformer_taylor_axes', Array.from({ length: rank }, (_, i) => i))], [g.uniqueName('slimformer_taylor_sum')], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0);
  const loss = g.addNode('Neg', [sum], [g.uniqueName('slimformer_taylor_entropy')]).output(0);
  g.outputs = [...g.outputs, loss];
  const points = new Map<string, { kind: 'neuron' | 'head'; block: number; width: number; group: number }>();
  for (const b of structure.blocks) {
    if (b.mlp) points.set(b.mlp.fc2.input.name, { kind: 'neuron', block: b.index, width: b.mlp.width, group: 1 });
    if (b.attention) points.set(b.attention.o.input.name, { kind: 'head', block: b.index, width: b.attention.numHeads * b.attention.headSize, group: b.attention.headSize * (layout.headsPerUnit.get(b.index) ?? 1) });
  }
  let grad;
  try {
    grad = buildGradientGraph(m, { loss: loss.name, wrt: [...points.keys()], keepOutputs: false });
  } catch (e) {
    throw new UserError(`Taylor importance needs gradients of the model, which could not be built: ${e instanceof Error ? e.message : String(e)}`);
  }
  const session = await Session.create(grad.model, { threads: options.threads });
  const scores = new Float64Array(layout.units.length);
  const batch = options.batch ?? 16;
  try {
    const names = [...points.keys()];
    // the activations: expose them in the gradient graph when they are not outputs already
    const actSession = await Session.create(model, { expose: names, threads: options.threads });
    try {
      for (let start = 0; start < samples; start += batch) {
        options.signal?.throwIfAborted();
        const end = Math.min(samples, start + batch);
        const part: Record<string, ArrayTensor> = {};
        for (const [k, v] of Object.entries(feeds)) part[k] = sliceBatch(v, start, end);
        const gOut = await session.run(part, names.map((n) => grad.gradients[n]!));
        const aOut = await actSession.run(part, names);
        for (const [name, pt] of points) {
          const a = aOut[name]!.data as Float32Array;
          const gr = gOut[grad.gradients[name]!]!.data as Float32Array;
          const rows = end - start;
          const perSample = a.length / rows;
          const units = pt.width / pt.group;
          const off = pt.kind === 'neuron' ? layout.neuronOffset.get(pt.block)! : layout.headOffset.get(pt.block)!;
          const acc = new Float64Array(units);
          for (let s = 0; s < rows; s++) {
            acc.fill(0);
            const base = s * perSample;
            for (let i = 0; i < perSample; i++) {
              const f = i % pt.width;
              acc[(f / pt.group) | 0] += a[base + i]! * gr[base + i]!;
            }
            for (let u = 0; u < units; u++) scores[off + u] += Math.abs(acc[u]!) / samples;
          }
        }
      }
    } finally {
      await actSession.release();
    }
  } finally {
    await session.release();
  }
  return scores;
}

/**
 * LLM-Drop: for each attention (or MLP) sublayer, the mean over tokens of cos(X, X + F(X)) where
 * X is the residual input and F the sublayer. Returns [block index, similarity] sorted most
 * similar first: the sublayers that change the residual stream least.
 */
export async function sublayerSimilarity(model: Model, structure: Structure, feeds: Record<string, ArrayTensor>, kind: 'attention' | 'mlp', threads?: number): Promise<{ block: number; similarity: number }[]> {
  const residual = (b: Structure['blocks'][number]) => (kind === 'attention' ? b.attentionResidual : b.mlpResidual);
  const pairs = structure.blocks.filter((b) => residual(b)).map((b) => ({ block: b.index, x: residual(b)!.skip.name, y: residual(b)!.add.output(0).name }));
  if (pairs.length === 0) throw new UserError(`no ${kind === 'attention' ? 'attention' : 'MLP'} sublayer of ${model.sourcePath ?? 'the model'} has a residual Add, so none can be dropped`);
  const names = [...new Set(pairs.flatMap((p) => [p.x, p.y]))];
  const session = await Session.create(model, { expose: names, threads });
  try {
    const out = await session.run(feeds, names);
    const result = pairs.map((p) => {
      const x = out[p.x]!.data as Float32Array;
      const y = out[p.y]!.data as Float32Array;
      const d = out[p.x]!.dims[out[p.x]!.dims.length - 1]!;
      let total = 0;
      const rows = x.length / d;
      for (let r = 0; r < rows; r++) {
        let xy = 0;
        let xx = 0;
        let yy = 0;
        for (let j = r * d; j < (r + 1) * d; j++) {
          xy += x[j]! * y[j]!;
          xx += x[j]! * x[j]!;
          yy += y[j]! * y[j]!;
        }
        total += xy / Math.max(1e-12, Math.sqrt(xx * yy));
      }
      return { block: p.block, similarity: total / rows };
    });
    return result.sort((a, b) => b.similarity - a.similarity);
  } finally {
    await session.release();
  }
}

/** sublayerSimilarity of the attention sublayers. */
export function attentionSimilarity(model: Model, structure: Structure, feeds: Record<string, ArrayTensor>, threads?: number): Promise<{ block: number; similarity: number }[]> {
  return sublayerSimilarity(model, structure, feeds, 'attention', threads);
}
