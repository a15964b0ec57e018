import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { constantScalar, isConstant } from './constants.js';
import type { LinearIndex } from './linear.js';
import { analyzeMask, type MaskPart } from './mask.js';
import { describeReaders, describeValue, fail, nodeLabel, NoMatch, producerOf, skipCastsDown, skipCastsUp } from './match.js';
import { readShapeVector } from './shape.js';
import type { Attention, LinearLayer } from './structure.js';

const HEADS_FIRST = [0, 2, 1, 3]; // [B, S, heads, size] -> [B, heads, S, size]
const HEADS_LAST = [0, 2, 3, 1]; // [B, S, heads, size] -> [B, heads, size, S]: k transposed
const FUSED_QKV = ['Split', 'Slice', 'Gather'];
const FUSED_NOTE = ' (fused q/k/v projections are not recognised)';

interface Projection {
  linear: LinearLayer;
  numHeads: number;
  headSize: number;
  scale: number;
  rotary: boolean;
}

/**
 * Matches multi-head attention around a Softmax: q, k, v linears reshaped to
 * [B, S, heads, headSize] and transposed, scores = q @ k^T (scaled, maybe masked), Softmax,
 * @ v, transposed and reshaped back, and the output linear o.
 */
export function matchAttention(softmax: Node, linears: LinearIndex): Attention | NoMatch {
  const axis = softmax.intAttr('axis', -1);
  if (axis !== -1 && axis !== 3) return fail(softmax, `softmax over axis ${axis}, not the last axis of [B, heads, S, S] scores`);
  const nodes: Node[] = [softmax];
  const masks: MaskPart[] = [];
  let scale = 1;
  let swapped = false; // scores were computed as k @ q^T and transposed back
  let v = softmax.input(0)!;
  let qk: Node | undefined;
  for (let step = 0; step < 16 && !qk; step++) {
    const p = v.producer();
    if (!p) return fail(softmax, notScores(softmax));
    if (p.opType === 'MatMul') {
      if (!leadsToScores(v)) return fail(softmax, notScores(softmax));
      qk = p;
      break;
    }
    nodes.push(p);
    if (p.opType === 'Cast' || p.opType === 'Identity') {
      v = p.input(0)!;
    } else if (p.opType === 'Div' || p.opType === 'Mul') {
      const f = scaleFactor(p);
      if (!f) return fail(softmax, `the scores are scaled by a value that is not a constant in ${p.opType} '${nodeLabel(p)}'`);
      scale *= f.factor;
      v = f.rest;
    } else if (p.opType === 'Add' || p.opType === 'Where') {
      const operands = p.opType === 'Add' ? [0, 1] : [1, 2];
      const scoresAt = operands.filter((i) => leadsToScores(p.input(i)));
      if (scoresAt.length === 0) return fail(softmax, notScores(softmax));
      if (scoresAt.length > 1) return fail(softmax, `cannot tell the scores from the mask in ${p.opType} '${nodeLabel(p)}'`);
      const at = scoresAt[0]!;
      const maskValue = p.opType === 'Add' ? p.input(1 - at)! : p.input(0)!;
      masks.push({ node: p, value: maskValue, keepWhenTrue: at === 1 });
      v = p.input(at)!;
    } else if (p.opType === 'Transpose' && sameList(p.intsAttr('perm'), [0, 1, 3, 2])) {
      swapped = !swapped;
      v = p.input(0)!;
    } else if (step === 0 && !leadsToScores(p.output(0))) {
      return fail(softmax, notScores(softmax));
    } else {
      return fail(softmax, `unexpected ${p.opType} '${nodeLabel(p)}' between the scores MatMul and the Softmax`);
    }
  }
  if (!qk) return fail(softmax, 'no MatMul of q and k found before the Softmax');
  nodes.push(qk);

  const [qSide, kSide] = swapped ? [qk.input(1)!, qk.input(0)!] : [qk.input(0)!, qk.input(1)!];
  const q = traceProjection(softmax, qSide, swapped ? HEADS_LAST : HEADS_FIRST, 'q', linears, nodes);
  if (q instanceof NoMatch) return q;
  const k = traceProjection(softmax, kSide, swapped ? HEADS_FIRST : HEADS_LAST, 'k', linears, nodes);
  if (k instanceof NoMatch) return k;

  let probs = skipCastsDown(softmax.output(0), nodes);
  // clipped softmax (Bondarenko et al. 2023): Softmax → Mul(ζ−γ) → Add(γ) → Clip(0, 1)
  const clipped = clippedSoftmaxTail(probs);
  if (clipped) {
    nodes.push(...clipped.nodes);
    probs = skipCastsDown(clipped.output, nodes);
  }
  const pv = probs.consumers().find((c) => c.opType === 'MatMul' && c.input(0) === probs);
  if (!pv) return fail(softmax, `the attention weights are not multiplied by v (read by ${describeReaders(probs)})`);
  nodes.push(pv);
  const vp = traceProjection(softmax, pv.input(1)!, HEADS_FIRST, 'v', linears, nodes);
  if (vp instanceof NoMatch) return vp;
  scale *= q.scale * k.scale;

  for (const [name, p] of [['k', k], ['v', vp]] as const) {
    if (p.numHeads !== q.numHeads || p.headSize !== q.headSize) {
      const gqa = `${name} has ${p.numHeads} heads of ${p.headSize} but q has ${q.numHeads} heads of ${q.headSize}`;
      return fail(softmax, `${gqa} (grouped-query attention is not recognised)`);
    }
  }
  if (q.linear.input !== k.linear.input || q.linear.input !== vp.linear.input) {
    return fail(softmax, `q, k and v do not read the same input (cross-attention is not recognised)`);
  }
  const o = traceOutput(softmax, pv, q.numHeads * q.headSize, linears, nodes);
  if (o instanceof NoMatch) return o;

  const mask = analyzeMask(masks);
  return {
    q: q.linear,
    k: k.linear,
    v: vp.linear,
    o,
    numHeads: q.numHeads,
    headSize: q.headSize,
    softmax,
    mask: mask.mask,
    causal: mask.causal,
    rotary: q.rotary || k.rotary,
    scale,
    nodes,
    input: q.linear.input,
    output: o.output,
  };
}

