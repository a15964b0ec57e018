import { constantScalar } from '../discover/constants.js';
import { discoverStructure } from '../discover/index.js';
import type { Structure } from '../discover/structure.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Value } from '../ir/value.js';

/** Softmax → Mul(ζ−γ) → Add(γ) → Clip(0, 1): clipped softmax (Bondarenko et al. 2023). */
export interface ClippedSoftmax {
  softmax: Node;
  gamma: number;
  zeta: number;
  /** The Mul, Add and Clip after the Softmax. */
  nodes: Node[];
  /** The clipped probabilities (what multiplies v). */
  output: Value;
}

/** sigmoid(G(x)) ⊙ (softmax(QKᵀ) V): a gate multiplying the attention context. */
export interface GatedAttention {
  /** The Mul that applies the gate. */
  mul: Node;
  sigmoid: Node;
  /** The attention context before the gate ([B, heads, T, headSize]). */
  context: Value;
  output: Value;
}

export interface AttentionForm {
  softmax: string;
  kind: 'softmax' | 'clipped-softmax';
  gamma?: number;
  zeta?: number;
  gated: boolean;
  /** The tensor holding the attention probabilities that multiply v. */
  probs: string;
  /** The context after the probabilities multiply v (after the gate when gated). */
  context: string | undefined;
}

function single(v: Value): Node | undefined {
  const c = v.consumers();
  return c.length === 1 ? c[0] : undefined;
}

function constOperand(n: Node, other: Value): number | undefined {
  const i = n.input(0) === other ? 1 : 0;
  return constantScalar(n.input(i));
}

/** Recognises a clipped softmax after `softmax`, or undefined. */
export function matchClippedSoftmax(softmax: Node): ClippedSoftmax | undefined {
  const p = softmax.output(0);
  const mul = single(p);
  if (!mul || mul.opType !== 'Mul') return undefined;
  const scale = constOperand(mul, p);
  if (scale === undefined) return undefined;
  const add = single(mul.output(0));
  if (!add || (add.opType !== 'Add' && add.opType !== 'Sub')) return undefined;
  let shift = constOperand(add, mul.output(0));
  if (shift === undefined) return undefined;
  if (add.opType === 'Sub') {
    if (add.input(0) !== mul.output(0)) return undefined;
    shift = -shift;
  }
  const clip = single(add.output(0));
  if (!clip || clip.opType !== 'Clip') return undefined;
  const lo = clip.input(1) ? constantScalar(clip.input(1)) : clip.floatAttr('min');
  const hi = clip.input(2) ? constantScalar(clip.input(2)) : clip.floatAttr('max');
  if (lo === undefined || hi === undefined || Math.abs(lo) > 1e-6 || Math.abs(hi - 1) > 1e-6) return undefined;
  const gamma = shift;
  return { softmax, gamma, zeta: scale + gamma, nodes: [mul, add, clip], output: clip.output(0) };
}

/**
 * onnxruntime's FusedMatMul that computes A·op(B) with A as it is and no scale: its output is
 * the context a MatMul would give (transBatchB only says how v is read, e.g. torch MHA's [T, B·H, d]).
 */
function isPlainFusedMatMul(n: Node): boolean {
  return n.opType === 'FusedMatMul' && n.domain === 'com.microsoft' && n.intAttr('transA', 0) === 0 && n.intAttr('transBatchA', 0) === 0 && n.intAttr('transB', 0) === 0 && n.floatAttr('alpha', 1) === 1;
}

/** The MatMul of the probabilities and v (or a FusedMatMul doing only that), following Casts. */
function probsMatMul(probs: Value): Node | undefined {
  let v = probs;
  for (let i = 0; i < 4; i++) {
    const mm = v.consumers().find((c) => (c.opType === 'MatMul' || isPlainFusedMatMul(c)) && c.input(0) === v);
    if (mm) return mm;
    const cast = v.consumers().find((c) => c.opType === 'Cast' || c.opType === 'Identity');
    if (!cast) return undefined;
    v = cast.output(0);
  }
  return undefined;
}

