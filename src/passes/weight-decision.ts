// What the weight-decision passes (gptq, flexround) share: their scheme options, and the pass
// shape. A decision pass chooses weight levels into the quantization plan; when a later pass
// of the run writes the plan (quantize, or another decision pass), it leaves them there;
// otherwise it writes them itself, as the quantize pass with its method would.
import { findMergedDecoder } from '../discover/merged.js';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import type { LayerSetup } from '../quantize/layer-setup.js';
import { rtnWeight } from '../quantize/layer-setup.js';
import { QuantizationPlan, gridWords, sameGrid, weightFingerprint, writerFollows, type DecisionSummary, type WeightDecision } from '../quantize/plan.js';
import { parseGranularity, type BlockSize, type Granularity, type Method, type QuantizeOptions, type Scheme } from '../quantize/scheme.js';
import { assertNotQuantized } from '../quantize/select.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { weightOutIn } from '../export/linear-weight.js';
import type { Pass, PassContext } from './pass.js';
import { quantize, type QuantizePassOptions, type QuantizeSummary } from './quantize.js';

/** Quantize options the flexround and gptq passes pass through unchanged (documented on QuantizeOptions). */
const PASSED = ['weightSymmetric', 'exclude', 'embeddings', 'verifySamples', 'batchSize', 'cacheDir'] as const;

export interface WeightPassOptions extends Pick<QuantizeOptions, (typeof PASSED)[number]> {
  /** Weight bits (default 4). */
  bits?: 8 | 4 | 3 | 2;
  /** Activation bits: absent for weight-only (MatMulNBits); 8 for static W·A8 (QDQ, weights per output channel). */
  aBits?: 8;
  /** Input features per weight scale for weight-only schemes (default 32). */
  blockSize?: BlockSize;
  /** Weights per scale: 'tensor', 'channel' or 'block:N' (weight-only); overrides blockSize. */
  granularity?: Granularity;
}

/** The quantize options a decision pass's bits, aBits and granularity stand for. */
export function quantizeOptionsOf(o: WeightPassOptions): QuantizeOptions {
  const bits = o.bits ?? 4;
  const scheme: Scheme = o.aBits === 8 ? 'w8a8' : (`w${bits}` as Scheme);
  return {
    scheme,
    ...(o.aBits === 8 && bits !== 8 ? { weightBits: bits } : {}),
    blockSize: o.blockSize,
    ...(o.granularity !== undefined ? parseGranularity(o.granularity, scheme) : {}),
    ...Object.fromEntries(PASSED.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])),
  };
}

/** A method's decision step: chooses the levels of the selected linears of `model` (float) into `plan`. */
export type DecideStep = (model: Model, ctx: PassContext, options: QuantizePassOptions, plan: QuantizationPlan, pass: string) => Promise<DecisionSummary>;

/** The pass of a weight-decision method: decides into the plan when a writer follows, else decides and writes. */
export function decisionPass(name: string, method: Method, options: QuantizePassOptions, decide: DecideStep): Pass<QuantizeSummary | DecisionSummary> {
  const writer = quantize({ ...options, method });
  return {
    name,
    planRole: 'decide',
    async run(model: Model, ctx: PassContext) {
      if (!writerFollows(ctx)) return writer.run(model, ctx);
      const file = model.sourcePath ?? 'the model';
      assertNotQuantized(model, file);
      const merged = findMergedDecoder(model);
      if (merged) throw new UserError(`${file} is a merged decoder (If '${merged.node.name}'): ${name} leaves decisions for a later pass only on one-graph models; make ${name} the last quantization pass, or quantize({ method: '${method}' })`);
      const summary = await decide(model, ctx, options, ctx.plan ?? new QuantizationPlan(), name);
      return { model, modified: false, summary };
    },
  };
}

/**
 * Where a decision starts for each selected linear of `setup`: the plan's earlier decision when
 * there is one (checked against the weight and the grid), else round to nearest. Also returns
 * each float weight's fingerprint (the weights themselves are not kept: all of them would be a
 * second copy of the model).
 */
export async function startingWeights(setup: LayerSetup, plan: QuantizationPlan, pass: string, options: QuantizePassOptions): Promise<{ weights: QuantizedWeight[]; fingerprints: string[]; earlier: (WeightDecision | undefined)[] }> {
  const weights: QuantizedWeight[] = [];
  const fingerprints: string[] = [];
  const earlier: (WeightDecision | undefined)[] = [];
  for (const l of setup.sel.linears) {
    const w = weightOutIn(l);
    const grid = setup.gridOf(l);
    const d = plan.decisionFor(l, w);
    if (d) checkGrid(d, l.name, grid, pass, options);
    fingerprints.push(d?.fingerprint ?? weightFingerprint(w));
    earlier.push(d);
    weights.push(d?.q ?? (await rtnWeight(l, w, grid)));
  }
  return { weights, fingerprints, earlier };
}

/** A decision made on another grid than the one `pass` uses: one sentence naming both. */
export function checkGrid(d: WeightDecision, layer: string, grid: WeightDecision['grid'], pass: string, options: QuantizePassOptions): void {
  if (sameGrid(d.grid, grid)) return;
  throw new UserError(`layer '${layer}': pass '${d.pass}' decided it on a ${gridWords(d.grid)} grid, but pass '${pass}' (scheme ${options.scheme}${options.weightBits !== undefined ? `, weight bits ${options.weightBits}` : ''}) uses a ${gridWords(grid)} grid; give both passes the same bits, activation bits and granularity`);
}
