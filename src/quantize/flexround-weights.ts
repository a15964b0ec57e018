// FlexRound over a whole model: every selected linear's grid (from the range search) is the
// start; the rounding is learned layer by layer (each layer's own output error on calibration
// inputs) or block by block through the reconstruction engine (each transformer block's
// output against the float block's, fed the output of the already-quantized blocks before it).
// When activations are quantized (static schemes), block-wise mode also learns the step size of
// each linear input's activation quantizer (LSQ-style, in log space, from the calibrated one).
import type { Dataset } from '../data/dataset.js';
import { constantSource } from '../discover/constants.js';
import type { LinearLayer } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { transpose, weightOutIn } from '../export/linear-weight.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Graph } from '../ir/graph.js';
import type { Value } from '../ir/value.js';
import type { ActivationParams } from '../export/qdq.js';
import { inStep, silentProgress, type Progress } from '../progress.js';
import { reconstructBlocks } from '../reconstruct/engine.js';
import { blockLinears } from '../reconstruct/plans.js';
import type { TrainableParameter } from '../autodiff/optimizer.js';
import { bakeFlexRound, deltaNames, fakeQuantWeight, flexRoundLayer, zeroDeltas, type FlexRoundDeltas } from './flexround.js';
import { captureRowsBlockwise, type RowStream } from './flexround-rows.js';
import { standInQuantized } from './stand-in.js';
import type { FlexRoundSettings } from './scheme.js';
import { dequantizeWeight, type QuantizedWeight } from './weight-quantizer.js';

export interface FlexRoundUnitReport {
  /** A layer name (layer-wise) or `block N` (block-wise). */
  unit: string;
  lossBefore: number;
  lossAfter: number;
  kept: 'learned' | 'initial';
  seconds: number;
  /** Of `seconds`, the time in optimizer steps. */
  stepSeconds?: number;
  /** Why the unit was not learned (too little calibration data for it), when it was not. */
  notLearned?: string;
}

export interface FlexRoundWeightsResult {
  weights: QuantizedWeight[];
  mode: 'layer' | 'block';
  iters: number;
  lr: number;
  layers: FlexRoundUnitReport[];
  /** Learned activation quantizers (block-wise with quantized activations), by input tensor name. */
  activations: Map<string, ActivationParams>;
  seconds: number;
}

/** One learned activation step: the calibrated scale and the learned one. */
export interface LearnedActivation {
  name: string;
  start: number;
  learned: number;
}

/**
 * The activation step size is s0·exp(ACT_LOG_RATE·α) with α the learned parameter: the factor
 * makes the log-step move twenty times slower than the weights' log-scales under the same Adam
 * learning rate (the reference learns activation steps at a far lower rate than the weights; on
 * vit_mnist w4a8, factors 0.01 to 0.3 gave eval KL 3.4e-4 to 6.1e-4 with 0.05 the lowest, and
 * larger factors clip more of the calibration set's range than the evaluation data tolerates).
 */
export const ACT_LOG_RATE = 0.05;

/** The learned step size of an activation quantizer (float32, as exported); α = 0 gives `start`. */
export function learnedStep(start: number, alpha: number): number {
  return alpha === 0 ? start : Math.fround(start * Math.exp(Math.fround(ACT_LOG_RATE * alpha)));
}

export interface FlexRoundRunOptions {
  batchSize?: number;
  threads?: number;
  signal?: AbortSignal;
  progress?: Progress;
}

/**
 * Learns the rounding of every linear of `linears` (in `model`, still float), starting from
 * the grids `start` (one per linear, in order). Returns new QuantizedWeights on the same
 * layout; with `iters` 0 they are `start` bit for bit. `from(i)`, when it gives one, is the
 * weight the start's levels round from (weightRoundingTo: an earlier decision such as GPTQ's is
 * the start); by default the float weight (the start is round to nearest). It is asked for each
 * linear when that linear is learned, so that no copy of all weights is held at once.
 *
 * Layer-wise, the calibration inputs of the linears are captured a segment of the graph at a
 * time (captureRowsBlockwise) and the linears learned in the order of their segments: no session
 * holds the whole model, and only one segment's layer inputs are held.
 */
