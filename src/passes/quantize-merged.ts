import { createHash } from 'node:crypto';
import { modelInputs } from '../data/bind.js';
import { withInput } from '../data/input-view.js';
import { constantSource, constantTensor } from '../discover/constants.js';
import { matchLinear } from '../discover/linear.js';
import { NoMatch } from '../discover/match.js';
import { type MergedDecoder, withPastBranchModel } from '../discover/merged.js';
import { UserError } from '../errors.js';
import { quantizeLinearDynamic } from '../export/dynamic.js';
import { quantizeEmbeddingBlocked, quantizeEmbeddingInt8 } from '../export/embedding.js';
import { quantizeLinearNBits } from '../export/matmul-nbits.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Value } from '../ir/value.js';
import { isFloat16, isStatic } from '../quantize/scheme.js';
import { assertNotQuantized } from '../quantize/select.js';
import { compareModels, type SqnrResult } from '../quantize/verify.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { cleanup } from './cleanup.js';
import type { PassContext, PassResult } from './pass.js';
import type { QuantizePassOptions, QuantizeSummary } from './quantize.js';

/** One weight decision as written: the weight (or embedding table) it replaced and how. */
export interface WeightRewrite {
  kind: 'nbits' | 'dynamic' | 'embedding-blocked' | 'embedding-int8';
  /** Name of the float initializer the rewrite replaced. */
  weight: string;
  q: QuantizedWeight;
}

/** What the quantize summary says about a merged decoder. */
export interface MergedQuantizeSummary {
  /** The If and the branch whose layers were described, calibrated and verified layer by layer. */
  ifNode: string;
  describedBranch: 'then_branch' | 'else_branch';
  /** Weights rewritten in each branch (linears and embedding tables). */
  rewritten: { branch: 'then_branch' | 'else_branch'; linears: number; embeddings: number }[];
  /** Quantized tensors stored once in the outer graph and read by both branches. */
  sharedInitializers: number;
  /** The merged model's outputs against the float one with the flag set to take the with-past branch. */
  withPastOutputs: SqnrResult[];
}

/**
 * Quantizes a merged decoder. Every decision (weight grids, GPTQ's levels, FlexRound's
 * rounding) is made once on the with-past branch, run as a model of its own; the same
 * decisions are then written into both branches, and the packed weights they read are stored
 * once in the outer graph, as the float weights were. The result is compared with the float
 * model through the If on the calibration samples as given, and again with the flag set to
 * the with-past branch, so both branches are run.
 */
export async function quantizeMerged(
  model: Model,
  merged: MergedDecoder,
  ctx: PassContext,
  options: QuantizePassOptions,
  quantizeOne: (view: Model, ctx: PassContext, rewrites: WeightRewrite[]) => Promise<PassResult<QuantizeSummary>>,
): Promise<PassResult<QuantizeSummary>> {
  const file = model.sourcePath ?? 'the model';
  const flagName = merged.flag.name;
  if (isStatic(options.scheme)) {
    throw new UserError(`${file} is a merged decoder (If '${merged.node.name}' on '${flagName}'); static scheme ${options.scheme} is not written into its branches: use a weight-only (w8, w4) or the dynamic scheme, or quantize decoder_model.onnx and decoder_with_past_model.onnx`);
  }
  if (isFloat16(options.scheme)) {
    // measured: the float16 conversion of MatMulNBits inside the If's branches gave 1.9 dB end-to-end on the zoo's merged Llama
    throw new UserError(`${file} is a merged decoder (If '${merged.node.name}' on '${flagName}'); scheme ${options.scheme} is not yet written into its branches: use w4 (or fp16 alone), or quantize decoder_model.onnx and decoder_with_past_model.onnx`);
  }
  assertNotQuantized(model, file);
  const float = model.clone();
  const view = withPastBranchModel(model);
  const names = modelInputs(model).map((i) => i.name);
  const rewrites: WeightRewrite[] = [];
  const result = await quantizeOne(view, { ...ctx, calibration: ctx.calibration && withInput(ctx.calibration, names, flagName, undefined) }, rewrites);

  const branches = [merged.withPast, merged.noPast];
  const before = new Set(branches.flatMap((b) => b.initializers));
  const otherIs = merged.withPastIs === 'then_branch' ? 'else_branch' : 'then_branch';
  const rewritten = branches.map((b, i) => ({ branch: i === 0 ? merged.withPastIs : otherIs, ...replay(b, rewrites) }));
  const viewCount = { linears: rewrites.filter((r) => !r.kind.startsWith('embedding')).length, embeddings: rewrites.filter((r) => r.kind.startsWith('embedding')).length };
  if (rewritten[0]!.linears !== viewCount.linears || rewritten[0]!.embeddings !== viewCount.embeddings) {
    throw new Error(`merged decoder: ${viewCount.linears} linear(s) and ${viewCount.embeddings} table(s) were quantized in the with-past branch model but ${rewritten[0]!.linears} and ${rewritten[0]!.embeddings} found in the If's branch`);
  }
  for (const r of rewritten.slice(1)) {
    if (r.linears < viewCount.linears) ctx.report.warn('quantize', `the ${r.branch} of If '${merged.node.name}' reads ${viewCount.linears - r.linears} fewer of the quantized weights than the with-past branch; they stay as they are there`);
  }
  const sharedInitializers = hoistShared(model.graph, branches, before);
  ctx.report.info('quantize', `merged decoder: decisions made on the ${merged.withPastIs} of If '${merged.node.name}', written into both branches (${rewritten.map((r) => `${r.branch}: ${r.linears} linear(s), ${r.embeddings} table(s)`).join('; ')}); ${sharedInitializers} quantized tensor(s) stored once in the outer graph`);

  const summary = { ...result.summary! };
  if ([...model.graph.allNodes()].some((n) => n.domain === 'com.microsoft')) model.opsetImports.set('com.microsoft', 1);
  await cleanup().run(model, ctx);

  let withPastOutputs: SqnrResult[] = [];
  if (ctx.calibration) {
    const run = { samples: options.verifySamples ?? 16, batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal };
    const asGiven = await compareModels(float, model, ctx.calibration, [], run);
    const takeWithPast = { dtype: DataType.BOOL, dims: [1], data: Uint8Array.of(merged.withPastIs === 'then_branch' ? 1 : 0) };
    withPastOutputs = (await compareModels(float, model, withInput(ctx.calibration, names, flagName, takeWithPast), [], run)).outputs;
    summary.outputs = asGiven.outputs;
    summary.verifiedSamples = asGiven.samples;
  }
  summary.weightBytesBefore = weightBytes(float);
  summary.weightBytesAfter = weightBytes(model);
  summary.merged = { ifNode: merged.node.name, describedBranch: merged.withPastIs, rewritten, sharedInitializers, withPastOutputs } satisfies MergedQuantizeSummary;
  return { model, modified: true, summary };
}

