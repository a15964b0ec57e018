import { discoverStructure } from '../discover/index.js';
import type { LinearLayer } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { quantizeLinearDynamic } from '../export/dynamic.js';
import { quantizeEmbeddingBlocked, quantizeEmbeddingInt8 } from '../export/embedding.js';
import { transpose, weightOutIn } from '../export/linear-weight.js';
import { quantizeLinearNBits } from '../export/matmul-nbits.js';
import { type ActivationParams, activationParams, quantizeLinearStatic } from '../export/qdq.js';
import { quantizeConvStatic } from '../export/conv.js';
import { type ConvForm, planConvs } from '../quantize/conv-plan.js';
import { constantTensor } from '../discover/constants.js';
import { findSoftmaxSites, quantizeSoftmaxLog2, quantizeSoftmaxUniform, type SoftmaxSite } from '../export/softmax.js';
import type { Model } from '../ir/model.js';
import type { Value } from '../ir/value.js';
import { calibrate } from '../calibrate/index.js';
import { type QuantizeOptions, activationBits, isFloat16, isStatic, isWeightOnly, weightBits } from '../quantize/scheme.js';
import { repQuantReparam } from '../reparam/repquant.js';
import { smoothQuant } from '../reparam/smoothquant.js';
import { chooseStaticMethod, type StaticMethodChoice } from '../quantize/auto-method.js';
import { OUTER_BITS, checkOuterBits, outerLayers } from '../quantize/outer-layers.js';
import { assertNotQuantized, namePattern, selectLayers, type Selection } from '../quantize/select.js';
import { gptqLevelsAsync, inputGramsBlockwise } from '../quantize/gptq.js';
import { flexRoundWeights, type FlexRoundUnitReport, type LearnedActivation } from '../quantize/flexround-weights.js';
import { compareModels, type Comparison, type TensorPair } from '../quantize/verify.js';
import { newLevels, quantizeWeight, type QuantizedWeight, type WeightQuantSpec } from '../quantize/weight-quantizer.js';
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

