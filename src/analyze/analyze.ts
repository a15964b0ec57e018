import { batches, bindDataset, type BoundDataset } from '../data/bind.js';
import { asDataset, type DatasetInput } from '../data/as-dataset.js';
import { findMergedDecoder } from '../discover/merged.js';
import type { Attention, Block, LinearLayer, Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { transpose, weightOutIn } from '../export/linear-weight.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { inStep, type Progress, silentProgress } from '../progress.js';
import { Session } from '../runtime/session.js';
import { type AttentionForm, discoverWithForms } from './forms.js';
import { type HeadRequest, withAnalysisOutputs } from './stats-graph.js';

/** Which tensor a layer metric is measured on (see docs/analyze.md). */
export type TensorKind = 'attention-output' | 'mlp-output' | 'norm-input' | 'norm-output' | 'block-output';

export interface AnalyzeOptions {
  /** Samples to use (default: all). */
  samples?: number;
  /** Samples per forward pass (default 8; 1 when the model's tensors do not lead with the batch). */
  batchSize?: number;
  threads?: number;
  progress?: Progress;
  signal?: AbortSignal;
  /** A channel is an outlier channel when its max |x| exceeds this multiple of the median channel's (default 6). */
  outlierFactor?: number;
  /** Predicted SQNR (dB) under which per-tensor 8-bit is said to break a layer (default 20). */
  minSqnr?: number;
  /** A head is a no-op head when this share of its attention goes to one key (default 0.5)... */
  noOpShare?: number;
  /** ...and its update to the residual is under this fraction of the residual's norm (default 0.1). */
  noOpUpdate?: number;
  /** Weight quantization assumed by the prediction (default per-channel, as `quantize` does). */
  weights?: 'per-channel' | 'per-tensor';
}

export interface TensorMetrics {
  /** Value name in the graph. */
  tensor: string;
  /** Module-like name: "block 0 mlp-output" style, from the structure. */
  layer: string;
  block: number | null;
  kinds: TensorKind[];
  /** Mean over samples of max |x| (the reference code's AverageMeter of the inf norm). */
  infNorm: number;
  /** Largest |x| seen on any sample. */
  maxAbs: number;
  /** Mean over samples of E[(x−μ)⁴] / (σ⁴ + 1e-6), σ the unbiased standard deviation. */
  kurtosis: number;
  min: number;
  max: number;
  /** Root mean square over all samples. */
  rms: number;
  /** Max |x| per channel (last axis) over all samples. */
  channelMaxima: number[];
  /** Channels whose max |x| exceeds outlierFactor × the median channel's, largest first. */
  outlierChannels: number[];
}

export interface HeadMetrics {
  head: number;
  /** Mean share of attention probability on the first key (CLS / BOS). */
  firstTokenShare: number;
  /** The key position that receives most attention mass, and its mean share. */
  sinkKey: number;
  sinkShare: number;
  /** Mean entropy of the attention distribution, in nats, and that of uniform attention. */
  entropy: number;
  maxEntropy: number;
  /** Mean ‖context_h‖ per token (what the head takes from the values). */
  contextNorm: number | null;
  /** Mean ‖context_h W_o,h‖ per token (the head's update to the residual), and relative to the residual's norm. */
  updateNorm: number | null;
  relativeUpdate: number | null;
  noOp: boolean;
}

export interface AttentionMetrics {
  block: number;
  softmax: string;
  form: AttentionForm['kind'];
  gamma?: number;
  zeta?: number;
  gated: boolean;
  heads: HeadMetrics[];
  noOpHeads: number[];
  /** The tensor of this block with the largest inf norm: the one its no-op heads feed. */
  feeds: string | null;
}

export type Recommendation = 'per-tensor' | 'per-channel' | 'repquant' | '16-bit' | 'exclude';

export interface LayerPrediction {
  /** Linear layer name (as quantize --exclude matches it). */
  layer: string;
  input: string;
  output: string;
  /** SQNR of the input under per-tensor asymmetric 8-bit with min-max range (dB). */
  inputSqnr: number;
  /** SQNR of this layer's output from its own quantization alone (dB): where a break starts. */
  localSqnr: number;
  /**
   * Predicted SQNR of the layer output in the fully quantized model (dB): its own noise plus
   * the noise that reaches its input from the quantized layers before it (what `quantize`
   * measures per layer).
   */
  predictedSqnr: number;
  breaks: boolean;
  recommendation: Recommendation;
  reason: string;
}

export interface AnalysisResult {
  model: string;
  dataset: string;
  samples: number;
  layers: TensorMetrics[];
  attention: AttentionMetrics[];
  predictions: LayerPrediction[];
  /** Attentions whose heads are not measured, with the reason. */
  skipped: { block: number; reason: string }[];
  summary: {
    maxInfNorm: number;
    maxInfNormLayer: string | null;
    avgKurtosis: number;
    maxKurtosis: number;
    maxKurtosisLayer: string | null;
    outlierChannels: number;
    noOpHeads: number;
    breaking: string[];
    /** Ready for `slimformer quantize --exclude`: the layers per-tensor 8-bit is not advised for. */
    exclude: string[];
  };
  seconds: number;
}

interface Acc {
  n: number;
  infSum: number;
  maxAbs: number;
  kurtSum: number;
  min: number;
  max: number;
  sumSq: number;
  elements: number;
  channels: Float64Array | undefined;
}

interface HeadAcc {
  queries: number;
  tokens: number;
  first: Float64Array;
  keyMass: Float64Array;
  entropy: Float64Array;
  context: Float64Array;
  update: Float64Array;
  residual: number;
  residualTokens: number;
  keys: number;
  hasUpdate: boolean;
}

interface Planned {
  tensor: string;
  layer: string;
  block: number | null;
  kinds: TensorKind[];
}

/** The tensors the metrics are measured on, per block (documented in docs/analyze.md). */
export function analysisTensors(structure: Structure): Planned[] {
  const out = new Map<string, Planned>();
  const add = (v: { name: string } | undefined, block: number | null, kind: TensorKind, label: string): void => {
    if (!v) return;
    const p = out.get(v.name);
    if (p) {
      if (!p.kinds.includes(kind)) p.kinds.push(kind);
      return;
    }
    out.set(v.name, { tensor: v.name, layer: label, block, kinds: [kind] });
  };
  const inBlock = new Set<unknown>();
  for (const b of structure.blocks) {
    const pre = `blocks.${b.index}`;
    for (const [norm, which] of [
      [b.attentionNorm, 'attention_norm'],
      [b.mlpNorm, 'mlp_norm'],
    ] as const) {
      if (!norm) continue;
      inBlock.add(norm);
      add(norm.input, b.index, 'norm-input', `${pre}.${which}.input`);
      add(norm.output, b.index, 'norm-output', `${pre}.${which}`);
    }
    add(b.attention?.o.output, b.index, 'attention-output', `${pre}.attention.output`);
    add(b.mlp?.output, b.index, 'mlp-output', `${pre}.mlp.output`);
    const output = blockOutput(b);
    add(output, b.index, 'block-output', `${pre}.output`);
  }
  for (const n of structure.norms) {
    if (inBlock.has(n)) continue;
    const label = normLabel(n);
    add(n.input, null, 'norm-input', `${label}.input`);
    add(n.output, null, 'norm-output', label);
  }
  return [...out.values()];
}

/** "ln_f" from a node named "/ln_f/LayerNormalization"; the output's name otherwise. */
function normLabel(n: Structure['norms'][number]): string {
  const names = n.nodes.map((x) => x.name).filter((x) => x.startsWith('/'));
  const parts = names[0]?.split('/').filter(Boolean) ?? [];
  return parts.length >= 2 ? parts.slice(0, -1).join('.') : n.output.name;
}

function blockOutput(b: Block): { name: string } | undefined {
  if (b.placement === 'post-ln') return b.mlpNorm?.output ?? b.attentionNorm?.output;
  return b.mlpResidual?.add.output(0) ?? b.attentionResidual?.add.output(0);
}

/**
 * Streams calibration samples through the model and measures, per layer, the outlier metrics
 * of Bondarenko et al. (inf norm, kurtosis), per-channel maxima and outlier channels; per
 * attention head, where its probability mass goes and how much it changes the residual; and
 * predicts, per linear layer, the SQNR that w8a8 with per-tensor activations would give.
 * All reductions run inside onnxruntime; only a few numbers per tensor come back per batch.
 */
export async function analyzeModel(model: Model, data: DatasetInput | BoundDataset, options: AnalyzeOptions = {}): Promise<AnalysisResult> {
  const started = performance.now();
  const merged = findMergedDecoder(model);
  if (merged) {
    throw new UserError(`${model.sourcePath ?? 'the model'} is a merged decoder (If '${merged.node.name}' on '${merged.flag.name}'): analyze reads tensors inside the layers, which onnxruntime cannot return from inside an If; analyze decoder_with_past_model.onnx or the one-graph KV-cache export of the same weights`);
  }
  const bound: BoundDataset = typeof data !== 'string' && 'feeds' in data ? data : bindDataset(asDataset(data), model);
  const { structure, forms } = discoverWithForms(model);
  if (structure.linears.length === 0 && structure.norms.length === 0) {
    throw new UserError(`${model.sourcePath ?? 'the model'} has no linear layer or LayerNorm to analyze`);
  }
  const planned = analysisTensors(structure);
  const linearIo = new Set<string>();
  for (const l of structure.linears) {
    linearIo.add(l.node.input(0)!.name);
    linearIo.add(l.output.name);
  }
  const all = [...new Set([...planned.map((p) => p.tensor), ...linearIo])].filter((n) => !model.graph.value(n)?.initializer);
  const skipped: AnalysisResult['skipped'] = [];
  const headReqs: (HeadRequest & { attention: Attention; block: number; form: AttentionForm })[] = [];
  for (const b of structure.blocks) {
    const a = b.attention;
    if (!a) continue;
    const form = forms.find((f) => f.softmax === a.softmax.name);
    if (!form) {
      skipped.push({ block: b.index, reason: `heads not measured: no MatMul of the probabilities of Softmax '${a.softmax.name}' with v was found after it` });
      continue;
    }
    const wo = transpose(weightOutIn(a.o), a.o.outFeatures, a.o.inFeatures); // [in, out]
    const residual = b.attentionResidual?.skip.name;
    headReqs.push({
      key: a.softmax.name,
      heads: a.numHeads,
      probs: form.probs,
      context: form.context,
      outWeight: wo.length === a.numHeads * a.headSize * a.o.outFeatures ? { data: wo, heads: a.numHeads, headSize: a.headSize, hidden: a.o.outFeatures } : undefined,
      residual,
      attention: a,
      block: b.index,
      form,
    });
  }
  const limit = Math.min(options.samples ?? Infinity, bound.dataset.size);
  if (limit <= 0) throw new UserError(`dataset ${bound.dataset.path} has no samples to analyze`);
  const progress = options.progress ?? silentProgress;
  // Batches need every tensor to lead with the batch axis. One sample tells: a tensor with
  // more than one leading row then (torch's sequence-first [S, B, D], tokens flattened to
  // [B·S, D]) is measured one sample per run, the whole sample as one row.
  let stats = withAnalysisOutputs(model, all, headReqs);
  let batchSize = Math.max(1, Math.min(options.batchSize ?? 8, bound.maxBatch));
  if (batchSize > 1 && stats.tensors.size > 0) {
    const [first] = batches(bound, 1);
    const probe = await Session.create(stats.model, { threads: options.threads });
    let batchMajor: boolean;
    try {
      const out = await probe.run(first!.feeds, [...stats.tensors.values()].map((o) => o.flatShape));
      batchMajor = [...stats.tensors.values()].every((o) => ints(out[o.flatShape]!)[0] === 1);
    } finally {
      await probe.release();
    }
    if (!batchMajor) batchSize = 1;
  }
  if (batchSize === 1) stats = withAnalysisOutputs(model, all, headReqs, { wholeSample: true });
  const fetch = [...[...stats.tensors.values()].flatMap((o) => Object.values(o)), ...[...stats.heads.values()].flatMap((o) => Object.values(o).filter((x): x is string => typeof x === 'string'))];
  const session = await Session.create(stats.model, { threads: options.threads });
  const accs = new Map<string, Acc>(all.map((n) => [n, { n: 0, infSum: 0, maxAbs: 0, kurtSum: 0, min: Infinity, max: -Infinity, sumSq: 0, elements: 0, channels: undefined }]));
  const heads = new Map<string, HeadAcc>();
  let seen = 0;
  try {
    await inStep(progress, 'analyze', limit, async (tick) => {
      for (const batch of batches(bound, batchSize)) {
        options.signal?.throwIfAborted();
        if (seen >= limit) break;
        const count = Math.min(batch.count, limit - seen);
        const feeds = count === batch.count ? batch.feeds : sliceFeeds(batch.feeds, count);
        const out = await session.run(feeds, fetch);
        for (const [name, o] of stats.tensors) {
          const flat = ints(out[o.flatShape]!);
          // the first sample led with the batch axis everywhere; a later one must too
          if (flat[0] !== count) throw new UserError(`cannot analyze ${model.sourcePath ?? 'the model'}: tensor '${name}' has ${flat[0]} leading rows for ${count} samples (it does not lead with the batch axis); analyze with batchSize 1`);
          accumulate(accs.get(name)!, name, flat[1]!, out, o);
        }
        for (const [key, o] of stats.heads) accumulateHeads(heads, key, out, o);
        seen += count;
        tick(seen);
      }
    });
  } finally {
    await session.release();
  }

  const factor = options.outlierFactor ?? OUTLIER_FACTOR;
  const metrics = new Map<string, TensorMetrics>();
  for (const name of all) metrics.set(name, finish(accs.get(name)!, name, factor));
  const layers: TensorMetrics[] = planned.filter((p) => metrics.has(p.tensor)).map((p) => ({ ...metrics.get(p.tensor)!, layer: p.layer, block: p.block, kinds: p.kinds }));

  const attention: AttentionMetrics[] = headReqs.map((r) => finishHeads(r, heads.get(r.key), layers, options));
  const predictions = structure.linears.filter((l) => metrics.has(l.node.input(0)!.name) && metrics.has(l.output.name)).map((l) => predict(l, metrics.get(l.node.input(0)!.name)!, metrics.get(l.output.name)!, structure, options));
  propagateNoise(model, structure, predictions, metrics);

  const byInf = layers.reduce<TensorMetrics | undefined>((a, b) => (!a || b.infNorm > a.infNorm ? b : a), undefined);
  const byKurt = layers.reduce<TensorMetrics | undefined>((a, b) => (!a || b.kurtosis > a.kurtosis ? b : a), undefined);
  return {
    model: model.sourcePath ?? 'model',
    dataset: bound.dataset.path,
    samples: seen,
    layers,
    attention,
    predictions,
    skipped,
    summary: {
      maxInfNorm: byInf?.infNorm ?? 0,
      maxInfNormLayer: byInf?.layer ?? null,
      avgKurtosis: layers.length ? layers.reduce((a, b) => a + b.kurtosis, 0) / layers.length : 0,
      maxKurtosis: byKurt?.kurtosis ?? 0,
      maxKurtosisLayer: byKurt?.layer ?? null,
      outlierChannels: layers.reduce((a, b) => a + b.outlierChannels.length, 0),
      noOpHeads: attention.reduce((a, b) => a + b.noOpHeads.length, 0),
      breaking: predictions.filter((p) => p.breaks).map((p) => p.layer),
      exclude: predictions.filter((p) => p.recommendation !== 'per-tensor').map((p) => p.layer),
    },
    seconds: (performance.now() - started) / 1000,
  };
}

function sliceFeeds(feeds: Record<string, ArrayTensor>, count: number): Record<string, ArrayTensor> {
  const out: Record<string, ArrayTensor> = {};
  for (const [k, t] of Object.entries(feeds)) {
    const per = t.data.length / t.dims[0]!;
    out[k] = { dtype: t.dtype, dims: [count, ...t.dims.slice(1)], data: t.data.subarray(0, per * count) as ArrayTensor['data'] };
  }
  return out;
}

function ints(t: ArrayTensor): number[] {
  return Array.from(t.data as BigInt64Array, (x) => Number(x));
}

function f32(t: ArrayTensor): Float32Array {
  return t.data as Float32Array;
}

function accumulate(a: Acc, name: string, n: number, out: Record<string, ArrayTensor>, o: { absMax: string; mean: string; m2: string; m4: string; min: string; max: string; sumSquares: string; channelAbsMax: string }): void {
  const absMax = f32(out[o.absMax]!);
  const m2 = f32(out[o.m2]!);
  const m4 = f32(out[o.m4]!);
  for (let i = 0; i < absMax.length; i++) {
    if (!Number.isFinite(absMax[i]!)) throw new UserError(`tensor '${name}' holds NaN or infinite values on this data; the model overflows, so it cannot be analyzed`);
    const variance = n > 1 ? (m2[i]! * n) / (n - 1) : 0;
    a.infSum += absMax[i]!;
    a.maxAbs = Math.max(a.maxAbs, absMax[i]!);
    a.kurtSum += m4[i]! / (variance * variance + 1e-6);
    a.n++;
  }
  a.min = Math.min(a.min, f32(out[o.min]!)[0]!);
  a.max = Math.max(a.max, f32(out[o.max]!)[0]!);
  a.sumSq += f32(out[o.sumSquares]!)[0]!;
  a.elements += n * absMax.length;
  const ch = f32(out[o.channelAbsMax]!);
  if (!a.channels || a.channels.length !== ch.length) a.channels = new Float64Array(ch.length);
  for (let c = 0; c < ch.length; c++) if (ch[c]! > a.channels[c]!) a.channels[c] = ch[c]!;
}

function accumulateHeads(heads: Map<string, HeadAcc>, key: string, out: Record<string, ArrayTensor>, o: { probsShape: string; firstKey: string; keyMass: string; entropy: string; contextNorm?: string; updateNorm?: string; residualNorm?: string; residualShape?: string }): void {
  const [b, h, tq, tk] = ints(out[o.probsShape]!) as [number, number, number, number];
  let a = heads.get(key);
  if (!a) {
    a = { queries: 0, tokens: 0, first: new Float64Array(h), keyMass: new Float64Array(h * tk), entropy: new Float64Array(h), context: new Float64Array(h), update: new Float64Array(h), residual: 0, residualTokens: 0, keys: tk, hasUpdate: o.updateNorm !== undefined };
    heads.set(key, a);
  }
  if (tk > a.keys) {
    // longer sequences than before: widen the per-key table
    const wider = new Float64Array(h * tk);
    for (let i = 0; i < h; i++) for (let k = 0; k < a.keys; k++) wider[i * tk + k] = a.keyMass[i * a.keys + k]!;
    a.keyMass = wider;
    a.keys = tk;
  }
  const mass = f32(out[o.keyMass]!);
  for (let i = 0; i < h; i++) {
    a.first[i] += f32(out[o.firstKey]!)[i]!;
    a.entropy[i] += f32(out[o.entropy]!)[i]!;
    for (let k = 0; k < tk; k++) a.keyMass[i * a.keys + k] += mass[i * tk + k]!;
    if (o.contextNorm) a.context[i] += f32(out[o.contextNorm]!)[i]!;
    if (o.updateNorm) a.update[i] += f32(out[o.updateNorm]!)[i]!;
  }
  a.queries += b * tq;
  if (o.residualNorm && o.residualShape) {
    a.residual += f32(out[o.residualNorm]!)[0]!;
    a.residualTokens += ints(out[o.residualShape]!).reduce((x, y) => x * y, 1);
  }
}

function median(xs: ArrayLike<number>): number {
  const s = Array.from(xs).sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The default of AnalyzeOptions.outlierFactor (and of the w8a8 default's choice of RepQuant, quantize/auto-method.ts). */
export const OUTLIER_FACTOR = 6;

/** Channels whose max |x| exceeds `factor` × the median channel's, largest first. */
export function outlierChannels(channelMaxima: ArrayLike<number>, factor: number): number[] {
  const channels = Array.from(channelMaxima);
  const med = median(channels);
  return channels
    .map((v, c) => [v, c] as const)
    .filter(([v]) => v > factor * med && v > 0)
    .sort((x, y) => y[0] - x[0])
    .map(([, c]) => c);
}

function finish(a: Acc, name: string, factor: number): TensorMetrics {
  const channels = Array.from(a.channels ?? []);
  const outliers = outlierChannels(channels, factor);
  return {
    tensor: name,
    layer: name,
    block: null,
    kinds: [],
    infNorm: a.n ? a.infSum / a.n : 0,
    maxAbs: a.maxAbs,
    kurtosis: a.n ? a.kurtSum / a.n : 0,
    min: a.min,
    max: a.max,
    rms: a.elements ? Math.sqrt(a.sumSq / a.elements) : 0,
    channelMaxima: channels,
    outlierChannels: outliers,
  };
}

function finishHeads(r: { attention: Attention; block: number; form: AttentionForm; key: string }, a: HeadAcc | undefined, layers: TensorMetrics[], options: AnalyzeOptions): AttentionMetrics {
  const share = options.noOpShare ?? 0.5;
  const small = options.noOpUpdate ?? 0.1;
  const heads: HeadMetrics[] = [];
  const residual = a && a.residualTokens ? a.residual / a.residualTokens : null;
  const h = r.attention.numHeads;
  for (let i = 0; a && i < h; i++) {
    let sinkKey = 0;
    for (let k = 1; k < a.keys; k++) if (a.keyMass[i * a.keys + k]! > a.keyMass[i * a.keys + sinkKey]!) sinkKey = k;
    const sinkShare = a.keyMass[i * a.keys + sinkKey]! / a.queries;
    const tokens = a.queries; // context/update are per query token
    const update = a.hasUpdate ? a.update[i]! / tokens : null;
    const relativeUpdate = update !== null && residual ? update / residual : null;
    heads.push({
      head: i,
      firstTokenShare: a.first[i]! / a.queries,
      sinkKey,
      sinkShare,
      entropy: a.entropy[i]! / a.queries,
      maxEntropy: Math.log(a.keys),
      contextNorm: a.hasUpdate ? a.context[i]! / tokens : null,
      updateNorm: update,
      relativeUpdate,
      noOp: sinkShare >= share && relativeUpdate !== null && relativeUpdate < small,
    });
  }
  const mine = layers.filter((l) => l.block === r.block);
  const worst = mine.reduce<TensorMetrics | undefined>((x, y) => (!x || y.infNorm > x.infNorm ? y : x), undefined);
  return {
    block: r.block,
    softmax: r.key,
    form: r.form.kind,
    ...(r.form.gamma !== undefined ? { gamma: r.form.gamma, zeta: r.form.zeta } : {}),
    gated: r.form.gated,
    heads,
    noOpHeads: heads.filter((x) => x.noOp).map((x) => x.head),
    feeds: worst?.layer ?? null,
  };
}

/**
 * Predicted output SQNR of a linear layer under w8a8 (activations per tensor, asymmetric,
 * min-max range; weights symmetric int8 per output channel unless options.weights says per
 * tensor), from the additive-noise model: rounding noise of step Δ has variance Δ²/12 (capped
 * by the signal's own power, since a value smaller than Δ/2 rounds to zero), the input noise
 * passes through W, and the weight noise is multiplied by the input's energy.
 */
function predict(l: LinearLayer, x: TensorMetrics, y: TensorMetrics, structure: Structure, options: AnalyzeOptions): LayerPrediction {
  const minSqnr = options.minSqnr ?? 20;
  const w = weightOutIn(l);
  const n = l.inFeatures;
  const m = l.outFeatures;
  const rowEnergy = new Float64Array(m);
  const rowMax = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let e = 0;
    let mx = 0;
    for (let j = 0; j < n; j++) {
      const v = w[i * n + j]!;
      e += v * v;
      if (Math.abs(v) > mx) mx = Math.abs(v);
    }
    rowEnergy[i] = e;
    rowMax[i] = mx;
  }
  const tensorMax = rowMax.reduce((a, b) => Math.max(a, b), 0);
  const meanRowEnergy = rowEnergy.reduce((a, b) => a + b, 0) / m;
  let weightNoise = 0;
  for (let i = 0; i < m; i++) {
    const step = (options.weights === 'per-tensor' ? tensorMax : rowMax[i]!) / 127;
    weightNoise += (step * step) / 12;
  }
  weightNoise /= m;
  const xPower = x.rms * x.rms;
  const noiseFor = (bits: number): { input: number; output: number } => {
    const step = (Math.max(x.max, 0) - Math.min(x.min, 0)) / (2 ** bits - 1);
    const input = Math.min((step * step) / 12, xPower);
    return { input, output: input * meanRowEnergy + n * xPower * weightNoise };
  };
  const db = (s: number, e: number): number => (e <= 0 ? Infinity : 10 * Math.log10(s / e));
  const n8 = noiseFor(8);
  const inputSqnr = db(xPower, n8.input);
  const predictedSqnr = db(y.rms * y.rms, n8.output);
  const breaks = predictedSqnr < minSqnr;
  let recommendation: Recommendation = 'per-tensor';
  let reason = `predicted ${predictedSqnr.toFixed(1)} dB with per-tensor 8-bit activations`;
  if (breaks) {
    const fromNorm = structure.norms.some((nm) => nm.output.name === x.tensor);
    if (x.outlierChannels.length > 0) {
      recommendation = fromNorm ? 'repquant' : 'per-channel';
      reason = `input channels ${x.outlierChannels.slice(0, 8).join(', ')} hold outliers (max ${x.maxAbs.toPrecision(4)} vs median channel ${median(x.channelMaxima).toPrecision(4)})${fromNorm ? '; the input is a LayerNorm output, so its scale can move into the next weights (RepQuant)' : ''}`;
    } else if (db(y.rms * y.rms, noiseFor(16).output) >= minSqnr) {
      recommendation = '16-bit';
      reason = `no channel structure to the range; 16-bit activations predict ${db(y.rms * y.rms, noiseFor(16).output).toFixed(1)} dB`;
    } else {
      recommendation = 'exclude';
      reason = 'even 16-bit activations are predicted under the limit';
    }
  }
  return { layer: l.name, input: x.tensor, output: y.tensor, inputSqnr, localSqnr: predictedSqnr, predictedSqnr, breaks, recommendation, reason };
}

/**
 * Carries noise-to-signal ratios through the graph in topological order: a quantized linear
 * adds its own ratio to its input's; an Add of two measured tensors mixes their noise by
 * their powers; a product of two activations adds their ratios; any other node passes on the
 * largest ratio of its inputs. Sets each prediction's predictedSqnr from the result.
 */
function propagateNoise(model: Model, structure: Structure, predictions: LayerPrediction[], metrics: Map<string, TensorMetrics>): void {
  const local = new Map<string, number>();
  for (const p of predictions) {
    const l = structure.linears.find((x) => x.name === p.layer)!;
    local.set(l.node.name, 10 ** (-p.localSqnr / 10));
  }
  const power = (name: string): number | undefined => {
    const m = metrics.get(name);
    return m ? m.rms * m.rms : undefined;
  };
  const nsr = new Map<string, number>();
  const of = (name: string | undefined): number => (name ? (nsr.get(name) ?? 0) : 0);
  for (const node of model.graph.topologicalOrder()) {
    const ins = node.inputs.filter((v): v is NonNullable<typeof v> => v !== undefined && !v.initializer && !(v.producer()?.opType === 'Constant'));
    let r: number;
    const own = local.get(node.name);
    if (own !== undefined) {
      r = of(node.input(0)?.name) + own;
    } else if (node.opType === 'Add' && ins.length === 2) {
      const [a, b] = ins as [typeof ins[0], typeof ins[0]];
      const pa = power(a.name);
      const pb = power(b.name);
      const po = power(node.output(0).name) ?? (pa !== undefined && pb !== undefined ? pa + pb : undefined);
      r = pa !== undefined && pb !== undefined && po ? (of(a.name) * pa + of(b.name) * pb) / po : Math.max(of(a.name), of(b.name));
    } else if ((node.opType === 'MatMul' || node.opType === 'Mul') && ins.length === 2) {
      r = of(ins[0]!.name) + of(ins[1]!.name);
    } else {
      r = ins.reduce((x, v) => Math.max(x, of(v.name)), 0);
    }
    for (const o of node.outputs) nsr.set(o.name, r);
  }
  for (const p of predictions) {
    const r = nsr.get(p.output);
    if (r !== undefined && r > 0) p.predictedSqnr = -10 * Math.log10(r);
  }
}
