import { discoverStructure, findMergedDecoder } from '../discover/index.js';
import type { Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { fitEmptyInputs } from '../data/bind.js';
import { calibrationBatch, firstSample, measureFlops, mlpParameters, tokensPerSample, unitCosts } from '../prune/cost.js';
import { magnitudeScores, MaskRunner, optinScores, sublayerSimilarity, taylorScores, type Scores } from '../prune/importance.js';
import { maskLayout, type MaskLayout } from '../prune/mask.js';
import { ampSearch, planFromMask, selectFlops, selectFlopsVerified, selectHeadShare, selectMlpRatio } from '../prune/select.js';
import { applyPrunePlan, type PrunePlan } from '../prune/surgery.js';
import { inStep } from '../progress.js';
import { assertNotQuantized } from '../quantize/select.js';
import type { Pass, PassContext } from './pass.js';

import { PRUNE_METHODS, PRUNE_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';

export { PRUNE_METHODS } from './option-specs.js';
export type PruneMethod = (typeof PRUNE_METHODS)[number];

export interface PruneOptions {
  /**
   * magnitude: weight norms (baseline, no data needed for --ratio); mlp: AMP, Taylor importance
   * of the prediction entropy and a per-MLP width search; optin: forward-only trajectory
   * importance of heads and neurons; drop-attention / drop-mlp: LLM-Drop (whole sublayers).
   */
  method: PruneMethod;
  /** Share of MLP neurons (and so of MLP parameters) to remove, 0..1. */
  ratio?: number;
  /** FLOP budget: the pruned model's FLOPs as a fraction of the original's, 0..1. */
  flops?: number;
  /**
   * optin: share of all attention heads to remove, 0..1 (the least important by OPTIN's score;
   * whole key/value groups under grouped-query attention). With `ratio` the neurons are chosen
   * as well; with `flops` the neurons fill the rest of the budget.
   */
  headRatio?: number;
  /** AMP: largest rise of the prediction entropy (nats) accepted per MLP (default 0.005). */
  maxIncrease?: number;
  /** drop-attention / drop-mlp: how many attention (MLP) sublayers to drop (default 1). */
  count?: number;
  /** Calibration samples used for scoring (default 32); OPTIN under --flops checks its plan on up to 4x as many. */
  samples?: number;
  /** Apply this plan instead of choosing one. */
  plan?: PrunePlan;
}

export interface PruneSummary {
  method: PruneMethod | 'plan';
  parametersBefore: number;
  parametersAfter: number;
  mlpParametersBefore: number;
  mlpParametersAfter: number;
  /** FLOPs of one sample (MatMul and Gemm), measured; null without calibration data. */
  flopsBefore: number | null;
  flopsAfter: number | null;
  neuronsRemoved: number;
  headsRemoved: number;
  sublayersRemoved: number;
  blocks: { index: number; heads: number | null; mlpWidth: number | null; attentionDropped: boolean; mlpDropped: boolean }[];
  /** AMP: entropy of the predictions on the calibration batch before and after. */
  entropy?: { before: number; after: number };
  /** drop-attention / drop-mlp: similarity of each such sublayer's input and output, most similar first. */
  similarity?: { block: number; similarity: number }[];
}

const PASS = 'prune';

/** Structured pruning pass: removes MLP neurons, attention heads or attention sublayers for real. */
export function prune(options: PruneOptions): Pass<PruneSummary> {
  validate(options);
  return {
    name: PASS,
    async run(model: Model, ctx: PassContext) {
      const where = model.sourcePath ?? 'the model';
      // quantized linears are not MatMuls with float weights, so discovery would find no blocks
      assertNotQuantized(model, where, 'prune');
      const merged = findMergedDecoder(model);
      if (merged) {
        throw new UserError(`${where} is a merged decoder (If '${merged.node.name}' on '${merged.flag.name}'), which prune does not cut: both branches read the same weights and cache inputs, so removing heads or neurons would have to rewrite both at once; prune the one-graph KV-cache export or each file of the pair decoder_model.onnx and decoder_with_past_model.onnx instead`);
      }
      const structure = discoverStructure(model);
      if (structure.blocks.length === 0) throw new UserError(`no transformer blocks were found in ${where}, so there is nothing to prune`);
      const layout = maskLayout(structure);
      const needsData = !options.plan && !(options.method === 'magnitude' && options.flops === undefined);
      if (needsData && !ctx.calibration) throw new UserError(`method ${options.method} needs calibration data (option 'calibration')`);
      const samples = options.samples ?? 32;
      const batch = ctx.calibration ? calibrationBatch(ctx.calibration, model, samples) : undefined;
      const sample = batch ? firstSample(batch.feeds) : undefined;
      const parametersBefore = model.parameterCount();
      const mlpParametersBefore = mlpParameters(structure);
      const flopsBefore = sample ? await measureFlops(model, sample, ctx.threads) : null;
      const extra: Partial<PruneSummary> = {};
      let plan: PrunePlan;
      if (options.plan) plan = options.plan;
      else if (options.method === 'drop-attention' || options.method === 'drop-mlp') {
        const kind = options.method === 'drop-attention' ? 'attention' : 'mlp';
        const sim = await sublayerSimilarity(model, structure, batch!.feeds, kind, ctx.threads);
        const count = options.count ?? 1;
        if (count > sim.length) throw new UserError(`option 'count' is ${count}, more than the ${sim.length} ${kind === 'attention' ? 'attention' : 'MLP'} sublayers of ${where}`);
        const drop = sim.slice(0, count).map((s) => s.block);
        plan = kind === 'attention' ? { dropAttention: drop } : { dropMlp: drop };
        extra.similarity = sim;
      } else {
        plan = await choose(model, structure, layout, batch, sample, flopsBefore, options, ctx, extra);
      }
      const surgery = applyPrunePlan(model, plan, structure);
      const after = discoverStructure(model);
      // a decoder that lost key/value heads takes an empty past of its new size
      const flopsAfter = sample ? await measureFlops(model, fitEmptyInputs(sample, model), ctx.threads) : null;
      const dropA = new Set(plan.dropAttention ?? []);
      const dropM = new Set(plan.dropMlp ?? []);
      const summary: PruneSummary = {
        method: options.plan ? 'plan' : options.method,
        parametersBefore,
        parametersAfter: model.parameterCount(),
        mlpParametersBefore,
        mlpParametersAfter: mlpParameters(after),
        flopsBefore,
        flopsAfter,
        ...surgery,
        blocks: structure.blocks.map((b) => ({
          index: b.index,
          heads: dropA.has(b.index) ? 0 : b.attention ? (plan.headKeep?.get(b.index)?.length ?? b.attention.numHeads) : null,
          mlpWidth: dropM.has(b.index) ? 0 : b.mlp ? (plan.mlpKeep?.get(b.index)?.length ?? b.mlp.width) : null,
          attentionDropped: dropA.has(b.index),
          mlpDropped: dropM.has(b.index),
        })),
        ...extra,
      };
      ctx.report.info(PASS, `removed ${surgery.neuronsRemoved} MLP neurons, ${surgery.headsRemoved} heads and ${surgery.sublayersRemoved} sublayers: ${parametersBefore} -> ${summary.parametersAfter} parameters${flopsBefore !== null ? `, ${flopsBefore} -> ${flopsAfter} FLOPs per sample` : ''}`);
      return { model, modified: surgery.neuronsRemoved + surgery.headsRemoved + surgery.sublayersRemoved > 0, summary };
    },
  };
}

/** AMP with its defaults (Taylor importance, entropy criterion, per-MLP width search). */
export function pruneMlp(options: Omit<PruneOptions, 'method'> = {}): Pass<PruneSummary> {
  return prune({ ...options, method: 'mlp' });
}

async function choose(
  model: Model,
  structure: Structure,
  layout: MaskLayout,
  batch: { feeds: Record<string, ArrayTensor>; count: number } | undefined,
  sample: Record<string, ArrayTensor> | undefined,
  flopsBefore: number | null,
  options: PruneOptions,
  ctx: PassContext,
  extra: Partial<PruneSummary>,
): Promise<PrunePlan> {
  const byFlops = async (scores: Scores, runner?: MaskRunner, refine = false): Promise<Float32Array> => {
    const tokens = await tokensPerSample(model, structure, sample!, ctx.threads);
    const costs = unitCosts(structure, tokens);
    const target = options.flops! * flopsBefore!;
    if (!runner) return selectFlops(layout, scores, costs, flopsBefore!, target);
    if (!refine) return selectFlopsVerified(runner, scores, costs, flopsBefore!, target, { signal: ctx.signal });
    let started = false;
    const onRefined = (done: number, total: number, kl: number) => {
      if (!started) ctx.progress.start('optin: refine MLP widths', total);
      started = true;
      ctx.progress.tick(done, `calibration KL ${kl.toPrecision(3)}`);
    };
    // the refinement's total is known only at its first report, so the step opens then
    let mask: Float32Array;
    try {
      mask = await selectFlopsVerified(runner, scores, costs, flopsBefore!, target, { refine, signal: ctx.signal, onRefined });
    } catch (e) {
      if (started) ctx.progress.end(undefined, 'stopped');
      throw e;
    }
    if (started) ctx.progress.end();
    return mask;
  };
  // masked variants per onnxruntime run: about 512 rows of samples per run
  const variantsFor = (samples: number): number => Math.max(2, Math.min(32, Math.floor(512 / samples)));
  const variantsPerRun = batch ? variantsFor(batch.count) : 2;
  if (options.method === 'magnitude') {
    const scores = magnitudeScores(structure, layout);
    return planFromMask(layout, options.flops !== undefined ? await byFlops(scores) : selectMlpRatio(layout, scores, options.ratio ?? 0, 'uniform'));
  }
  if (options.method === 'optin') {
    const runner = await MaskRunner.create(model, batch!.feeds, batch!.count, { threads: ctx.threads, variantsPerRun });
    try {
      const scores = await inStep(ctx.progress, 'optin', layout.units.length, (tick) => optinScores(runner, ctx.signal, 10, (done) => tick(done)));
      if (options.headRatio !== undefined) {
        const heads = selectHeadShare(layout, scores, options.headRatio);
        if (options.flops === undefined) return planFromMask(layout, selectMlpRatio(layout, scores, options.ratio ?? 0, 'global').map((x, i) => x * heads[i]!));
        // the heads are fixed; neurons, lowest-scored first, fill what the budget still asks
        const tokens = await tokensPerSample(model, structure, sample!, ctx.threads);
        const costs = unitCosts(structure, tokens);
        const headFlops = layout.units.reduce((t, u, i) => t + (u.kind === 'head' && heads[i] === 0 ? costs.head.get(u.block)! : 0), 0);
        const neurons = selectFlops(layout, scores, costs, flopsBefore! - headFlops, options.flops * flopsBefore!, { heads: false });
        return planFromMask(layout, neurons.map((x, i) => x * heads[i]!));
      }
      if (options.flops === undefined) return planFromMask(layout, selectMlpRatio(layout, scores, options.ratio ?? 0, 'global'));
      // The budget's plan is chosen and its MLP widths refined (refineWidths) on the calibration
      // KL of up to 4x the scoring samples: judged on the scoring batch alone, the refinement
      // fits that batch.
      const more = calibrationBatch(ctx.calibration!, model, 4 * (options.samples ?? 32));
      if (more.count <= batch!.count) return planFromMask(layout, await byFlops(scores, runner, true));
      const verifier = await MaskRunner.create(model, more.feeds, more.count, { threads: ctx.threads, variantsPerRun: variantsFor(more.count) });
      try {
        return planFromMask(layout, await byFlops(scores, verifier, true));
      } finally {
        await verifier.release();
      }
    } finally {
      await runner.release();
    }
  }
  // AMP
  const scores = await taylorScores(model, structure, layout, batch!.feeds, batch!.count, { threads: ctx.threads, signal: ctx.signal });
  if (options.ratio !== undefined) return planFromMask(layout, selectMlpRatio(layout, scores, options.ratio, 'global'));
  const runner = await MaskRunner.create(model, batch!.feeds, batch!.count, { threads: ctx.threads, variantsPerRun: options.flops !== undefined ? variantsPerRun : 2 });
  try {
    if (options.flops !== undefined) return planFromMask(layout, await byFlops(scores, runner));
    const r = await ampSearch(runner, scores, options.maxIncrease ?? 0.005, { signal: ctx.signal });
    extra.entropy = { before: r.baseEntropy, after: r.entropy };
    return planFromMask(layout, r.mask);
  } finally {
    await runner.release();
  }
}

/** Options checked when the pass is built, in option names (the CLI maps them to its flags). */
function validate(o: PruneOptions): void {
  const at = `pass '${PASS}'`;
  checkOptions(PASS, PRUNE_OPTIONS, o, at);
  // a ratio of 1 would remove every neuron: [0, 1) for shares, (0, 1] for the FLOP budget
  for (const key of ['ratio', 'headRatio'] as const) {
    if (o[key] === 1) throw new UserError(`${at}: option '${key}' must be a number in [0, 1), not 1`);
  }
  if (o.flops === 0) throw new UserError(`${at}: option 'flops' must be a fraction in (0, 1], not 0`);
  if (o.headRatio !== undefined && o.method !== 'optin') throw new UserError(`${at}: option 'headRatio' goes with method optin, not ${o.method}`);
  if (o.ratio !== undefined && o.flops !== undefined) throw new UserError(`${at}: give either option 'ratio' or option 'flops', not both`);
  if ((o.method === 'drop-attention' || o.method === 'drop-mlp') && (o.ratio !== undefined || o.flops !== undefined)) throw new UserError(`${at}: method ${o.method} takes option 'count', not option 'ratio' or option 'flops'`);
  if (o.method === 'magnitude' && o.ratio === undefined && o.flops === undefined && !o.plan) throw new UserError(`${at}: method magnitude needs option 'ratio' or option 'flops'`);
  if (o.method === 'optin' && o.ratio === undefined && o.flops === undefined && o.headRatio === undefined && !o.plan) throw new UserError(`${at}: method optin needs option 'ratio', option 'flops' or option 'headRatio'`);
}
