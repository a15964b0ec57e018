import { UserError } from '../errors.js';
import { quantizeLinearDynamic } from '../export/dynamic.js';
import { quantizeEmbeddingBlocked, quantizeEmbeddingInt8 } from '../export/embedding.js';
import { transpose, weightOutIn } from '../export/linear-weight.js';
import { quantizeLinearNBits } from '../export/matmul-nbits.js';
import { type ActivationParams, activationParams, quantizeLinearStatic } from '../export/qdq.js';
import { quantizeConvStatic } from '../export/conv.js';
import type { ConvForm } from '../quantize/conv-plan.js';
import { constantTensor } from '../discover/constants.js';
import { quantizeSoftmaxLog2, quantizeSoftmaxUniform } from '../export/softmax.js';
import type { Model } from '../ir/model.js';
import type { Value } from '../ir/value.js';
import { type Method, type QuantizeOptions, isFloat16, isStatic } from '../quantize/scheme.js';
import { chooseStaticMethod, type StaticMethodChoice } from '../quantize/auto-method.js';
import { checkOuterBits } from '../quantize/outer-layers.js';
import { assertNotQuantized } from '../quantize/select.js';
import { blockSizeOf, calibrateActivations, fitBlock, layerSetup, rtnWeight } from '../quantize/layer-setup.js';
import { QuantizationPlan, type FlexRoundRecord, type ReparamSummary } from '../quantize/plan.js';
import { compareModels, type Comparison, type TensorPair } from '../quantize/verify.js';
import { quantizeWeight, type QuantizedWeight, type WeightQuantSpec } from '../quantize/weight-quantizer.js';
import { inStep } from '../progress.js';
import { convertToFloat16 } from '../export/fp16.js';
import { cleanup } from './cleanup.js';
import { float16Scheme, float16Summary, reportFloat16, type Float16Summary } from './float16.js';
import { withDecodeSteps } from '../calibrate/decode-steps.js';
import { QUANTIZE_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass, PassContext, PassResult } from './pass.js';
import { findMergedDecoder } from '../discover/merged.js';
import { quantizeMerged, type MergedQuantizeSummary, type WeightRewrite } from './quantize-merged.js';
import { reparamSmoothQuant } from './smoothquant.js';
import { reparamRepQuant } from './repquant.js';
import { decideGptq } from './gptq.js';
import { decideFlexRound } from './flexround.js';
import { checkGrid } from './weight-decision.js';

export interface QuantizeSummary {
  scheme: string;
  method: string;
  /** The methods that filled the plan before it was written, in order (['smoothquant', 'gptq']; [] for round to nearest). */
  chain: string[];
  calibMethod: string | null;
  reconstruct: string;
  /** Static schemes without a method named: the outlier measurement that chose rtn or repquant (null otherwise). */
  methodChoice: StaticMethodChoice | null;
  /** Bits of the activation grid for static schemes (null otherwise). */
  activationBits: number | null;
  /** Post-softmax quantization: the form written, and what the other form would have given. */
  softmax: { mode: string; bits: number; attentions: number; outputSqnr: number | null; alternative: { mode: string; outputSqnr: number | null } } | null;
  /** FlexRound (method flexround): the mode, settings and each unit's calibration output error before (its start) and after. */
  flexround: FlexRoundRecord | null;
  /** What smoothquant/repquant folded into the norms and linears, and what they skipped. */
  reparam: ReparamSummary | null;
  /** Activation calibration (w8a8): samples seen, and whether the ranges came from the cache. */
  calibration: { samples: number; fromCache: boolean; seconds: number } | null;
  layers: { name: string; bits: number; sqnr: number | null }[];
  /** Convs quantized and the form of each: a patch MatMul (then a linear layer of `layers`) or QLinearConv (also in `layers`). */
  convs: { name: string; form: ConvForm }[];
  embeddings: { name: string; bits: number }[];
  excluded: { name: string; pattern: string }[];
  skipped: { name: string; reason: string }[];
  outputs: { name: string; sqnr: number }[];
  verifiedSamples: number;
  weightBytesBefore: number;
  weightBytesAfter: number;
  /** fp16 and q4f16: what the float16 conversion did (null for the other schemes). */
  float16: Float16Summary | null;
  /** A merged decoder (If on use_cache_branch): how its branches were written. */
  merged?: MergedQuantizeSummary;
}