export interface QuantizeSummary {
  scheme: string;
  method: string;
  calibMethod: string | null;
  reconstruct: string;
  /** Static schemes without a method named: the outlier measurement that chose rtn or repquant (null otherwise). */
  methodChoice: StaticMethodChoice | null;
  /** Bits of the activation grid for static schemes (null otherwise). */
  activationBits: number | null;
  /** What smoothquant/repquant folded into the norms and linears, and what they skipped. */
  /** Post-softmax quantization: the form written, and what the other form would have given. */
  softmax: { mode: string; bits: number; attentions: number; outputSqnr: number | null; alternative: { mode: string; outputSqnr: number | null } } | null;
  /** FlexRound (method flexround): the mode, settings and each unit's calibration output error before (rtn) and after. */
  flexround: { mode: 'layer' | 'block'; iters: number; lr: number; units: FlexRoundUnitReport[]; activations: LearnedActivation[]; seconds: number } | null;
  reparam: { method: string; alpha?: number; observer?: string; folded: string[]; skipped: { name: string; reason: string }[] } | null;
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
 * Round-to-nearest quantization of every linear layer (and embedding table) under one of the
 * schemes of quantize/scheme.ts. Two phases: all parameters are decided first (weight grids,
 * activation ranges from calibration), then the graph is rewritten once. The result is run
 * in onnxruntime against the float model on calibration samples before the pass returns, and
 * the report gives each layer's output SQNR and the end-to-end SQNR.
 */
export function quantize(options: QuantizePassOptions): Pass<QuantizeSummary> {
  checkOptions('quantize', QUANTIZE_OPTIONS, options);
  return {
    name: 'quantize',
    async run(model: Model, ctx: PassContext) {
      if (options.scheme === 'fp16') return float16Scheme(model, ctx, options);
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

/**
 * The quantize pass on one graph. Each weight rewrite is also recorded in `rewrites` when
 * given, so the same decisions can be written elsewhere (a merged decoder's other branch).
 */
async function quantizeModel(model: Model, ctx: PassContext, options: QuantizePassOptions, rewrites?: WeightRewrite[]): Promise<PassResult<QuantizeSummary>> {
  const scheme = options.scheme;
  assertNotQuantized(model, model.sourcePath ?? 'the model');
  if (options.outerBits !== undefined) checkOuterBits(options.outerBits);
  const float = model.clone();
  let method = options.method ?? 'rtn';
  // a static scheme with no method named: repquant where the calibration data shows activation outliers
  let methodChoice: StaticMethodChoice | null = null;
  if (options.method === undefined && isStatic(scheme) && ctx.calibration) {
    methodChoice = await chooseStaticMethod(model, ctx.calibration, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal });
    method = methodChoice.method;
    ctx.report.info('quantize', methodChoice.reason, { data: { factor: methodChoice.factor, sites: methodChoice.sites } });
  }
  let reparam: QuantizeSummary['reparam'] = null;
  const fixed = new Map<string, ActivationParams>();
  if (method === 'smoothquant' || method === 'repquant') {
    if (!isStatic(scheme)) throw new UserError(`method ${method} needs a static scheme (w8a8, w6a6 or w4a4), not ${scheme}`);
    if (!ctx.calibration) throw new UserError(`method ${method} needs calibration data (option 'calibration')`);
    const run = { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal, cacheDir: options.cacheDir };
    if (method === 'smoothquant') {
      const r = await smoothQuant(model, ctx.calibration, options.alpha ?? 0.5, run);
      reparam = { method, alpha: r.alpha, folded: r.folded.map((f) => f.name), skipped: r.skipped };
    } else {
      const r = await repQuantReparam(model, ctx.calibration, { ...run, bits: activationBits(scheme), observer: options.repquantObserver });
      for (const [k, v] of r.activations) fixed.set(k, v);
      reparam = { method, observer: r.observer, folded: r.folded.map((f) => f.name), skipped: r.skipped };
    }
    for (const s of reparam.skipped) ctx.report.skip('quantize', s.name, `${method}: ${s.reason}`);
    ctx.report.info('quantize', `${method} folded per-channel factors at ${reparam.folded.length} norm output(s)`);
  }
  const structure = discoverStructure(model);
  const sel = selectLayers(model, structure, options.exclude ?? [], options.embeddings ?? true);
  if (sel.linears.length === 0 && sel.convs.length === 0 && sel.embeddings.length === 0) {
    throw new UserError(`${model.sourcePath ?? 'the model'} has no quantizable layer (no MatMul/Gemm/Conv with a float constant weight${sel.excluded.length ? `; ${sel.excluded.length} excluded by option 'exclude'` : ''})`);
  }
  const bits = isStatic(scheme) && options.weightBits !== undefined ? options.weightBits : weightBits(scheme);
  if (!(Number.isInteger(bits) && bits >= 2 && bits <= 8)) throw new UserError(`weight bits must be an integer from 2 to 8, not ${bits}`);
  const overrides = applyLayerBits(options.layerBits, sel, structure.linears, scheme, model.sourcePath ?? 'the model');
  const outer = outerLayers(structure, sel, bits, options.outerBits ?? OUTER_BITS, overrides);
  for (const [name, b] of outer.bits) overrides.set(name, b);
  if (outer.note) ctx.report.info('quantize', outer.note);
  if (sel.linears.length === 0 && sel.convs.length === 0 && sel.embeddings.length === 0) throw new UserError(`layerBits keeps every layer of ${model.sourcePath ?? 'the model'} in float; nothing is left to quantize`);
  const weightOnly = isWeightOnly(scheme);
  const staticScheme = isStatic(scheme);
  const aBits = activationBits(scheme);
  const convPlan = planConvs(model.graph, sel, scheme);
  if (sel.linears.length === 0 && convPlan.qlinear.length === 0 && sel.embeddings.length === 0) throw new UserError(`${model.sourcePath ?? 'the model'} has no layer that scheme ${scheme} quantizes: ${sel.skipped[0]?.reason ?? 'nothing selected'}`);
  // like RepQ-ViT, static schemes below 8 activation bits keep the patch embedding at 8 bits (weights and input)
  const patch8 = new Set(staticScheme && aBits < 8 ? [...convPlan.patchLinears.keys()].map((l) => l.name) : []);
  for (const s of sel.skipped) ctx.report.skip('quantize', s.name, s.reason);
  for (const e of sel.excluded) ctx.report.info('quantize', `kept in float (matches ${e.pattern.startsWith('layerBits ') ? e.pattern : `--exclude ${e.pattern}`})`, { target: e.name });
  const bitsOf = (name: string): number => overrides.get(name) ?? (patch8.has(name) ? 8 : bits);
  if (overrides.size > 0) ctx.report.info('quantize', `layerBits: ${[...new Set([...sel.linears.map((l) => bitsOf(l.name))])].sort().map((b) => `${sel.linears.filter((l) => bitsOf(l.name) === b).length} layer(s) at ${b} bits`).join(', ')}`);
  if (options.weightSymmetric === false && !weightOnly) throw new UserError(`asymmetric weight grids need a weight-only scheme (w8, w4, w3, w2), not ${scheme}: integer kernels take symmetric int8 weights`);
  const spec: WeightQuantSpec = weightOnly
    ? { bits, symmetric: symmetricAt(options, bits), blockSize: blockSizeOf(options.blockSize), search: options.weightSearch ?? (bits < 8 ? 'mse' : 'minmax') }
    : { bits: scheme === 'dynamic' ? 8 : bits, symmetric: true, blockSize: 0, search: options.weightSearch ?? (bits < 8 ? 'mse' : 'minmax') };
  const perTensorWeights = options.perChannel === false;
  const softmaxMode = options.softmax ?? 'none';
  let softmaxSites: SoftmaxSite[] = [];
  if (softmaxMode !== 'none') {
    if (!staticScheme) throw new UserError(`option 'softmax' ${softmaxMode} needs a static scheme (w8a8, w6a6 or w4a4), not ${scheme}`);
    const found = findSoftmaxSites(structure);
    softmaxSites = found.sites;
    for (const s of found.skipped) ctx.report.skip('quantize', s.name, `softmax kept in float: ${s.reason}`);
  }

  // phase 1: decide every parameter
  let ranges: Map<string, { min: number; max: number }> | undefined;
  const act8 = new Map<string, ActivationParams>();
  let calibrationInfo: QuantizeSummary['calibration'] = null;
  if (staticScheme) {
    if (!ctx.calibration) throw new UserError(`scheme ${scheme} needs calibration data (option 'calibration') to set activation ranges`);
    const inputs = [...new Set([...sel.linears.map((l) => l.node.input(0)!.name), ...softmaxSites.map((s) => s.v)])].filter((n) => !fixed.has(n));
    // QLinearConv input and output stay on 8-bit grids (a Clip to fewer codes stops the fusion), and so does the input of a patch embedding kept at 8 bits
    const patchInputs = sel.linears.filter((l) => patch8.has(l.name)).map((l) => l.node.input(0)!.name);
    const eightBit = [...new Set([...convPlan.qlinear.flatMap((c) => [c.node.input(0)!.name, c.node.output(0).name]), ...patchInputs])];
    const runs = aBits === 8 ? [{ bits: 8, tensors: [...new Set([...inputs, ...eightBit])] }] : [{ bits: aBits, tensors: inputs.filter((n) => !patchInputs.includes(n)) }, { bits: 8, tensors: eightBit }];
    ranges = new Map();
    const seen = { samples: 0, fromCache: true, seconds: 0 };
    for (const r of runs.filter((x) => x.tensors.length > 0)) {
      const calibration = await calibrate(model, ctx.calibration, {
        tensors: r.tensors,
        observer: { kind: options.calibMethod ?? 'minmax', symmetric: false, bits: r.bits },
        batchSize: options.batchSize,
        threads: ctx.threads,
        progress: ctx.progress,
        signal: ctx.signal,
        cacheDir: options.cacheDir,
      });
      for (const [k, x] of calibration.ranges) {
        if (r.bits === aBits) ranges.set(k, { min: x.min[0]!, max: x.max[0]! });
        if (r.bits === 8 && eightBit.includes(k)) act8.set(k, activationParams(x.min[0]!, x.max[0]!, 8));
  }
      seen.samples = calibration.samples;
      seen.fromCache &&= calibration.fromCache;
      seen.seconds += calibration.seconds;
      if (calibration.cacheWriteError) ctx.report.warn('quantize', `calibration cache not written: ${calibration.cacheWriteError}`);
    }
    for (const n of patchInputs) fixed.set(n, act8.get(n)!);
    calibrationInfo = seen;
  }
  const weights: QuantizedWeight[] = [];
  await inStep(ctx.progress, 'quantize weights', sel.linears.length, async (tick) => {
    for (const l of sel.linears) {
      ctx.signal.throwIfAborted();
      const w = weightOutIn(l);
      const own = weightOnly ? { ...layerSpec(spec, bitsOf(l.name), options.weightSearch), symmetric: symmetricAt(options, bitsOf(l.name)) } : layerSpec(spec, bitsOf(l.name), options.weightSearch);
      const q = perTensorWeights ? await perTensor(w, l, own, weightOnly ? fitBlock({ ...own, blockSize: blockSizeOf(0) }, l.inFeatures).blockSize : l.inFeatures) : await quantizeWeight(w, l.outFeatures, l.inFeatures, fitBlock(own, l.inFeatures));
      weights.push(q);
      tick(weights.length, l.name);
    }
  });
  // QLinearConv weights: int8 per output channel unless layerBits says otherwise
  const convWeights: QuantizedWeight[] = [];
  for (const c of convPlan.qlinear) {
    const w = constantTensor(c.weight)!.toFloat32();
    const cb = overrides.get(c.name) ?? 8;
    const own: WeightQuantSpec = { bits: cb, symmetric: true, blockSize: 0, search: options.weightSearch ?? (cb < 8 ? 'mse' : 'minmax') };
    convWeights.push(perTensorWeights ? expandScale(await quantizeWeight(w, 1, w.length, own), c.outChannels) : await quantizeWeight(w, c.outChannels, c.k, own));
  }
  if (method === 'flexround' && (options.reconstruct ?? 'none') !== 'none') throw new UserError("option 'method' flexround learns the rounding itself; it does not combine with option 'reconstruct' gptq");
  if ((method === 'gptq' || (options.reconstruct ?? 'none') === 'gptq') && sel.linears.length > 0) {
    const what = method === 'gptq' ? "option 'method' gptq" : "option 'reconstruct' gptq";
    if (!ctx.calibration) throw new UserError(`${what} needs calibration data (option 'calibration')`);
    const damp = options.gptqDamp ?? 0.01;
    if (!(damp > 0 && damp < 1)) throw new UserError(`GPTQ damping must be in (0, 1), not ${damp}`);
    const tensors = [...new Map(sel.linears.map((l) => [l.node.input(0)!.name, { name: l.node.input(0)!.name, k: l.inFeatures }])).values()];
    const grams = await inputGramsBlockwise(model, ctx.calibration, tensors, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal });
    await inStep(ctx.progress, 'gptq', sel.linears.length, async (tick) => {
      for (const [i, l] of sel.linears.entries()) {
        ctx.signal.throwIfAborted();
        try {
          weights[i] = await gptqLevelsAsync(weightOutIn(l), weights[i]!, await grams.take(l.node.input(0)!.name), damp, options.gptqActOrder ?? true);
        } catch (e) {
          // a damped Gram matrix is positive definite in exact arithmetic; rounding can still
          // break that when the input's scales span many orders of magnitude
          if (e instanceof Error && e.message.includes('not positive definite')) {
            throw new UserError(`GPTQ: the Gram matrix of '${l.node.input(0)!.name}' (the input of ${l.name}), damped by ${damp}, is not positive definite in float64; a larger damping (option 'gptqDamp') makes it so`);
      }
          throw e;
    }
        tick(i + 1, l.name);
  }
    }).finally(() => grams.close());
    ctx.report.info('quantize', `GPTQ (damping ${damp}${options.gptqActOrder ?? true ? ', activation order' : ''}) of ${sel.linears.length} weight(s) on the Gram matrices of ${tensors.length} input tensor(s)`);
  }
  let flexSummary: QuantizeSummary['flexround'] = null;
  let learnedActivations: LearnedActivation[] = [];
  if (method === 'flexround' && sel.linears.length > 0) {
    if (!ctx.calibration) throw new UserError("option 'method' flexround needs calibration data (option 'calibration')");
    // static schemes: the calibrated activation quantizers are the start of the learned ones
    const acts = new Map(staticScheme ? sel.linears.map((l) => l.node.input(0)!.name).map((n) => [n, fixed.get(n) ?? activationParams(ranges!.get(n)!.min, ranges!.get(n)!.max, aBits)] as const) : []);
    const r = await flexRoundWeights(model, ctx.calibration, sel.linears, weights, { ...options.flexround, learnGrid: perTensorWeights ? false : options.flexround?.learnGrid }, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal, progress: ctx.progress }, acts);
    r.weights.forEach((w, i) => (weights[i] = w));
    for (const [n, a] of r.activations) fixed.set(n, a);
    learnedActivations = [...r.activations].map(([name, a]) => ({ name, start: acts.get(name)!.scale, learned: a.scale }));
    for (const x of r.layers) {
      ctx.report.info('quantize', `flexround ${x.unit}: output MSE ${x.lossBefore.toExponential(3)} (rtn) -> ${x.lossAfter.toExponential(3)}${x.kept === 'learned' ? '' : ', kept rtn (no better)'}`, { target: x.unit, data: { ...x } });
    }
    flexSummary = { mode: r.mode, iters: r.iters, lr: r.lr, units: r.layers, activations: learnedActivations, seconds: r.seconds };
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
  const pairs: TensorPair[] = [];
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
    pairs.push(patchOut ? { name: l.name, float: patchOut, quantized: patchOut } : { name: l.name, float: floatName, quantized: out.name });
  });
  convPlan.qlinear.forEach((c, i) => {
    const floatName = c.node.output(0).name;
    const out = quantizeConvStatic(g, c, convWeights[i]!, act8.get(c.node.input(0)!.name)!, act8.get(floatName)!, sharedQ);
    pairs.push({ name: c.name, float: floatName, quantized: out.name });
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
  const summary: QuantizeSummary = {
    scheme,
    method,
    calibMethod: staticScheme ? (options.calibMethod ?? 'minmax') : null,
    activationBits: staticScheme ? aBits : null,
    reconstruct: options.reconstruct ?? 'none',
    methodChoice,
    softmax: softmaxSummary,
    reparam,
    flexround: flexSummary,
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
  return { model, modified: true, summary };
}

/** A per-tensor weight grid (n = 1) repeated on `n` output channels. */
function expandScale(q: QuantizedWeight, n: number): QuantizedWeight {
  const k = q.k / n;
  return { ...q, n, k, blockSize: k, scales: new Float32Array(n).fill(q.scales[0]!), zeroPoints: new Int32Array(n).fill(q.zeroPoints[0]!) };
}

/** A layer's precision when not the scheme's: 2 to 8 bits, or 'float' (left unquantized). */
export type LayerBits = number | 'float';

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

/**
 * Resolves `layerBits` against the selection: layers mapped to 'float' move to
 * `sel.excluded`; the others get their bits in the returned map (by layer or table name).
 */
export function applyLayerBits(layerBits: Record<string, LayerBits> | undefined, sel: Selection, linears: readonly LinearLayer[], scheme: QuantizeOptions['scheme'], file: string): Map<string, number> {
  const out = new Map<string, number>();
  if (!layerBits) return out;
  const patterns = Object.entries(layerBits).map(([p, b]) => {
    if (!(b === 'float' || (typeof b === 'number' && Number.isInteger(b) && b >= 2 && b <= 8))) throw new UserError(`layerBits '${p}': bits must be a whole number from 2 to 8 or 'float', not ${JSON.stringify(b)}`);
    if (scheme === 'dynamic' && b !== 'float' && b !== 8) throw new UserError(`layerBits '${p}': scheme dynamic quantizes weights to 8 bits; ${b} bits needs a weight-only (w8, w4) or static scheme`);
    let re: RegExp;
    try {
      re = namePattern(p);
    } catch (e) {
      throw new UserError((e as Error).message.replace('--exclude pattern', 'layerBits pattern'));
    }
    return { p, b, re };
  });
  const match = (...names: string[]): (typeof patterns)[number] | undefined => patterns.find(({ re }) => names.some((n) => re.test(n)));
  // a pattern must match some layer the model has (quantized, excluded or skipped)
  const known = [...linears.flatMap((l) => [l.name, l.node.name]), ...sel.convs.flatMap((c) => [c.name, c.node.name]), ...sel.embeddings.flatMap((e) => [e.table.name, e.node.name]), ...sel.excluded.map((e) => e.name), ...sel.skipped.map((s) => s.name)];
  for (const { p, re } of patterns) {
    if (!known.some((n) => re.test(n))) {
      const some = linears.slice(0, 4).map((l) => l.name);
      throw new UserError(`layerBits pattern '${p}' matches no layer of ${file} (layers are named like ${some.join(', ')}${linears.length > some.length ? ', ...' : ''})`);
    }
  }
  const keep = <T>(list: T[], names: (x: T) => string[], key: (x: T) => string): T[] =>
    list.filter((x) => {
      const m = match(...names(x));
      if (!m) return true;
      if (m.b === 'float') {
        sel.excluded.push({ name: key(x), pattern: `layerBits ${m.p}` });
        return false;
      }
      out.set(key(x), m.b);
      return true;
    });
  sel.linears = keep(sel.linears, (l) => [l.name, l.node.name], (l) => l.name);
  sel.convs = keep(sel.convs, (c) => [c.name, c.node.name], (c) => c.name);
  sel.embeddings = keep(sel.embeddings, (e) => [e.table.name, e.node.name], (e) => e.table.name);
  return out;
}

/** The weight grid of one layer at `bits` (range search as the scheme's default for those bits unless set). */
function layerSpec(spec: WeightQuantSpec, bits: number, search: QuantizeOptions['weightSearch']): WeightQuantSpec {
  return bits === spec.bits ? spec : { ...spec, bits, search: search ?? (bits < 8 ? 'mse' : 'minmax') };
}

/**
 * One scale for the whole weight (--no-per-channel, --granularity tensor), searched over all of
 * it, laid out as one group per output channel of `blockSize` (>= inputs; zero-padded) inputs.
 */
async function perTensor(w: Float32Array, l: LinearLayer, spec: WeightQuantSpec, blockSize: number): Promise<QuantizedWeight> {
  const q = await quantizeWeight(w, 1, w.length, { ...spec, blockSize: 0 });
  const k = l.inFeatures;
  const levels = newLevels(l.outFeatures * blockSize, q.symmetric);
  for (let r = 0; r < l.outFeatures; r++) levels.set(q.levels.subarray(r * k, (r + 1) * k), r * blockSize);
  return { ...q, n: l.outFeatures, k, groups: 1, blockSize, levels, scales: new Float32Array(l.outFeatures).fill(q.scales[0]!), zeroPoints: new Int32Array(l.outFeatures).fill(q.zeroPoints[0]!) };
}

/** Whether a weight-only layer of `bits` gets a symmetric grid (QuantizeOptions.weightSymmetric). */
function symmetricAt(options: QuantizeOptions, bits: number): boolean {
  return options.weightSymmetric ?? bits > 2;
}

/** Input features per weight-only scale; 0 (one scale per output channel) is a block that always covers every input. */
function blockSizeOf(b: number | undefined): number {
  return b === 0 ? 2 ** 30 : (b ?? 32);
}

/**
 * A block no larger than the layer needs: blocks are padded to full size, so a 128-wide block
 * on 64 inputs would store twice the levels. Block sizes stay powers of two from 16 (what
 * MatMulNBits and GatherBlockQuantized take).
 */
function fitBlock(spec: WeightQuantSpec, inputs: number): WeightQuantSpec {
  if (spec.blockSize <= 0) return spec;
  let fit = 16;
  while (fit < inputs && fit < spec.blockSize) fit *= 2;
  return { ...spec, blockSize: fit };
}

function weightBytes(m: Model): number {
  return m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
}
