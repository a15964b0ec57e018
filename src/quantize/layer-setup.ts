// What the quantize pass and the weight-decision passes (gptq, flexround) agree on before any
// weight is rounded: which layers are quantized, at which bits, on which grid, and (static
// schemes) the activation ranges. Both run this on the model they see, so a decision and the
// writer that uses it are made under the same selection and grids (checked by the writer).
import { calibrate } from '../calibrate/index.js';
import { discoverStructure } from '../discover/index.js';
import type { LinearLayer, Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { weightOutIn } from '../export/linear-weight.js';
import { type ActivationParams, activationParams } from '../export/qdq.js';
import { findSoftmaxSites, type SoftmaxSite } from '../export/softmax.js';
import type { Model } from '../ir/model.js';
import type { PassContext } from '../passes/pass.js';
import type { QuantizePassOptions, QuantizeSummary } from '../passes/quantize.js';
import { type ConvPlan, planConvs } from './conv-plan.js';
import { OUTER_BITS, outerLayers } from './outer-layers.js';
import type { GridSpec } from './plan.js';
import { type QuantizeOptions, activationBits, isStatic, isWeightOnly, weightBits } from './scheme.js';
import { namePattern, selectLayers, type Selection } from './select.js';
import { newLevels, quantizeWeight, type QuantizedWeight, type WeightQuantSpec } from './weight-quantizer.js';

/** A layer's precision when not the scheme's: 2 to 8 bits, or 'float' (left unquantized). */
export type LayerBits = number | 'float';

export interface LayerSetup {
  structure: Structure;
  sel: Selection;
  /** The scheme's weight bits, and each layer's (by layer or table name). */
  bits: number;
  overrides: Map<string, number>;
  bitsOf(name: string): number;
  weightOnly: boolean;
  staticScheme: boolean;
  aBits: number;
  convPlan: ConvPlan;
  /** Patch embeddings kept at 8 bits (static schemes below 8 activation bits). */
  patch8: Set<string>;
  /** The scheme's weight grid (before per-layer bits and block fitting). */
  spec: WeightQuantSpec;
  perTensorWeights: boolean;
  softmaxSites: SoftmaxSite[];
  /** The grid of one selected linear. */
  gridOf(l: LinearLayer): GridSpec;
}

/**
 * Discovers the model's layers and decides their selection, bits and grids. Patch-embedding
 * Convs are rewritten in `model` as the equal MatMul (conv-plan.ts). `report` false: the
 * selection is not reported (a decision pass; the writer reports it).
 */
export function layerSetup(model: Model, ctx: PassContext, options: QuantizePassOptions, report = true): LayerSetup {
  const scheme = options.scheme;
  const say = report ? ctx.report : undefined;
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
  if (outer.note) say?.info('quantize', outer.note);
  if (sel.linears.length === 0 && sel.convs.length === 0 && sel.embeddings.length === 0) throw new UserError(`layerBits keeps every layer of ${model.sourcePath ?? 'the model'} in float; nothing is left to quantize`);
  const weightOnly = isWeightOnly(scheme);
  const staticScheme = isStatic(scheme);
  const aBits = activationBits(scheme);
  const convPlan = planConvs(model.graph, sel, scheme);
  if (sel.linears.length === 0 && convPlan.qlinear.length === 0 && sel.embeddings.length === 0) throw new UserError(`${model.sourcePath ?? 'the model'} has no layer that scheme ${scheme} quantizes: ${sel.skipped[0]?.reason ?? 'nothing selected'}`);
  // like RepQ-ViT, static schemes below 8 activation bits keep the patch embedding at 8 bits (weights and input)
  const patch8 = new Set(staticScheme && aBits < 8 ? [...convPlan.patchLinears.keys()].map((l) => l.name) : []);
  for (const s of sel.skipped) say?.skip('quantize', s.name, s.reason);
  for (const e of sel.excluded) say?.info('quantize', `kept in float (matches ${e.pattern.startsWith('layerBits ') ? e.pattern : `--exclude ${e.pattern}`})`, { target: e.name });
  const bitsOf = (name: string): number => overrides.get(name) ?? (patch8.has(name) ? 8 : bits);
  if (overrides.size > 0) say?.info('quantize', `layerBits: ${[...new Set([...sel.linears.map((l) => bitsOf(l.name))])].sort().map((b) => `${sel.linears.filter((l) => bitsOf(l.name) === b).length} layer(s) at ${b} bits`).join(', ')}`);
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
    for (const s of found.skipped) say?.skip('quantize', s.name, `softmax kept in float: ${s.reason}`);
  }
  const gridOf = (l: LinearLayer): GridSpec => {
    const own = weightOnly ? { ...layerSpec(spec, bitsOf(l.name), options.weightSearch), symmetric: symmetricAt(options, bitsOf(l.name)) } : layerSpec(spec, bitsOf(l.name), options.weightSearch);
    if (perTensorWeights) return { ...own, blockSize: weightOnly ? fitBlock({ ...own, blockSize: blockSizeOf(0) }, l.inFeatures).blockSize : l.inFeatures, perTensor: true };
    return { ...fitBlock(own, l.inFeatures), perTensor: false };
  };
  return { structure, sel, bits, overrides, bitsOf, weightOnly, staticScheme, aBits, convPlan, patch8, spec, perTensorWeights, softmaxSites, gridOf };
}