/**
 * Quantization of every linear layer (and embedding table) under one of the schemes of
 * quantize/scheme.ts. Two phases: all parameters are decided first (the plan that earlier
 * passes of the run filled, the steps of `method`, round to nearest for the rest; activation
 * ranges from calibration), then the graph is rewritten once. The result is run
 * in onnxruntime against the float model on calibration samples before the pass returns, and
 * the report gives each layer's output SQNR and the end-to-end SQNR.
 */
export function quantize(options: QuantizePassOptions): Pass<QuantizeSummary> {
  checkOptions('quantize', QUANTIZE_OPTIONS, options);
  return {
    name: 'quantize',
    planRole: 'write',
    async run(model: Model, ctx: PassContext) {
      if (options.scheme === 'fp16') {
        const d = ctx.plan?.weights.values().next().value;
        // fp16 keeps every weight in float: integer levels decided for it would be dropped
        if (d) throw new UserError(`scheme fp16 writes no integer weights, so the ${d.method} decisions of pass '${d.pass}' (${ctx.plan!.weights.size} layer(s)) would be lost; give quantize a weight-only or static scheme, or leave ${d.pass} out`);
        return float16Scheme(model, ctx, options);
      }
      const merged = findMergedDecoder(model);
      if (merged) return quantizeMerged(model, merged, ctx, options, async (view, viewCtx, rewrites) => quantizeModel(view, await throughTheCache(view, viewCtx, options), options, rewrites));
      return quantizeModel(model, await throughTheCache(model, ctx, options), options);
    },
  };
}

/**
 * A decoder with a key/value cache calibrates on decode steps through a real cache too
 * (withDecodeSteps): activation ranges and GPTQ's Hessians then cover generation. FlexRound's
 * block reconstruction works on rows of one token count, so it keeps the prompts alone.
 */
async function throughTheCache(model: Model, ctx: PassContext, options: QuantizePassOptions): Promise<PassContext> {
  if (!ctx.calibration || options.decodeSteps !== true || options.method === 'flexround') return ctx;
  const { dataset, summary } = await withDecodeSteps(model, ctx.calibration, { threads: ctx.threads, signal: ctx.signal });
  if (summary) ctx.report.info('quantize', `${summary.prompts} calibration prompts also decoded teacher-forced through a cache of their first ${Math.min(...summary.cachedTokens)}-${Math.max(...summary.cachedTokens)} tokens: ${summary.prompts} decode-step samples added`);
  return { ...ctx, calibration: dataset };
}

/** The steps a method stands for, before the plan is written (`reconstruct: 'gptq'` adds GPTQ's). */
function methodSteps(method: Method | undefined, options: QuantizePassOptions): Method[] {
  const steps: Method[] = method === undefined || method === 'rtn' ? [] : [method];
  if ((options.reconstruct ?? 'none') === 'gptq' && method !== 'gptq') steps.push('gptq');
  return steps;
}

const REPARAM_STEPS = { smoothquant: reparamSmoothQuant, repquant: reparamRepQuant } as const;
const DECIDE_STEPS = { gptq: decideGptq, flexround: decideFlexRound } as const;

/**
 * The quantize pass on one graph: the steps of its method (reparameterize, decide weights) into
 * the plan, then the plan written once. Each weight rewrite is also recorded in `rewrites` when
 * given, so the same decisions can be written elsewhere (a merged decoder's other branch).
 */