/** Writes the recorded decisions into one branch: every node there that reads a rewritten weight. */
function replay(branch: Graph, rewrites: readonly WeightRewrite[]): { linears: number; embeddings: number } {
  const byWeight = new Map(rewrites.map((r) => [r.weight, r]));
  let linears = 0;
  let embeddings = 0;
  for (const n of [...branch.nodes]) {
    if (n.opType === 'MatMul' || n.opType === 'Gemm') {
      const r = byWeight.get(constantSource(n.input(1))?.name ?? '');
      if (!r || r.kind.startsWith('embedding')) continue;
      const l = matchLinear(n);
      if (l instanceof NoMatch) throw new Error(`merged decoder: node '${n.name}' reads the quantized weight '${r.weight}' but is not a linear layer here (${l.reason})`);
      if (r.kind === 'nbits') quantizeLinearNBits(branch, l, r.q);
      else quantizeLinearDynamic(branch, l, r.q);
      linears++;
    } else if (n.opType === 'Gather' && n.intAttr('axis', 0) === 0) {
      const table = constantSource(n.input(0));
      const r = byWeight.get(table?.name ?? '');
      if (!r || !r.kind.startsWith('embedding')) continue;
      const dims = constantTensor(table)!.dims;
      const e = { node: n, table: table!, rows: dims[0]!, width: dims[1]! };
      if (r.kind === 'embedding-blocked') quantizeEmbeddingBlocked(branch, e, r.q);
      else quantizeEmbeddingInt8(branch, e, r.q);
      embeddings++;
    }
  }
  return { linears, embeddings };
}

/**
 * Moves the initializers the rewrites added inside the branches to the outer graph, one value
 * per distinct content, so both branches read the same packed weights (as Optimum's merge
 * stores each float weight once). Returns how many outer values more than one branch reads.
 */
function hoistShared(outer: Graph, branches: readonly Graph[], before: ReadonlySet<Value>): number {
  const byContent = new Map<string, Value>();
  const readers = new Map<Value, Set<Graph>>();
  for (const b of branches) {
    for (const v of [...b.initializers]) {
      if (before.has(v) || !v.initializer || v.isGraphOutput()) continue;
      const t = v.initializer;
      const key = `${t.dtype}|${t.dims.join(',')}|${createHash('sha256').update(t.bytes).digest('hex')}`;
      const uses = [...v.uses()];
      for (const u of uses) u.node.setInput(u.index, undefined);
      b.removeInitializer(v);
      let target = byContent.get(key);
      if (!target) {
        target = outer.addInitializer(t);
        byContent.set(key, target);
      }
      for (const u of uses) u.node.setInput(u.index, target);
      readers.set(target, (readers.get(target) ?? new Set()).add(b));
    }
  }
  return [...readers.values()].filter((s) => s.size > 1).length;
}

function weightBytes(m: Model): number {
  return m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
}