/**
 * Walks from a MatMul operand back to the Reshape that splits a projection into heads,
 * composing the Transposes on the way (and collecting constant scale factors).
 */
function traceProjection(softmax: Node, start: Value, perm: number[], role: string, linears: LinearIndex, nodes: Node[]): Projection | NoMatch {
  let order = [0, 1, 2, 3]; // result axis i is the reshape output's axis order[i]
  let scale = 1;
  let rotary = false;
  let v = start;
  let reshape: Node | undefined;
  for (let step = 0; step < 12 && !reshape; step++) {
    const p = v.producer();
    if (!p) return fail(softmax, `${role} comes from ${describeValue(v)}, not from a Reshape of a projection`);
    const rope = p.opType === 'Add' ? rotaryInput(p) : undefined;
    nodes.push(p);
    if (p.opType === 'Reshape') {
      reshape = p;
    } else if (p.opType === 'Transpose') {
      const t = p.intsAttr('perm') ?? [3, 2, 1, 0];
      if (t.length !== 4) return fail(softmax, `${role} is transposed by rank-${t.length} Transpose '${nodeLabel(p)}', not rank 4`);
      order = order.map((i) => t[i]!);
      v = p.input(0)!;
    } else if ((p.opType === 'Mul' || p.opType === 'Div') && scaleFactor(p)) {
      const f = scaleFactor(p)!;
      scale *= f.factor;
      v = f.rest;
    } else if (p.opType === 'Cast' || p.opType === 'Identity') {
      v = p.input(0)!;
    } else if (rope) {
      nodes.push(...rope.nodes);
      v = rope.x;
      rotary = true;
    } else {
      const fused = FUSED_QKV.includes(p.opType) ? FUSED_NOTE : '';
      return fail(softmax, `${role} comes from ${p.opType} '${nodeLabel(p)}', not from a Reshape of a projection${fused}`);
    }
  }
  if (!reshape) return fail(softmax, `${role} is not reshaped into heads within a few ops`);
  if (!sameList(order, perm)) {
    return fail(softmax, `${role} reaches the MatMul with axes [${order.join(',')}] of its reshape, expected [${perm.join(',')}]`);
  }
  const linear = linears.producing(skipCastsUp(reshape.input(0)!));
  if (!linear) {
    const fused = FUSED_QKV.includes(skipCastsUp(reshape.input(0)!).producer()?.opType ?? '') ? FUSED_NOTE : '';
    return fail(softmax, `${role} is not produced by a linear layer (its Reshape reads ${describeValue(reshape.input(0))})${fused}`);
  }
  const shape = readShapeVector(reshape.input(1));
  const where = `${role}'s Reshape '${nodeLabel(reshape)}'`;
  if (!shape) return fail(softmax, `head count cannot be read: the shape of ${where} comes from ${describeValue(reshape.input(1))}`);
  if (shape.length !== 4) return fail(softmax, `${where} gives rank ${shape.length}, not [batch, seq, heads, headSize]`);
  let [, , numHeads, headSize] = shape.map((d) => (d === 0 ? null : d)); // 0 copies an input dim: not a head count
  const out = linear.outFeatures;
  if (numHeads === -1 && typeof headSize === 'number' && headSize > 0) numHeads = out / headSize;
  if (typeof numHeads === 'number' && numHeads > 0 && (headSize === -1 || headSize === null)) headSize = out / numHeads;
  if (typeof numHeads !== 'number' || numHeads <= 0) {
    return fail(softmax, `head count cannot be read: entry 2 of the shape of ${where} is not a constant`);
  }
  if (typeof headSize !== 'number' || headSize <= 0) {
    return fail(softmax, `head size cannot be read: entry 3 of the shape of ${where} is not a constant`);
  }
  if (numHeads * headSize !== out) {
    return fail(softmax, `${role} projection '${linear.name}' has ${out} outputs but its Reshape splits them into ${numHeads} heads of ${headSize}`);
  }
  return { linear, numHeads, headSize, scale, rotary };
}