/** Recognises a sigmoid gate multiplying the output of the probabilities @ v MatMul. */
export function matchGate(pv: Node): GatedAttention | undefined {
  const ctx = pv.output(0);
  const mul = single(ctx);
  if (!mul || mul.opType !== 'Mul') return undefined;
  const other = mul.input(0) === ctx ? mul.input(1) : mul.input(0);
  let g = other?.producer();
  for (let i = 0; g && i < 4 && g.opType !== 'Sigmoid'; i++) {
    if (!['Unsqueeze', 'Expand', 'Reshape', 'Transpose', 'Cast'].includes(g.opType)) return undefined;
    g = g.input(0)?.producer();
  }
  if (!g || g.opType !== 'Sigmoid') return undefined;
  return { mul, sigmoid: g, context: ctx, output: mul.output(0) };
}

/** The attention form (plain/clipped softmax, gated or not) of every Softmax in the graph. */
export function attentionForms(model: Model): AttentionForm[] {
  const out: AttentionForm[] = [];
  for (const n of model.graph.nodes) {
    if (n.opType !== 'Softmax') continue;
    const clipped = matchClippedSoftmax(n);
    const probs = clipped ? clipped.output : n.output(0);
    const pv = probsMatMul(probs);
    if (!pv) continue;
    const gate = matchGate(pv);
    out.push({
      softmax: n.name,
      kind: clipped ? 'clipped-softmax' : 'softmax',
      ...(clipped ? { gamma: round(clipped.gamma), zeta: round(clipped.zeta) } : {}),
      gated: gate !== undefined,
      probs: probs.name,
      context: (gate ? gate.output : pv.output(0)).name,
    });
  }
  return out;
}

function round(x: number): number {
  return Number(x.toPrecision(7));
}

/**
 * Finds the structure of a model whose attention may use clipped softmax or a gate, which
 * discoverStructure matches only in its plain form. When there are such forms, discovery runs
 * on a copy with those nodes bypassed: the structure's nodes and values then belong to the
 * copy, but their names (and weight data) are the original's, so use it by name.
 */
export function discoverWithForms(model: Model): { structure: Structure; forms: AttentionForm[] } {
  const forms = attentionForms(model);
  if (!forms.some((f) => f.kind !== 'softmax' || f.gated)) return { structure: discoverStructure(model), forms };
  const copy = model.clone();
  for (const n of [...copy.graph.nodes]) {
    if (n.opType !== 'Softmax') continue;
    const c = matchClippedSoftmax(n);
    if (c) c.output.replaceAllUsesWith(n.output(0));
    const pv = probsMatMul(n.output(0));
    const gate = pv ? matchGate(pv) : undefined;
    if (gate) gate.output.replaceAllUsesWith(gate.context);
  }
  copy.graph.removeDeadNodes();
  return { structure: discoverStructure(copy), forms };
}

/**
 * What-if rewrite: every plain attention Softmax becomes a clipped softmax
 * clip((ζ−γ)·softmax(x) + γ, 0, 1). Changes `model` in place; returns the Softmaxes rewritten.
 */
export function applyClippedSoftmax(model: Model, gamma: number, zeta = 1): string[] {
  const g = model.graph;
  const done: string[] = [];
  for (const f of attentionForms(model)) {
    if (f.kind !== 'softmax') continue;
    const sm = g.nodes.find((n) => n.name === f.softmax)!;
    const p = sm.output(0);
    const readers = p.consumers();
    const c = (base: string, x: number): Value => g.addInitializer(Tensor.from(g.uniqueName(`${sm.name}/clipped/${base}`), DataType.FLOAT, [], [x]));
    const mul = g.addNode('Mul', [p, c('scale', zeta - gamma)], [`${p.name}_stretched`], { name: g.uniqueNodeName(`${sm.name}/clipped/mul`), after: sm });
    const add = g.addNode('Add', [mul.output(0), c('gamma', gamma)], [`${p.name}_shifted`], { name: g.uniqueNodeName(`${sm.name}/clipped/add`), after: mul });
    const clip = g.addNode('Clip', [add.output(0), c('min', 0), c('max', 1)], [`${p.name}_clipped`], { name: g.uniqueNodeName(`${sm.name}/clipped/clip`), after: add });
    for (const r of readers) {
      r.inputs.forEach((x, i) => {
        if (x === p) r.setInput(i, clip.output(0));
      });
    }
    done.push(sm.name);
  }
  return done;
}