async function quantizeModel(model: Model, ctx: PassContext, options: QuantizePassOptions, rewrites?: WeightRewrite[]): Promise<PassResult<QuantizeSummary>> {
  const scheme = options.scheme;
  assertNotQuantized(model, model.sourcePath ?? 'the model');
  if (options.outerBits !== undefined) checkOuterBits(options.outerBits);
  const plan = ctx.plan ?? new QuantizationPlan();
  const float = model.clone();
  let method = options.method;
  // a static scheme with no method named and nothing planned: repquant where the calibration data shows activation outliers
  let methodChoice: StaticMethodChoice | null = null;
  if (options.method === undefined && isStatic(scheme) && ctx.calibration && plan.empty) {
    methodChoice = await chooseStaticMethod(model, ctx.calibration, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal });
    method = methodChoice.method;
    ctx.report.info('quantize', methodChoice.reason, { data: { factor: methodChoice.factor, sites: methodChoice.sites } });
  }
  if ((method === 'smoothquant' || method === 'repquant') && !isStatic(scheme)) throw new UserError(`method ${method} needs a static scheme (w8a8, w6a6 or w4a4), not ${scheme}`);
  if (method === 'flexround' && (options.reconstruct ?? 'none') !== 'none') throw new UserError("option 'method' flexround learns the rounding itself; it does not combine with option 'reconstruct' gptq");
  for (const step of methodSteps(method, options)) {
    if (step === 'smoothquant' || step === 'repquant') await REPARAM_STEPS[step](model, ctx, options, plan, 'quantize');
    else if (step === 'gptq' || step === 'flexround') await DECIDE_STEPS[step](model, ctx, options, plan, 'quantize');
  }
  const summary = await writePlan(model, float, ctx, options, plan, rewrites);
  summary.method = options.method ?? methodChoice?.method ?? [...plan.chain].reverse().find((m) => m === 'gptq' || m === 'flexround') ?? plan.chain.at(-1) ?? 'rtn';
  summary.methodChoice = methodChoice;
  plan.clear();
  return { model, modified: true, summary };
}

/**
 * Writes the plan: every selected linear with the plan's decision for it (checked: same weight,
 * same grid) or round to nearest, activations with the plan's fixed grids or calibrated ranges,
 * then the graph rewritten once and compared with `float` on calibration samples.
 */
