// GPTQ as a pass: levels re-chosen column by column with error feedback on each layer's
// calibration Gram matrix, on the round-to-nearest grids. Alone it quantizes the model; in a
// chain it leaves its decisions in the plan for the pass that writes them:
//   pipeline([smoothQuant(), gptq({ bits: 4, aBits: 8 })])
//   pipeline([gptq({ bits: 3 }), flexRound({ bits: 3 })])   // FlexRound starts from GPTQ's levels
import { UserError } from '../errors.js';
import type { LinearLayer } from '../discover/structure.js';
import { weightOutIn } from '../export/linear-weight.js';
import type { Tensor } from '../ir/tensor.js';
import type { Model } from '../ir/model.js';
import { inStep } from '../progress.js';
import { traceMemory } from '../runtime/memory-trace.js';
import { collectGarbage } from '../runtime/collect-garbage.js';
import { floatTargetWeight, gptqFactor, gptqLevels, gptqLevelsWithFactor, inputGramsBlockwise, SMALL_K, weightTimesCross, WIDE_INPUT, type GptqFactor, type GramStream } from '../quantize/gptq.js';
import type { Handed } from '../quantize/cholesky.js';
import { layerSetup, rtnWeight } from '../quantize/layer-setup.js';
import { LevelShelf } from '../quantize/level-shelf.js';
import { standInQuantized } from '../quantize/stand-in.js';
import { weightFingerprint, type DecisionSummary, type QuantizationPlan } from '../quantize/plan.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { GPTQ_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass, PassContext } from './pass.js';
import type { QuantizePassOptions, QuantizeSummary } from './quantize.js';
import { decisionPass, quantizeOptionsOf, type WeightPassOptions } from './weight-decision.js';

export interface GptqOptions extends WeightPassOptions {
  /** Damping as a fraction of the mean Gram diagonal (default 0.01). */
  damp?: number;
  /** Quantize input columns by descending input energy (default true; false: in their order). */
  actOrder?: boolean;
  /** Fit each group's grid when GPTQ reaches it, on the error-updated weights, instead of keeping round to nearest's (default false). */
  dynamicGroups?: boolean;
  /**
   * Each layer fitted on the inputs the quantized layers before it give, against the outputs
   * the float model gives (default true); false: on the float model's inputs against the layer's
   * own float outputs.
   */
  sequential?: boolean;
}

/** GPTQ quantization (column-wise error feedback on calibration Gram matrices); needs calibration data. */
export function gptq(options: GptqOptions = {}): Pass<QuantizeSummary | DecisionSummary> {
  checkOptions('gptq', GPTQ_OPTIONS, options);
  return decisionPass('gptq', 'gptq', { ...quantizeOptionsOf(options), gptqDamp: options.damp, gptqActOrder: options.actOrder, gptqDynamicGroups: options.dynamicGroups, gptqSequential: options.sequential }, decideGptq);
}

/**
 * GPTQ's decisions for every selected linear of `model` (left float: the selection runs on a
 * copy) into `plan`. Each starts from the round-to-nearest grid; an earlier decision for the
 * same weight is replaced.
 */