export async function flexRoundWeights(
  model: Model,
  calibration: Dataset,
  linears: LinearLayer[],
  start: QuantizedWeight[],
  settings: FlexRoundSettings = {},
  run: FlexRoundRunOptions = {},
  activations: ReadonlyMap<string, ActivationParams> = new Map(),
  from: (i: number) => Float32Array | undefined = () => undefined,
): Promise<FlexRoundWeightsResult> {
  const started = performance.now();
  const iters = settings.iters ?? 500;
  const mode = settings.mode ?? 'block';
  // 3e-3 for both objectives: block-wise, it had lower eval KL than 1e-2 on 10 of the 18 w3/w4 rows of the method table and 7 of the 10 language-model rows (docs/flexround.md, "Defaults chosen on the zoo")
  const lr = settings.lr ?? 3e-3;
  if (!(Number.isInteger(iters) && iters >= 0)) throw new UserError(`FlexRound iterations must be a whole number >= 0, not ${iters}`);
  if (!(lr > 0)) throw new UserError(`FlexRound learning rate must be positive, not ${lr}`);
  const progress = run.progress ?? silentProgress;
  const minTokens = settings.minTokensPerInput ?? DEFAULT_MIN_TOKENS_PER_INPUT;
  if (!(minTokens >= 0)) throw new UserError(`FlexRound's calibration tokens per input must be a number >= 0, not ${minTokens}`);
  const weights = start.slice();
  const reports: FlexRoundUnitReport[] = [];
  let layerWise = linears.map((_, i) => i);
  const learnedActs = new Map<string, ActivationParams>();
  // what the layers learned one at a time read: the model with the blocks as learned
  let quantized: Model | undefined;
  if (iters > 0 && mode === 'block') {
    const acts = (settings.learnActivations ?? true) ? activations : new Map<string, ActivationParams>();
    const r = await blockWise(model, calibration, linears, start, settings, iters, lr, run, acts, from, minTokens);
    r.weights.forEach((w, i) => {
      if (w) weights[i] = w;
    });
    for (const [k, v] of r.activations) learnedActs.set(k, v);
    reports.push(...r.reports);
    layerWise = linears.map((_, i) => i).filter((i) => !r.weights.has(i));
    quantized = r.model;
  }
  if (iters > 0 && layerWise.length > 0) {
    const inputOf = (i: number): string => linears[i]!.node.input(0)!.name;
    const tensors = [...new Map(layerWise.map((i) => [inputOf(i), { name: inputOf(i), k: linears[i]!.inFeatures }])).values()];
    // After the blocks (heads, shared weights), a layer is fitted as sequential GPTQ fits it: on
    // the inputs the quantized model gives it, against the float model's outputs. Measured
    // against its own float inputs, learning undid what the start (GPTQ's levels) was fitted for:
    // phi_moby's head error fell twelve-fold while the model's KL to float rose (docs/flexround.md).
    if (quantized) for (const i of layerWise) standInQuantized(quantizedLinear(quantized, linears[i]!), start[i]!);
    const capture = (m: Model, of = tensors): Promise<RowStream> => captureRowsBlockwise(m, calibration, of, { tokens: settings.tokens ?? 4096, samples: settings.samples, batchSize: run.batchSize, threads: run.threads, signal: run.signal });
    const rows = await capture(model);
    let quantizedRows = quantized ? await capture(quantized) : undefined;
    try {
      // the rows come a segment at a time: learn the linears in their segments' order (stable)
      const order = layerWise.slice().sort((a, b) => rows.segmentOf(inputOf(a)) - rows.segmentOf(inputOf(b)));
      await inStep(progress, 'flexround (layer-wise)', order.length, async (tick) => {
        for (const [done, i] of order.entries()) {
          const l = linears[i]!;
          const floatRows = await rows.take(inputOf(i));
          const x = quantizedRows ? await quantizedRows.take(inputOf(i)) : floatRows;
          const decided = from(i);
          const short = decided ? tooLittleData(floatRows.length / l.inFeatures, l.inFeatures, minTokens) : undefined;
          if (short) {
            reports.push({ unit: l.name, lossBefore: NaN, lossAfter: NaN, kept: 'initial', seconds: 0, notLearned: short });
            tick(done + 1, `${l.name}: kept the start (${short})`);
            continue;
          }
          const r = await flexRoundLayer(weightOutIn(l), start[i]!, x, { iters, lr, batch: settings.batch ?? 256, learnGrid: settings.learnGrid, seed: settings.seed, threads: run.threads, signal: run.signal, from: decided, floatInputs: quantizedRows ? floatRows : undefined, minGain: MIN_GAIN });
          weights[i] = r.weight;
          reports.push({ unit: l.name, lossBefore: r.lossBefore, lossAfter: r.lossAfter, kept: r.kept, seconds: r.seconds, stepSeconds: r.stepSeconds });
          tick(done + 1, `${l.name}: ${r.lossBefore.toExponential(2)} -> ${r.lossAfter.toExponential(2)}`);
          if (quantized && quantizedRows && r.kept === 'learned' && done + 1 < order.length) {
            // the layers after it read what it gives as learned (an MLP's second linear after its
            // first): their quantized rows are captured again, with this layer's learned weight
            standInQuantized(quantizedLinear(quantized, l), r.weight);
            await quantizedRows.close();
            const later = new Set(order.slice(done + 1).map(inputOf));
            quantizedRows = await capture(quantized, tensors.filter((t) => later.has(t.name)));
          }
        }
      });
    } finally {
      await rows.close();
      await quantizedRows?.close();
    }
  }
  return { weights, mode, iters, lr, layers: reports, activations: learnedActs, seconds: (performance.now() - started) / 1000 };
}