async function writePlan(model: Model, float: Model, ctx: PassContext, options: QuantizePassOptions, plan: QuantizationPlan, rewrites?: WeightRewrite[]): Promise<QuantizeSummary> {
  const scheme = options.scheme;
  // before the setup: rewriting patch embeddings changes the model's initializers
  const planned = plan.fixedActivations(model);
  const setup = layerSetup(model, ctx, options);
  const { sel, bitsOf, overrides, weightOnly, staticScheme, aBits, convPlan, perTensorWeights, softmaxSites } = setup;
  const softmaxMode = options.softmax ?? 'none';
  const fixed = new Map<string, ActivationParams>();
  for (const [n, a] of planned) {
    if (a.method !== 'repquant') continue;
    if (staticScheme && (a.params.qmax ?? 255) !== 2 ** aBits - 1) throw new UserError(`pass '${a.pass}' fixed the activation grid of '${n}' at ${Math.log2((a.params.qmax ?? 255) + 1)} bits, but scheme ${scheme} quantizes activations to ${aBits} bits; give both passes the same activation bits`);
    fixed.set(n, a.params);
  }
  if (planned.size > 0 && !staticScheme) ctx.report.warn('quantize', `${planned.size} activation grid(s) fixed by ${[...new Set([...planned.values()].map((a) => a.pass))].join(', ')} are not used: scheme ${scheme} quantizes no activations`);

  // phase 1: decide every parameter
  let ranges: Map<string, { min: number; max: number }> | undefined;
  let act8 = new Map<string, ActivationParams>();
  let calibrationInfo: QuantizeSummary['calibration'] = null;
  if (staticScheme) {
    const c = await calibrateActivations(model, ctx, setup, options, fixed);
    ranges = c.ranges;
    act8 = c.act8;
    calibrationInfo = c.info;
    // FlexRound's learned steps replace the calibrated (or 8-bit patch) ones
    for (const [n, a] of planned) if (a.method === 'flexround') fixed.set(n, a.params);
  }
  const weights: QuantizedWeight[] = [];
  const fromPlan = new Map<string, number>();
  await inStep(ctx.progress, 'quantize weights', sel.linears.length, async (tick) => {
    for (const l of sel.linears) {
      ctx.signal.throwIfAborted();
      const w = weightOutIn(l);
      const grid = setup.gridOf(l);
      const d = plan.decisionFor(l, w);
      if (d) {
        checkGrid(d, l.name, grid, 'quantize', options);
        fromPlan.set(d.method, (fromPlan.get(d.method) ?? 0) + 1);
      }
      weights.push(d?.q ?? (await rtnWeight(l, w, grid)));
      tick(weights.length, l.name);
    }
  });
  if (plan.weights.size > 0) {
    const written = new Set(sel.linears.map((l) => l.name));
    const excluded = new Set(sel.excluded.map((e) => e.name));
    for (const d of [...plan.weights.values()].filter((x) => !written.has(x.layer))) {
      // a layer no longer in the model was removed or rewritten by a pass in between
      if (!excluded.has(d.layer)) throw new UserError(`the ${d.method} decision for layer '${d.layer}' (pass '${d.pass}') was made on a layer that a later pass has removed or replaced; run ${d.pass} after the passes that change weights (prune, smoothquant, repquant)`);
      ctx.report.warn('quantize', `the ${d.method} decision of pass '${d.pass}' is not written: quantize keeps this layer in float`, { target: d.layer });
    }
    ctx.report.info('quantize', `from the plan: ${[...fromPlan].map(([m, n]) => `${n} layer(s) decided by ${m}`).join(', ')}; ${sel.linears.length - [...fromPlan.values()].reduce((a, b) => a + b, 0)} by round to nearest`);
  }
  // QLinearConv weights: int8 per output channel unless layerBits says otherwise
  const convWeights: QuantizedWeight[] = [];
  for (const c of convPlan.qlinear) {
    const w = constantTensor(c.weight)!.toFloat32();
    const cb = overrides.get(c.name) ?? 8;
    const own: WeightQuantSpec = { bits: cb, symmetric: true, blockSize: 0, search: options.weightSearch ?? (cb < 8 ? 'mse' : 'minmax') };
    convWeights.push(perTensorWeights ? expandScale(await quantizeWeight(w, 1, w.length, own), c.outChannels) : await quantizeWeight(w, c.outChannels, c.k, own));
  }
  const tables: QuantizedWeight[] = [];
  if (sel.embeddings.length > 0) {
    await inStep(ctx.progress, 'quantize embedding tables', sel.embeddings.length, async (tick) => {
      for (const e of sel.embeddings) {
        ctx.signal.throwIfAborted();
        const t = constantTensor(e.table)!.toFloat32();
        // 4-bit tables need whole blocks along the hidden axis; otherwise int8 per hidden channel
        const tableBits = bitsOf(e.table.name);
        const blocked = fitBlock({ bits: tableBits, symmetric: true, blockSize: blockSizeOf(options.blockSize), search: 'mse' }, e.width);
        // static low-bit schemes keep tables at int8 (like RepQ-ViT keeps the patch embedding at 8 bits)
        tables.push(
          !staticScheme && tableBits <= 4 && e.width % blocked.blockSize === 0
            ? await quantizeWeight(t, e.rows, e.width, blocked)
            : await quantizeWeight(transpose(t, e.rows, e.width), e.width, e.rows, { bits: 8, symmetric: true, blockSize: 0, search: 'minmax' }),
        );
        tick(tables.length, e.table.name);
  }
    });
  }

  // phase 2: rewrite the graph once
  const g = model.graph;
  // the quantized side is kept as a Value: cleanup renames a value that takes over a graph
  // output from a removed Identity (an lm_head MatMul -> Identity -> 'logits'), so its name is
  // read only once the graph is final
  const pairValues: { name: string; float: string; quantized: Value | string }[] = [];
  const sharedQ = new Map<Value, Value>();
  sel.linears.forEach((l, i) => {
    const q = weights[i]!;
    // read before the rewrite: replacing a graph output renames the old value
    const floatName = l.output.name;
    let out: Value = l.output;
    if (staticScheme) {
      const name = l.node.input(0)!.name;
      const r = ranges!.get(name);
      quantizeLinearStatic(g, l, q, fixed.get(name) ?? activationParams(r!.min, r!.max, aBits), sharedQ);
    } else if (scheme === 'dynamic') {
      out = quantizeLinearDynamic(g, l, q);
      rewrites?.push({ kind: 'dynamic', weight: l.weight.name, q });
    } else {
      out = quantizeLinearNBits(g, l, q);
      rewrites?.push({ kind: 'nbits', weight: l.weight.name, q });
    }
    const patchOut = convPlan.patchLinears.get(l);
    pairValues.push(patchOut ? { name: l.name, float: patchOut, quantized: patchOut } : { name: l.name, float: floatName, quantized: out });
  });
  convPlan.qlinear.forEach((c, i) => {
    const floatName = c.node.output(0).name;
    const out = quantizeConvStatic(g, c, convWeights[i]!, act8.get(c.node.input(0)!.name)!, act8.get(floatName)!, sharedQ);
    pairValues.push({ name: c.name, float: floatName, quantized: out });
  });
  for (const { conv: c, form } of convPlan.forms) {
    ctx.report.info('quantize', form === 'patch MatMul' ? `patch-embedding Conv '${c.node.name}' rewritten as the equal MatMul over ${c.patch!.kh}x${c.patch!.kw} patches, quantized as a linear layer` : `Conv '${c.node.name}' written as QDQ (input, per-channel int8 weight, output) that onnxruntime fuses into QLinearConv`, { target: c.name });
  }
  sel.embeddings.forEach((e, i) => {
    const q = tables[i]!;
    const blocked = q.groups > 1 || q.bits < 8;
    if (blocked) quantizeEmbeddingBlocked(g, e, q);
    else quantizeEmbeddingInt8(g, e, q);
    rewrites?.push({ kind: blocked ? 'embedding-blocked' : 'embedding-int8', weight: e.table.name, q });
  });
  // post-softmax: the chosen form, and the other one on a copy to say what it would give
  let alternative: Model | undefined;
  const otherMode = softmaxMode === 'uniform' ? 'log2' : 'uniform';
  if (softmaxSites.length > 0) {
    const applySoftmax = (m: Model, mode: 'uniform' | 'log2'): void => {
      for (const site of softmaxSites) {
        if (mode === 'log2') quantizeSoftmaxLog2(m.graph, site, aBits);
        else {
          const r = ranges!.get(site.v)!;
          quantizeSoftmaxUniform(m.graph, site, activationParams(r.min, r.max, 8));
    }
  }
    };
    if (ctx.calibration) alternative = model.clone();
    applySoftmax(model, softmaxMode as 'uniform' | 'log2');
    if (alternative) {
      applySoftmax(alternative, otherMode);
      await cleanup().run(alternative, ctx);
    }
  }
  let f16: Float16Summary | null = null;
  if (isFloat16(scheme)) {
    // q4f16: the MatMulNBits scales and activations become float16 with the rest of the graph
    f16 = float16Summary(convertToFloat16(model, { keepIoTypes: options.keepIoTypes ?? true, keepOps: options.keepFloat32Ops }), options.keepIoTypes ?? true);
    reportFloat16(ctx, f16);
  }
  if ([...g.nodes].some((n) => n.domain === 'com.microsoft')) model.opsetImports.set('com.microsoft', 1);
  await cleanup().run(model, ctx);
  const pairs: TensorPair[] = pairValues.map((p) => ({ ...p, quantized: typeof p.quantized === 'string' ? p.quantized : p.quantized.name }));
  // the graph holds the packed weights now: the levels (one byte per weight, BERT-base 81 MiB)
  // are let go before verification runs (`rewrites` keeps its own for a merged decoder's branch)
  weights.length = 0;
  plan.weights.clear();

  // check: the result loads in onnxruntime and stays close to the float model
  let comparison: Comparison = { layers: [], outputs: [], samples: 0 };
  if (ctx.calibration) {
    comparison = await compareModels(float, model, ctx.calibration, pairs, { samples: options.verifySamples ?? 16, batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal });
  } else {
    ctx.report.warn('quantize', 'no calibration data: the quantized model was not compared with the float one');
  }
  const sqnr = new Map(comparison.layers.map((x) => [x.name, x.sqnr]));
  let softmaxSummary: QuantizeSummary['softmax'] = null;
  if (softmaxSites.length > 0) {
    let altSqnr: number | null = null;
    if (alternative && ctx.calibration) {
      const c = await compareModels(float, alternative, ctx.calibration, [], { samples: options.verifySamples ?? 16, batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal });
      altSqnr = c.outputs[0]?.sqnr ?? null;
    }
    const own = comparison.outputs[0]?.sqnr ?? null;
    softmaxSummary = { mode: softmaxMode, bits: softmaxMode === 'log2' ? aBits : 8, attentions: softmaxSites.length, outputSqnr: own, alternative: { mode: otherMode, outputSqnr: altSqnr } };
    const f = (x: number | null): string => (x === null ? 'not measured' : Number.isFinite(x) ? `${x.toFixed(1)} dB` : 'exact');
    ctx.report.info(
      'quantize',
      `softmax of ${softmaxSites.length} attention(s) written in the ${softmaxMode === 'log2' ? `simulated log2 form (${aBits}-bit codes, float ops: for accuracy validation)` : 'uniform 8-bit QDQ form (integer kernels)'}: output SQNR ${f(own)}; the ${otherMode} form would give ${f(altSqnr)}`,
    );
  }
  const reparam = plan.reparams.at(-1) ?? null;
  const summary: QuantizeSummary = {
    scheme,
    method: 'rtn',
    chain: [...plan.chain],
    calibMethod: staticScheme ? (options.calibMethod ?? 'minmax') : null,
    activationBits: staticScheme ? aBits : null,
    reconstruct: options.reconstruct ?? 'none',
    methodChoice: null,
    softmax: softmaxSummary,
    reparam,
    flexround: plan.flexround,
    calibration: calibrationInfo,
    layers: [...convPlan.qlinear.map((c, i) => ({ name: c.name, bits: convWeights[i]!.bits, sqnr: sqnr.get(c.name) ?? null })), ...sel.linears.map((l) => ({ name: l.name, bits: bitsOf(l.name), sqnr: sqnr.get(l.name) ?? null }))],
    convs: convPlan.forms.map(({ conv, form }) => ({ name: conv.name, form })),
    embeddings: sel.embeddings.map((e, i) => ({ name: e.table.name, bits: tables[i]!.bits })),
    excluded: sel.excluded,
    skipped: sel.skipped,
    outputs: comparison.outputs,
    verifiedSamples: comparison.samples,
    weightBytesBefore: weightBytes(float),
    weightBytesAfter: weightBytes(model),
    float16: f16,
  };
  return summary;
}