export async function decideGptq(model: Model, ctx: PassContext, options: QuantizePassOptions, plan: QuantizationPlan, pass: string): Promise<DecisionSummary> {
  const what = pass !== 'quantize' ? 'gptq' : options.method === 'gptq' ? "option 'method' gptq" : "option 'reconstruct' gptq";
  if (!ctx.calibration) throw new UserError(`${what} needs calibration data (option 'calibration')`);
  const damp = options.gptqDamp ?? 0.01;
  if (!(damp > 0 && damp < 1)) throw new UserError(`GPTQ damping must be in (0, 1), not ${damp}`);
  const dynamicGroups = options.gptqDynamicGroups ?? false;
  const sequential = options.gptqSequential ?? true;
  const work = model.clone();
  const setup = layerSetup(work, ctx, options, false);
  const { linears } = setup.sel;
  const summary: DecisionSummary = { deferred: true, method: 'gptq', layers: linears.map((l) => ({ name: l.name, bits: setup.bitsOf(l.name) })), startedFromPlan: 0, flexround: null };
  if (linears.length === 0) return summary;
  const tensors = [...new Map(linears.map((l) => [l.node.input(0)!.name, { name: l.node.input(0)!.name, k: l.inFeatures }])).values()];
  // a segment of the graph at a time: only the current segment's Gram matrices are held.
  // Sequential: a segment starts at every linear, and is created once the layers before it are
  // quantized in `work`, so a layer's Gram matrix is of the inputs the quantized model gives it;
  // the float copy runs in step, so that each layer aims at the float model's outputs
  const byInput = new Map<string, LinearLayer[]>();
  for (const l of linears) byInput.set(l.node.input(0)!.name, [...(byInput.get(l.node.input(0)!.name) ?? []), l]);
  // W·ΔCᵀ summed in place of ΔC for a wide input whose layers have fewer rows in all than it is
  // wide (an MLP's down projection): n×k instead of k×k. The float32 products round differently,
  // and error feedback moves levels from that (zoo llama_moby, GPTQ's generation agreement in
  // kv-layouts: 0.3516 against 0.3984), so narrower inputs keep ΔC, where it costs little
  const crossWeights = (name: string): Float32Array[] | undefined => {
    const layers = byInput.get(name)!;
    const k = layers[0]!.inFeatures;
    return k > WIDE_INPUT && layers.reduce((a, l) => a + l.outFeatures, 0) <= k ? layers.map((l) => weightOutIn(l)) : undefined;
  };
  const grams = await inputGramsBlockwise(work, ctx.calibration, tensors, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal, ...(sequential ? { cutBefore: new Set(linears.map((l) => l.node)), reference: work.clone(), crossWeights } : {}) });
  // the layers in the order their inputs' matrices come: with a segment per layer, the model's
  // order of layers can ask for an input again after a later one (parallel attention and MLP)
  const ordered = grams.order.flatMap((name) => byInput.get(name) ?? []);
  const standIns: { l: LinearLayer; original: Tensor }[] = [];
  const actOrder = options.gptqActOrder ?? true;
  let input: PreparedInput | undefined;
  // the levels of the layers done wait on disk until the writer or a later pass reads them
  const shelf = new LevelShelf();
  await inStep(ctx.progress, 'gptq', linears.length, async (tick) => {
    for (const [i, l] of ordered.entries()) {
      ctx.signal.throwIfAborted();
      const w = weightOutIn(l);
      const grid = setup.gridOf(l);
      // one scale for the whole tensor stays shared: no group of its own to refit
      const refit = dynamicGroups && !grid.perTensor ? { search: grid.search } : undefined;
      let q;
      try {
        // the layers reading one input come one after another: its factor is made once for them
        const name = l.node.input(0)!.name;
        if (input?.name !== name) {
          // a wide input's factor (72 MiB for k = 3072) and its layers' work are collected before
          // the next segment's sessions are made, not whenever V8 next counts its external memory
          const wide = input !== undefined && input.factor.k > WIDE_INPUT;
          input = undefined;
          if (wide) collectGarbage();
          input = await prepareInput(grams, name, byInput.get(name)!, damp, actOrder);
        }
        const wCross = await input.wCross(l, w);
        const target = wCross ? await floatTargetWeight(w, l.outFeatures, l.inFeatures, wCross, input.factor) : w;
        const rtn = await rtnWeight(l, target, grid);
        q = input.gram ? gptqLevels(target, rtn, input.gram, damp, actOrder, refit) : await gptqLevelsWithFactor(target, rtn, input.factor, refit);
      } catch (e) {
        // a damped Gram matrix is positive definite in exact arithmetic; rounding can still
        // break that when the input's scales span many orders of magnitude
        if (e instanceof Error && e.message.includes('not positive definite')) {
          throw new UserError(`GPTQ: the Gram matrix of '${l.node.input(0)!.name}' (the input of ${l.name}), damped by ${damp}, is not positive definite in float64; a larger damping (option 'gptqDamp') makes it so`);
        }
        throw e;
      }
      traceMemory(`gptq ${l.name}: levels`);
      if (sequential) {
        const original = standInQuantized(l, q);
        if (original) standIns.push({ l, original });
      }
      plan.weights.set(l.name, { layer: l.name, weight: l.weight.name, method: 'gptq', pass, grid, q: shelf.shelve(q), fingerprint: weightFingerprint(w) });
      // a dequantized stand-in is needed until its segment's session has read it: then the
      // float (possibly file-backed) weight goes back, so at most a few float copies are held
      for (const s of standIns.filter((x) => grams.started(x.l.node))) {
        s.l.weight.graph!.setInitializer(s.l.weight, s.original);
        standIns.splice(standIns.indexOf(s), 1);
      }
      tick(i + 1, l.name);
    }
  }).finally(() => grams.close());
  ctx.report.info(pass, `GPTQ (damping ${damp}${options.gptqActOrder ?? true ? ', activation order' : ''}${dynamicGroups ? ', grids fitted group by group on the updated weights' : ''}${sequential ? ', sequential: inputs from the quantized layers before, outputs of the float model' : ''}) of ${linears.length} weight(s) on the Gram matrices of ${tensors.length} input tensor(s)`);
  plan.chain.push('gptq');
  return summary;
}

/** One layer input's share of GPTQ, made once for the layers reading it (prepareInput). */
interface PreparedInput {
  name: string;
  factor: GptqFactor;
  /** The Gram matrix, kept only where GPTQ runs in JavaScript on it (k <= SMALL_K). */
  gram: Float64Array | undefined;
  /** W·ΔCᵀ of a layer reading the input (sequential GPTQ), undefined without a cross matrix. */
  wCross(l: LinearLayer, w: Float32Array): Promise<Float64Array | undefined>;
}

/**
 * Takes the Gram matrix of input `name` and what the stream summed of ΔC (W·ΔCᵀ of each layer
 * reading it, or ΔC itself when they have more rows in all than the input is wide: then W·ΔCᵀ
 * is formed here, ΔC kept until the last of them), and lets the stream drop them at once. The
 * Gram matrix goes into GPTQ's factor, which serves both the float target weight and GPTQ's
 * updates. BERT-base's 3072-wide input: no k×k cross matrix at all, and the Gram matrix becomes
 * the factor's input in place.
 */
async function prepareInput(grams: GramStream, name: string, layers: LinearLayer[], damp: number, actOrder: boolean): Promise<PreparedInput> {
  const k = layers[0]!.inFeatures;
  const gram: Handed = { a: await grams.take(name) };
  const cross = grams.cross(name);
  const formed = new Map<LinearLayer, Float64Array>();
  grams.weightCross(name)?.forEach((wc, i) => formed.set(layers[i]!, wc));
  const hasCross = cross !== undefined || formed.size > 0;
  // the JavaScript path reads the Gram matrix itself; the factor is made over a copy then
  const small = k <= SMALL_K ? Float64Array.from(gram.a!) : undefined;
  grams.release(name);
  const factor = await gptqFactor(gram, k, damp, actOrder);
  return {
    name,
    factor,
    gram: small,
    async wCross(l, w) {
      if (!hasCross) return undefined;
      const f = formed.get(l);
      formed.delete(l);
      return f ?? weightTimesCross(w, l.outFeatures, k, cross!);
    },
  };
}