/**
 * The x of a rotary position embedding x * cos + rotate_half(x) * sin, where rotate_half is
 * Concat(Neg(Slice(x, half:)), Slice(x, :half)) (or a Split of x), with its nodes but the Add.
 */
function rotaryInput(add: Node): { x: Value; nodes: Node[] } | undefined {
  const a = producerOf(add.input(0), 'Mul');
  const b = producerOf(add.input(1), 'Mul');
  if (!a || !b) return undefined;
  for (const [plain, rotated] of [[a, b], [b, a]]) {
    for (const x of plain.inputs) {
      const found: Node[] = [];
      if (x && rotated.inputs.some((y) => !!y && rotatedFrom(y, x, found, 0))) return { x, nodes: [plain, rotated, ...found] };
    }
  }
  return undefined;
}

function rotatedFrom(y: Value, x: Value, found: Node[], depth: number): boolean {
  const p = y.producer();
  if (!p || depth > 4 || !['Concat', 'Neg', 'Slice', 'Split', 'Cast'].includes(p.opType)) return false;
  const data = p.opType === 'Concat' ? p.inputs : [p.input(0)];
  if (!data.some((i) => !!i && (i === x || rotatedFrom(i, x, found, depth + 1)))) return false;
  found.push(p);
  return true;
}