/** Round to nearest on a linear's grid (the start of every decision). `w` is the weight in [out, in]. */
export async function rtnWeight(l: LinearLayer, w: Float32Array, grid: GridSpec): Promise<QuantizedWeight> {
  const { perTensor: one, ...spec } = grid;
  return one ? perTensor(w, l, spec, grid.blockSize) : quantizeWeight(w, l.outFeatures, l.inFeatures, spec);
}

/** Round to nearest for every selected linear of a setup, in order (float weights kept for the decision passes). */
export async function rtnWeights(setup: LayerSetup, ctx: PassContext): Promise<{ weights: QuantizedWeight[]; floats: Float32Array[] }> {
  const weights: QuantizedWeight[] = [];
  const floats: Float32Array[] = [];
  for (const l of setup.sel.linears) {
    ctx.signal.throwIfAborted();
    const w = weightOutIn(l);
    floats.push(w);
    weights.push(await rtnWeight(l, w, setup.gridOf(l)));
  }
  return { weights, floats };
}

export interface ActivationCalibration {
  ranges: Map<string, { min: number; max: number }>;
  /** 8-bit grids of QLinearConv inputs/outputs and of patch-embedding inputs kept at 8 bits. */
  act8: Map<string, ActivationParams>;
  info: NonNullable<QuantizeSummary['calibration']>;
}

/**
 * Static schemes: the activation ranges of every linear input (and softmax site) not in `fixed`,
 * from the calibration data. Patch-embedding inputs kept at 8 bits are added to `fixed`.
 */
export async function calibrateActivations(model: Model, ctx: PassContext, setup: LayerSetup, options: QuantizePassOptions, fixed: Map<string, ActivationParams>): Promise<ActivationCalibration> {
  const { sel, softmaxSites, convPlan, patch8, aBits } = setup;
  if (!ctx.calibration) throw new UserError(`scheme ${options.scheme} needs calibration data (option 'calibration') to set activation ranges`);
  const inputs = [...new Set([...sel.linears.map((l) => l.node.input(0)!.name), ...softmaxSites.map((s) => s.v)])].filter((n) => !fixed.has(n));
  // QLinearConv input and output stay on 8-bit grids (a Clip to fewer codes stops the fusion), and so does the input of a patch embedding kept at 8 bits
  const patchInputs = sel.linears.filter((l) => patch8.has(l.name)).map((l) => l.node.input(0)!.name);
  const eightBit = [...new Set([...convPlan.qlinear.flatMap((c) => [c.node.input(0)!.name, c.node.output(0).name]), ...patchInputs])];
  const runs = aBits === 8 ? [{ bits: 8, tensors: [...new Set([...inputs, ...eightBit])] }] : [{ bits: aBits, tensors: inputs.filter((n) => !patchInputs.includes(n)) }, { bits: 8, tensors: eightBit }];
  const ranges = new Map<string, { min: number; max: number }>();
  const act8 = new Map<string, ActivationParams>();
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
  return { ranges, act8, info: seen };
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
export function blockSizeOf(b: number | undefined): number {
  return b === 0 ? 2 ** 30 : (b ?? 32);
}

/**
 * A block no larger than the layer needs: blocks are padded to full size, so a 128-wide block
 * on 64 inputs would store twice the levels. Block sizes stay powers of two from 16 (what
 * MatMulNBits and GatherBlockQuantized take).
 */
export function fitBlock(spec: WeightQuantSpec, inputs: number): WeightQuantSpec {
  if (spec.blockSize <= 0) return spec;
  let fit = 16;
  while (fit < inputs && fit < spec.blockSize) fit *= 2;
  return { ...spec, blockSize: fit };
}