/**
 * Block-wise FlexRound through the reconstruction engine. Linears whose weight is a plain
 * initializer used by that linear alone are learned with their block; the others (heads,
 * shared weights) are left to the layer-wise pass (their indices are absent from the result).
 */
async function blockWise(
  model: Model,
  calibration: Dataset,
  linears: LinearLayer[],
  start: QuantizedWeight[],
  settings: FlexRoundSettings,
  iters: number,
  lr: number,
  run: FlexRoundRunOptions,
  activations: ReadonlyMap<string, ActivationParams>,
  from: (i: number) => Float32Array | undefined,
  minTokens: number,
): Promise<{ weights: Map<number, QuantizedWeight>; reports: FlexRoundUnitReport[]; activations: Map<string, ActivationParams>; model: Model }> {
  const index = new Map<string, number>(); // weight initializer name -> linear index
  const uses = new Map<string, number>();
  linears.forEach((l, i) => {
    const src = constantSource(l.weight);
    if (!src?.initializer || src !== l.weight) return;
    uses.set(src.name, (uses.get(src.name) ?? 0) + 1);
    index.set(src.name, i);
  });
  for (const [name, n] of uses) if (n > 1 || model.graph.value(name)!.uses().length > 1) index.delete(name);
  const work = model.clone();
  const floats = new Map<number, Float32Array>(); // [n, k] float weights
  const learned = new Map<number, FlexRoundDeltas>();
  const learnedActs = new Map<string, ActivationParams>();
  const notLearned: FlexRoundUnitReport[] = [];
  const kept = new Set<number>(); // linears of the blocks left at their start
  const result = await reconstructBlocks(work, {
    calibration,
    reference: model,
    iterations: iters,
    batchSize: settings.batch ?? 4,
    optimizer: { kind: 'adam', lr, schedule: 'cosine' },
    minGain: MIN_GAIN,
    seed: settings.seed,
    samples: settings.samples,
    captureBatch: run.batchSize,
    threads: run.threads,
    progress: run.progress,
    signal: run.signal,
    plan: (span, block, reconstructed, data) => {
      const mine = blockLinears(span)
        .map((l) => l.weight.name)
        .filter((n) => index.has(n) && block.graph.value(n)?.initializer !== undefined);
      const names = [...new Set(mine)];
      if (names.length === 0) return undefined;
      const decided = new Map(names.map((n) => [n, from(index.get(n)!)]));
      const widest = Math.max(...names.map((n) => linears[index.get(n)!]!.inFeatures));
      const short = data && [...decided.values()].some((f) => f) ? tooLittleData(data.tokens, widest, minTokens) : undefined;
      if (short) {
        // the block keeps its start, and the blocks after it read what it gives quantized
        for (const n of names) {
          const i = index.get(n)!;
          kept.add(i);
          standInQuantized(quantizedLinear(reconstructed, linears[i]!), start[i]!);
        }
        notLearned.push({ unit: `block ${span.index}`, lossBefore: NaN, lossAfter: NaN, kept: 'initial', seconds: 0, notLearned: short });
        return undefined;
      }
      const params: TrainableParameter[] = [];
      for (const n of names) {
        const i = index.get(n)!;
        const q = start[i]!;
        floats.set(i, decided.get(n) ?? weightOutIn(linears[i]!));
        const z = zeroDeltas(q);
        const d = deltaNames(n);
        if (settings.learnGrid ?? true) params.push({ name: d.d1, dims: [q.n, q.groups], init: z.d1 });
        params.push({ name: d.d2, dims: [q.n, q.groups * q.blockSize], init: z.d2 }, { name: d.d3, dims: [q.n], init: z.d3 });
      }
      // the inputs of the learned linears whose activations are quantized: one step size each
      const inputsOf = new Map(names.map((n) => [n, linears[index.get(n)!]!.node.input(0)!.name]));
      const actInputs = [...new Set(inputsOf.values())].filter((x) => activations.has(x));
      for (const x of actInputs) params.push({ name: actParamName(x), dims: [1], init: new Float32Array(1) });
      return {
        params,
        buildBlock(graph, values) {
          const fq = new Map(actInputs.map((x) => [x, fakeQuantActivation(graph, x, activations.get(x)!, values.get(actParamName(x))!)]));
          for (const n of names) {
            const x = fq.get(inputsOf.get(n)!);
            if (x) for (const node of linearNodes(graph, n)) node.setInput(0, x);
          }
          for (const n of names) {
            const i = index.get(n)!;
            const l = linears[i]!;
            const q = start[i]!;
            const d = deltaNames(n);
            const d1 = values.get(d.d1) ?? graph.addInitializer(Tensor.from(d.d1, DataType.FLOAT, [q.n, q.groups], new Float32Array(q.n * q.groups)));
            let wq = fakeQuantWeight(graph, n, floats.get(i)!, q, { d1, d2: values.get(d.d2)!, d3: values.get(d.d3)! });
            if (!l.transB) wq = graph.addNode('Transpose', [wq], 1, { attributes: { perm: { type: 'ints', value: [1, 0] } } }).output(0);
            const v = graph.value(n)!;
            for (const use of [...v.uses()]) use.node.setInput(use.index, wq);
          }
          graph.removeUnusedInitializers();
          graph.toposort();
        },
        bake(target, values) {
          for (const n of names) {
            const i = index.get(n)!;
            const q = start[i]!;
            const d = deltaNames(n);
            const z = zeroDeltas(q);
            const deltas: FlexRoundDeltas = { d1: values.get(d.d1) ?? z.d1, d2: values.get(d.d2) ?? z.d2, d3: values.get(d.d3) ?? z.d3 };
            learned.set(i, deltas);
            // the next blocks see this one quantized
            const deq = dequantizeWeight(bakeFlexRound(floats.get(i)!, q, deltas));
            const stored = linears[i]!.transB ? deq : transpose(deq, q.n, q.k);
            const v = target.graph.value(n)!;
            v.graph!.setInitializer(v, Tensor.fromBytes(n, DataType.FLOAT, [...v.initializer!.dims], new Uint8Array(stored.buffer.slice(0))));
          }
          // the next blocks see this one's activations quantized with the learned steps, as exported
          for (const x of actInputs) {
            const a = activations.get(x)!;
            const act: ActivationParams = { ...a, scale: learnedStep(a.scale, values.get(actParamName(x))?.[0] ?? 0) };
            learnedActs.set(x, act);
            const deq = qdqActivation(target.graph, x, act);
            for (const n of names) if (inputsOf.get(n) === x) for (const node of linearNodes(target.graph, n)) node.setInput(0, deq);
          }
          target.graph.toposort();
        },
      };
    },
  });
  const weights = new Map<number, QuantizedWeight>();
  for (const [i, d] of learned) weights.set(i, bakeFlexRound(floats.get(i)!, start[i]!, d));
  for (const i of kept) weights.set(i, start[i]!);
  const reports: FlexRoundUnitReport[] = result.blocks
    .filter((b) => b.kept !== 'untouched')
    .map((b): FlexRoundUnitReport => ({ unit: `block ${b.index}`, lossBefore: b.lossBefore, lossAfter: b.lossAfter, kept: b.kept === 'learned' ? 'learned' : 'initial', seconds: b.seconds, stepSeconds: b.stepSeconds }))
    .concat(notLearned)
    .sort((a, b) => Number(a.unit.slice(6)) - Number(b.unit.slice(6)));
  return { weights, reports, activations: learnedActs, model: work };
}

