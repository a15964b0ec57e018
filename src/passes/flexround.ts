// FlexRound as a pass: learned rounding by element-wise division, block by block (or layer by
// layer) against the float model's outputs on calibration data. Alone it quantizes the model;
// after a pass that decided the weights (gptq) it starts from those levels instead of
// round-to-nearest; after repquant it starts its W·A8 activation steps from RepQuant's grids:
//   pipeline([flexRound({ bits: 4, iters: 500 })]).apply(model, { calibration })
//   pipeline([repQuant(), flexRound({ bits: 4, aBits: 8 })])
//   pipeline([gptq({ bits: 3 }), flexRound({ bits: 3 })])
import { UserError } from '../errors.js';
import { weightOutIn } from '../export/linear-weight.js';
import { type ActivationParams, activationParams } from '../export/qdq.js';
import type { Model } from '../ir/model.js';
import { weightRoundingTo } from '../quantize/flexround.js';
import { flexRoundWeights } from '../quantize/flexround-weights.js';
import { calibrateActivations, layerSetup } from '../quantize/layer-setup.js';
import { modelFingerprint, type DecisionSummary, type QuantizationPlan } from '../quantize/plan.js';
import type { FlexRoundSettings } from '../quantize/scheme.js';
import { FLEXROUND_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass, PassContext } from './pass.js';
import type { QuantizePassOptions, QuantizeSummary } from './quantize.js';
import { decisionPass, quantizeOptionsOf, startingWeights, type WeightPassOptions } from './weight-decision.js';

import { decideGptq } from './gptq.js';

export { gptq, type GptqOptions } from './gptq.js';

export interface FlexRoundOptions extends WeightPassOptions, FlexRoundSettings {}

/** FlexRound quantization (learned rounding by element-wise division); needs calibration data. */
export function flexRound(options: FlexRoundOptions = {}): Pass<QuantizeSummary | DecisionSummary> {
  checkOptions('flexround', FLEXROUND_OPTIONS, options);
  const { iters, lr, mode, batch, tokens, samples, learnGrid, seed, learnActivations, start, minTokensPerInput } = options;
  return decisionPass('flexround', 'flexround', { ...quantizeOptionsOf(options), flexround: { iters, lr, mode, batch, tokens, samples, learnGrid, seed, learnActivations, start, minTokensPerInput } }, decideFlexRound);
}

/**
 * FlexRound's decisions for every selected linear of `model` (left float: the selection runs on
 * a copy) into `plan`, starting from the plan's earlier decision for a weight when there is one
 * (its levels, reached at the start by weightRoundingTo); with none, GPTQ decides them first
 * (settings.start 'gptq', the default) or learning starts from round to nearest ('rtn'). Static
 * schemes: the activation steps start from the plan's fixed grids (RepQuant's) or the
 * calibrated ranges, and the learned ones go into the plan.
 */
export async function decideFlexRound(model: Model, ctx: PassContext, options: QuantizePassOptions, plan: QuantizationPlan, pass: string): Promise<DecisionSummary> {
  if (!ctx.calibration) throw new UserError(`${pass === 'quantize' ? "option 'method' flexround" : 'flexround'} needs calibration data (option 'calibration')`);
  if ((options.flexround?.start ?? 'gptq') === 'gptq' && plan.weights.size === 0) await decideGptq(model, ctx, options, plan, pass);
  const fixedBefore = plan.fixedActivations(model);
  const work = model.clone();
  const setup = layerSetup(work, ctx, options, false);
  const { linears } = setup.sel;
  const summary: DecisionSummary = { deferred: true, method: 'flexround', layers: linears.map((l) => ({ name: l.name, bits: setup.bitsOf(l.name) })), startedFromPlan: 0, flexround: null };
  if (linears.length === 0) return summary;
  const { weights, fingerprints, earlier } = await startingWeights(setup, plan, pass, options);
  // made when each linear is learned: all of them at once would be a second copy of all weights
  const from = (i: number): Float32Array | undefined => (earlier[i] ? weightRoundingTo(weightOutIn(linears[i]!), earlier[i]!.q) : undefined);
  summary.startedFromPlan = earlier.filter((d) => d).length;
  if (summary.startedFromPlan > 0) ctx.report.info(pass, `flexround starts ${summary.startedFromPlan} of ${linears.length} layer(s) from the levels ${[...new Set(earlier.filter((d) => d).map((d) => d!.method))].join(', ')} decided, the others from round to nearest`);
  // static schemes: the calibrated (or RepQuant's) activation quantizers are the start of the learned ones
  const fixed = new Map<string, ActivationParams>([...fixedBefore].map(([n, a]) => [n, a.params]));
  const ranges = setup.staticScheme ? (await calibrateActivations(work, ctx, setup, options, fixed)).ranges : new Map<string, { min: number; max: number }>();
  const acts = new Map(setup.staticScheme ? linears.map((l) => l.node.input(0)!.name).map((n) => [n, fixed.get(n) ?? activationParams(ranges.get(n)!.min, ranges.get(n)!.max, setup.aBits)] as const) : []);
  const r = await flexRoundWeights(work, ctx.calibration, linears, weights, { ...options.flexround, learnGrid: setup.perTensorWeights ? false : options.flexround?.learnGrid }, { batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal, progress: ctx.progress }, acts, from);
  linears.forEach((l, i) => plan.weights.set(l.name, { layer: l.name, weight: l.weight.name, method: 'flexround', pass, grid: setup.gridOf(l), q: r.weights[i]!, fingerprint: fingerprints[i]! }));
  const fingerprint = modelFingerprint(model);
  for (const [n, a] of r.activations) plan.activations.set(n, { params: a, method: 'flexround', pass, fingerprint });
  const startName = summary.startedFromPlan > 0 ? 'the start' : 'rtn';
  for (const x of r.layers) {
    if (x.notLearned) {
      ctx.report.info(pass, `flexround ${x.unit}: kept ${startName}, not learned: ${x.notLearned}`, { target: x.unit, data: { ...x } });
      continue;
    }
    ctx.report.info(pass, `flexround ${x.unit}: output MSE ${x.lossBefore.toExponential(3)} (${summary.startedFromPlan > 0 ? 'start' : 'rtn'}) -> ${x.lossAfter.toExponential(3)}${x.kept === 'learned' ? '' : `, kept ${summary.startedFromPlan > 0 ? 'the start' : 'rtn'} (no better)`}`, { target: x.unit, data: { ...x } });
  }
  const learned = [...r.activations].map(([name, a]) => ({ name, start: acts.get(name)!.scale, learned: a.scale }));
  plan.flexround = { mode: r.mode, iters: r.iters, lr: r.lr, units: r.layers, activations: learned, seconds: r.seconds, startedFromPlan: summary.startedFromPlan };
  summary.flexround = plan.flexround;
  plan.chain.push('flexround');
  return summary;
}