/** From probs @ v: Transpose back, Reshape to [B, S, heads * headSize], then the o linear. */
function traceOutput(softmax: Node, pv: Node, width: number, linears: LinearIndex, nodes: Node[]): LinearLayer | NoMatch {
  let order = [0, 1, 2, 3];
  let v = pv.output(0);
  for (let step = 0; step < 8; step++) {
    v = skipCastsDown(v, nodes);
    // Shape readers (torch's dynamic reshape targets) read only dims, not the data
    const c = v.consumers().filter((n) => n.opType !== 'Shape');
    const next = c.length === 1 ? c[0]! : undefined;
    if (next?.opType === 'Transpose') {
      const t = next.intsAttr('perm') ?? [3, 2, 1, 0];
      order = t.map((i) => order[i]!);
      nodes.push(next);
      v = next.output(0);
      continue;
    }
    if (next?.opType !== 'Reshape') {
      const readers = c.map((n) => `${n.opType} '${nodeLabel(n)}'`).join(', ') || 'nothing';
      return fail(softmax, `the attention context is read by ${readers}, not reshaped back`);
    }
    if (!sameList(order, HEADS_FIRST)) {
      return fail(softmax, `the attention context is transposed to axes [${order.join(',')}], expected [0,2,1,3] before its Reshape`);
    }
    nodes.push(next);
    const shape = readShapeVector(next.input(1));
    const last = shape?.[shape.length - 1];
    if (typeof last === 'number' && last > 0 && last !== width) {
      return fail(softmax, `the context Reshape '${nodeLabel(next)}' gives ${last} features, not heads * headSize = ${width}`);
    }
    const merged = skipCastsDown(next.output(0), nodes);
    const o = linears.reading(merged)[0];
    if (!o) return fail(softmax, `the merged heads are read by ${describeReaders(merged)}, not by an output linear layer`);
    if (o.inFeatures !== width) return fail(softmax, `output projection '${o.name}' reads ${o.inFeatures} features, not heads * headSize = ${width}`);
    return o;
  }
  return fail(softmax, 'the attention context is not reshaped back within a few ops');
}

function notScores(softmax: Node): string {
  return `not attention: no MatMul of two computed values (q @ k^T) before the Softmax, which reads ${describeValue(softmax.input(0))}`;
}

/** x / c or x * c (either order) with a constant scalar c. */
function scaleFactor(node: Node): { factor: number; rest: Value } | undefined {
  const c1 = constantScalar(node.input(1));
  if (c1 !== undefined && c1 !== 0) return { factor: node.opType === 'Div' ? 1 / c1 : c1, rest: node.input(0)! };
  const c0 = node.opType === 'Mul' ? constantScalar(node.input(0)) : undefined;
  if (c0 !== undefined && c0 !== 0) return { factor: c0, rest: node.input(1)! };
  return undefined;
}

/** Whether `v` is (a scaled, masked or cast form of) a MatMul of two computed values. */
function leadsToScores(v: Value | undefined, depth = 0): boolean {
  const p = v?.producer();
  if (!p || depth > 8) return false;
  if (p.opType === 'MatMul') return !!p.input(0) && !!p.input(1) && !isConstant(p.input(0)) && !isConstant(p.input(1));
  if (['Div', 'Mul', 'Add', 'Cast', 'Identity', 'Transpose'].includes(p.opType)) return p.inputs.some((i) => leadsToScores(i, depth + 1));
  if (p.opType === 'Where') return leadsToScores(p.input(1), depth + 1) || leadsToScores(p.input(2), depth + 1);
  return false;
}

function sameList(a: readonly number[] | undefined, b: readonly number[]): boolean {
  return !!a && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The Mul(ζ−γ) → Add(γ) (or Sub) → Clip(0, 1) of a clipped softmax after `probs`, if there is one. */
function clippedSoftmaxTail(probs: Value): { nodes: Node[]; output: Value } | undefined {
  const only = (v: Value): Node | undefined => {
    const c = v.consumers();
    return c.length === 1 ? c[0] : undefined;
  };
  const other = (n: Node, v: Value): Value | undefined => (n.input(0) === v ? n.input(1) : n.input(0));
  const mul = only(probs);
  if (mul?.opType !== 'Mul' || constantScalar(other(mul, probs)) === undefined) return undefined;
  const add = only(mul.output(0));
  if ((add?.opType !== 'Add' && add?.opType !== 'Sub') || constantScalar(other(add, mul.output(0))) === undefined) return undefined;
  const clip = only(add.output(0));
  if (clip?.opType !== 'Clip') return undefined;
  const lo = clip.input(1) ? constantScalar(clip.input(1)) : clip.floatAttr('min');
  const hi = clip.input(2) ? constantScalar(clip.input(2)) : clip.floatAttr('max');
  if (lo !== 0 || hi !== 1) return undefined;
  return { nodes: [mul, add, clip], output: clip.output(0) };
}