/** `l` as it is in `copy` (a clone of the model `l` was discovered in): its weight is the copy's tensor of that name. */
function quantizedLinear(copy: Model, l: LinearLayer): LinearLayer {
  const weight = copy.graph.value(l.weight.name);
  if (!weight) throw new Error(`the weight '${l.weight.name}' of linear '${l.name}' is not in the reconstructed copy of the model`);
  return { ...l, weight };
}

/**
 * A unit keeps what it learned only when that lowers its calibration loss by at least this
 * fraction: a smaller gain is no evidence on held-out data (qwen2_moby w3: the head's learning
 * from GPTQ's levels lowered its calibration loss by 0.2% and raised the model's KL to float on
 * the evaluation text by 0.1%).
 */
export const MIN_GAIN = 0.01;

/** FlexRoundSettings.minTokensPerInput's default. */
export const DEFAULT_MIN_TOKENS_PER_INPUT = 8;

/** Why `tokens` calibration tokens are too few to learn a unit whose widest linear has `inputs` inputs; undefined when they are enough. */
export function tooLittleData(tokens: number, inputs: number, minPerInput: number): string | undefined {
  if (tokens >= minPerInput * inputs) return undefined;
  return `${tokens} calibration tokens, ${(tokens / inputs).toFixed(1)} per input of its widest linear (${inputs}); learning away from the start needs ${minPerInput}`;
}