/** A per-tensor weight grid (n = 1) repeated on `n` output channels. */
function expandScale(q: QuantizedWeight, n: number): QuantizedWeight {
  const k = q.k / n;
  return { ...q, n, k, blockSize: k, scales: new Float32Array(n).fill(q.scales[0]!), zeroPoints: new Int32Array(n).fill(q.zeroPoints[0]!) };
}

import type { LayerBits } from '../quantize/layer-setup.js';
export type { LayerBits } from '../quantize/layer-setup.js';
export { applyLayerBits } from '../quantize/layer-setup.js';

export interface QuantizePassOptions extends QuantizeOptions {
  /**
   * A decoder with a key/value cache: also calibrate on decode steps through a real cache (each
   * prompt's second half decoded after its first half fills the cache). Default false (measured
   * gains were mixed, docs/quantize.md); FlexRound keeps the prompts alone.
   */
  decodeSteps?: boolean;
  /**
   * Per-layer precision: globs (`blocks.3.*`) or /regex/ (as `exclude` takes them, matched
   * against layer, node and embedding-table names) mapped to the weight bits of the layers
   * they match (2 to 8; weight-only schemes write each layer as MatMulNBits with its own bits)
   * or 'float'. The first matching pattern wins (in key order); `exclude` wins over all. A
   * pattern that matches no layer is an error naming it.
   */
  layerBits?: Record<string, LayerBits>;
  /**
   * Bits of the layers outside the transformer blocks (embedding tables, patch embedding,
   * pooler, classifier and LM heads) when the scheme's weight bits are below them (default
   * OUTER_BITS, 8); 'scheme': the scheme's bits like every other layer. layerBits wins.
   */
  outerBits?: number | 'scheme';
}

function weightBytes(m: Model): number {
  return m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
}
