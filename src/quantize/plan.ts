// The quantization plan: what the passes of a chain decided before quantize() writes the graph
// once (reparameterize → decide weights → write Q/DQ). It lives on the pass context of a
// pipeline run (PassContext.plan), so it survives from pass to pass; each entry records a
// fingerprint of what it was decided on, so that a pass in between that changes a weight (a
// prune, a second reparameterization) makes the entry stale, and the writer refuses it instead
// of writing levels that no longer stand for the weight.
import { createHash } from 'node:crypto';
import type { LinearLayer } from '../discover/structure.js';
import { UserError } from '../errors.js';
import type { ActivationParams } from '../export/qdq.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Tensor } from '../ir/tensor.js';
import type { Pass, PassContext } from '../passes/pass.js';
import type { FlexRoundUnitReport, LearnedActivation } from './flexround-weights.js';
import type { QuantizedWeight, WeightQuantSpec } from './weight-quantizer.js';

/** The grid a weight was decided on: the spec of its range search, and whether one scale covers the whole tensor. */
export interface GridSpec extends WeightQuantSpec {
  perTensor: boolean;
}

/** One linear's weight as a decision pass left it. */
export interface WeightDecision {
  /** The linear layer (for messages) and the float initializer its levels stand for. */
  layer: string;
  weight: string;
  /** The method that chose the levels ('gptq', 'flexround') and the pass that ran it. */
  method: string;
  pass: string;
  grid: GridSpec;
  q: QuantizedWeight;
  /** Fingerprint of the float weight ([out, in]) the levels were chosen for. */
  fingerprint: string;
}

/** An activation quantizer fixed before the writer (RepQuant's per-tensor grid, FlexRound's learned step). */
export interface FixedActivation {
  params: ActivationParams;
  method: string;
  pass: string;
  /** Fingerprint of every float weight of the model when the parameters were fixed: activations depend on all of them upstream. */
  fingerprint: string;
}

/** A reparameterization that ran (what the quantize summary reports as `reparam`). */
export interface ReparamSummary {
  method: 'smoothquant' | 'repquant';
  alpha?: number;
  observer?: string;
  folded: string[];
  skipped: { name: string; reason: string }[];
}

/** What FlexRound reported, kept for the writer's summary. */
export interface FlexRoundRecord {
  mode: 'layer' | 'block';
  iters: number;
  lr: number;
  units: FlexRoundUnitReport[];
  activations: LearnedActivation[];
  seconds: number;
  /** How many linears started from an earlier pass's levels (gptq → flexround) rather than round-to-nearest. */
  startedFromPlan: number;
}

export class QuantizationPlan {
  /**
   * Weight decisions by layer name (discovery's names are stable across copies of a graph; the
   * initializer names of rewritten patch embeddings are not: each graph numbers new names itself).
   */
  readonly weights = new Map<string, WeightDecision>();
  /** Fixed activation parameters by tensor name. */
  readonly activations = new Map<string, FixedActivation>();
  readonly reparams: ReparamSummary[] = [];
  flexround: FlexRoundRecord | null = null;
  /** The methods that filled the plan, in order (reported as the summary's chain). */
  readonly chain: string[] = [];

  /** Forgets everything (after the plan is written: the model is quantized). */
  clear(): void {
    this.weights.clear();
    this.activations.clear();
    this.reparams.length = 0;
    this.flexround = null;
    this.chain.length = 0;
  }

  get empty(): boolean {
    return this.weights.size === 0 && this.activations.size === 0 && this.reparams.length === 0;
  }

  /** The plan's decision for a linear, checked against its current float weight `w` ([out, in]); undefined when none. */
  decisionFor(l: LinearLayer, w: Float32Array): WeightDecision | undefined {
    const d = this.weights.get(l.name);
    if (!d) return undefined;
    if (d.fingerprint !== weightFingerprint(w)) {
      throw new UserError(`the ${d.method} decision for layer '${d.layer}' (pass '${d.pass}') was made on a weight '${d.weight}' that a later pass has changed; run ${d.pass} after the passes that change weights (prune, smoothquant, repquant)`);
    }
    return d;
  }

  /** The fixed activation parameters still valid for `model`; a stale entry is refused, naming its pass. */
  fixedActivations(model: Model): Map<string, FixedActivation> {
    if (this.activations.size === 0) return new Map();
    const now = modelFingerprint(model);
    for (const [name, a] of this.activations) {
      if (a.fingerprint !== now) throw new UserError(`the ${a.method} activation grid of '${name}' (pass '${a.pass}') was fixed on weights that a later pass has changed; run ${a.pass} after the passes that change weights`);
    }
    return new Map(this.activations);
  }
}

const digests = new WeakMap<Tensor, string>();

function sha1(bytes: Uint8Array, extra = ''): string {
  return createHash('sha1').update(extra).update(bytes).digest('hex');
}

/** Fingerprint of a weight in [out, in] layout. */
export function weightFingerprint(w: Float32Array): string {
  return sha1(new Uint8Array(w.buffer, w.byteOffset, w.byteLength), `${w.length}:`);
}

/**
 * Fingerprint of every float initializer of the main graph (name and bytes). Tensors are
 * immutable (passes replace them), so each one's digest is computed once.
 */
export function modelFingerprint(model: Model): string {
  const h = createHash('sha1');
  const values = model.graph.initializers.filter((v) => v.initializer?.dtype === DataType.FLOAT).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const v of values) {
    const t = v.initializer!;
    let d = digests.get(t);
    if (d === undefined) {
      d = sha1(t.bytes, `${t.dims.join('x')}:`);
      digests.set(t, d);
    }
    h.update(`${v.name}=${d};`);
  }
  return h.digest('hex');
}

/** Whether two grids are the same (bits, symmetry, block, search, per-tensor). */
export function sameGrid(a: GridSpec, b: GridSpec): boolean {
  return a.bits === b.bits && a.symmetric === b.symmetric && a.blockSize === b.blockSize && a.search === b.search && a.perTensor === b.perTensor;
}

/** A grid in words, for messages: "4-bit symmetric, 32 inputs per scale, mse search". */
export function gridWords(g: GridSpec): string {
  return `${g.bits}-bit ${g.symmetric ? 'symmetric' : 'asymmetric'}, ${g.perTensor ? 'one scale per tensor' : g.blockSize >= 2 ** 30 ? 'one scale per output channel' : `${g.blockSize} inputs per scale`}, ${g.search} search`;
}

/** Whether a pass after this one writes the plan (a quantize pass, or a decision pass, which writes when it is last). */
export function writerFollows(ctx: PassContext): boolean {
  const writes = (p: Pass): boolean => p.planRole === 'write' || p.planRole === 'decide' || ('passes' in p && Array.isArray(p.passes) && (p.passes as Pass[]).some(writes));
  return (ctx.later ?? []).some(writes);
}

/** What a decision pass reports when a later pass writes its decisions (the writer's summary has the figures). */
export interface DecisionSummary {
  /** The decisions wait in the plan (PassContext.plan) for the pass that writes them. */
  deferred: true;
  method: string;
  /** Layers decided, and at which bits. */
  layers: { name: string; bits: number }[];
  /** Of those, how many started from an earlier pass's decision rather than round-to-nearest. */
  startedFromPlan: number;
  /** FlexRound: each unit's calibration output error before and after. */
  flexround: FlexRoundRecord | null;
}