function actParamName(input: string): string {
  return `${input}__flexround_act_log_step`;
}

/** The nodes reading initializer `weight` as their weight input (input 1 of MatMul/Gemm). */
function linearNodes(graph: Graph, weight: string) {
  return graph.value(weight)!.uses().filter((u) => u.index === 1).map((u) => u.node);
}

/**
 * x̂ = (clamp(⌊x / s⌉ + z, 0, qmax) − z) · s with s = s0·exp(ACT_LOG_RATE·α): the activation
 * quantizer of `input` in differentiable form (Round passes gradients straight through, so the
 * gradient of s is LSQ's). With α = 0 it computes what QuantizeLinear/DequantizeLinear do.
 */
export function fakeQuantActivation(g: Graph, input: string, a: ActivationParams, alpha: Value): Value {
  const c = (name: string, v: number): Value => g.addInitializer(Tensor.from(`${input}__flexround_act_${name}`, DataType.FLOAT, [], [v]));
  const op = (type: string, inputs: Value[]): Value => g.addNode(type, inputs, 1).output(0);
  const s = op('Mul', [c('s0', a.scale), op('Exp', [op('Mul', [alpha, c('rate', ACT_LOG_RATE)])])]);
  const z = c('z', a.zeroPoint);
  const codes = op('Clip', [op('Add', [op('Round', [op('Div', [g.value(input)!, s])]), z]), c('qmin', 0), c('qmax', a.qmax ?? 255)]);
  return op('Mul', [op('Sub', [codes, z]), s]);
}

/** QuantizeLinear → (Clip) → DequantizeLinear of `input` with fixed parameters (uint8 codes). */
function qdqActivation(g: Graph, input: string, a: ActivationParams): Value {
  const c = (name: string, dtype: DataType, v: number): Value => g.addInitializer(Tensor.from(`${input}__flexround_act_${name}`, dtype, [], [v]));
  const scale = c('scale', DataType.FLOAT, a.scale);
  const zp = c('zero_point', DataType.UINT8, a.zeroPoint);
  let q = g.addNode('QuantizeLinear', [g.value(input)!, scale, zp], 1).output(0);
  if ((a.qmax ?? 255) < 255) q = g.addNode('Clip', [q, c('qmin', DataType.UINT8, 0), c('qmax', DataType.UINT8, a.qmax!)], 1).output(0);
  return g.addNode('DequantizeLinear', [q, scale, zp], 1).output(0);
}
