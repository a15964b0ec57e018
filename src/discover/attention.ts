import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { constantScalar, isConstant } from './constants.js';
import type { LinearIndex } from './linear.js';
import { analyzeMask, type MaskPart } from './mask.js';
import { describeReaders, describeValue, fail, nodeLabel, NoMatch, producerOf, skipCastsDown } from './match.js';
import { axisSize, type Factor, type HeadSite, type Layout, LayoutReplay, lineage, type PathStep, projectionLayout } from './head-layout.js';
import type { SymbolicShapes } from './infer-shapes.js';
import type { Attention, LinearLayer } from './structure.js';
import { isNumber, num, type Sym, symEqual, symText } from './symbolic.js';

const PATH_OPS = new Set(['Reshape', 'Transpose', 'Unsqueeze', 'Squeeze', 'Cast', 'Identity', 'Expand', 'Split', 'Slice', 'Gather', 'Flatten']);

/** A projection traced from a MatMul operand back to its linear layer. */
interface Traced {
  /** Concats of a key/value cache with the new tokens on the way. */
  cache: Node[];
  linear: LinearLayer;
  layout: Layout;
  scale: number;
  rotaryDims: number | 'full' | 0;
  replay: LayoutReplay;
}

/** Facts about one side of a scores or context product, read from its layout. */
type Feat = Extract<Factor, { kind: 'feat' }>;
type Rep = Extract<Factor, { kind: 'rep' }>;

interface Side {
  head?: Feat;
  rep?: Rep;
  dim: Feat;
  /** The axes in front of [tokens, dim]: batch, heads. */
  batch: Factor[][];
  tokens: Factor[];
}

/**
 * Matches multi-head attention around a Softmax: scores = q @ k^T (scaled, maybe masked), Softmax,
 * @ v, back to tokens × features, and the output linear o. q, k and v may come from one packed
 * projection or three, in any head layout the exporter wrote ([B, heads, S, d], torch
 * MultiheadAttention's [B·heads, S, d], with rotary embeddings and repeated key/value heads on
 * the way): their paths are replayed on the projection's features to find heads and head size.
 */
export function matchAttention(softmax: Node, linears: LinearIndex, shapes: SymbolicShapes): Attention | NoMatch {
  const rank = shapes.shape(softmax.input(0))?.length;
  const axis = softmax.intAttr('axis', -1)!;
  if (axis !== -1 && !(rank !== undefined && axis === rank - 1)) return fail(softmax, `softmax over axis ${axis}, not the last axis of the scores`);
  const nodes: Node[] = [softmax];
  const masks: MaskPart[] = [];
  let scale = 1;
  let scoresScaled = false;
  let swapped = false; // scores were computed as k @ q^T and transposed back
  let v = softmax.input(0)!;
  let qk: Node | undefined;
  for (let step = 0; step < 16 && !qk; step++) {
    const p = v.producer();
    if (!p) return fail(softmax, notScores(softmax));
    if (p.opType === 'MatMul' || p.opType === 'FusedMatMul') {
      if (!leadsToScores(v)) return fail(softmax, notScores(softmax));
      // onnxruntime's fused form: alpha is the scale, transB reads k untransposed
      scale *= p.floatAttr('alpha', 1)!;
      if (p.opType === 'FusedMatMul' && p.floatAttr('alpha', 1) !== 1) scoresScaled = true;
      qk = p;
      break;
    }
    nodes.push(p);
    if (p.opType === 'Cast' || p.opType === 'Identity') {
      v = p.input(0)!;
    } else if (p.opType === 'Div' || p.opType === 'Mul') {
      const f = scaleFactor(p, shapes);
      if (!f) return fail(softmax, `the scores are scaled by a value that is not a constant in ${p.opType} '${nodeLabel(p)}'`);
      scale *= f.factor;
      scoresScaled = true;
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
    } else if (p.opType === 'Transpose' && isLastTwoSwap(p.intsAttr('perm'))) {
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
  const q = traceProjection(softmax, qSide, 'q', linears, shapes, nodes);
  if (q instanceof NoMatch) return q;
  const k = traceProjection(softmax, kSide, 'k', linears, shapes, nodes);
  if (k instanceof NoMatch) return k;
  const qs = readSide(softmax, operandLayout(qk, swapped ? 1 : 0, q.layout), swapped ? 'right' : 'left', 'q');
  if (qs instanceof NoMatch) return qs;
  const ks = readSide(softmax, operandLayout(qk, swapped ? 0 : 1, k.layout), swapped ? 'left' : 'right', 'k');
  if (ks instanceof NoMatch) return ks;

  let probs = skipCastsDown(softmax.output(0), nodes);
  // clipped softmax (Bondarenko et al. 2023): Softmax → Mul(ζ−γ) → Add(γ) → Clip(0, 1)
  const clipped = clippedSoftmaxTail(probs);
  if (clipped) {
    nodes.push(...clipped.nodes);
    probs = skipCastsDown(clipped.output, nodes);
  }
  const pv = probs.consumers().find((c) => (c.opType === 'MatMul' || (c.opType === 'FusedMatMul' && !c.intAttr('transA', 0) && !c.intAttr('transBatchA', 0) && c.floatAttr('alpha', 1) === 1)) && c.input(0) === probs);
  if (!pv) return fail(softmax, `the attention weights are not multiplied by v (read by ${describeReaders(probs)})`);
  nodes.push(pv);
  const vp = traceProjection(softmax, pv.input(1)!, 'v', linears, shapes, nodes);
  if (vp instanceof NoMatch) return vp;
  const vs = readSide(softmax, operandLayout(pv, 1, vp.layout), 'right-values', 'v');
  if (vs instanceof NoMatch) return vs;

  const headSize = qs.dim.size;
  if (ks.dim.size !== headSize) return fail(softmax, `q has heads of ${headSize} but k of ${ks.dim.size}`);
  const numHeads = qs.head?.size ?? 1;
  const numKvHeads = ks.head?.size ?? 1;
  if ((vs.head?.size ?? 1) !== numKvHeads) return fail(softmax, `k has ${numKvHeads} heads but v has ${vs.head?.size ?? 1}`);
  for (const [name, s] of [['q', qs], ['k', ks], ['v', vs]] as const) {
    if (s.head && s.head.stride !== s.dim.size) return fail(softmax, `${name}'s heads are not contiguous runs of ${s.dim.size} features`);
    if (s.dim.stride !== 1) return fail(softmax, `${name}'s head features are not contiguous`);
  }
  if (numHeads % numKvHeads !== 0) return fail(softmax, `q has ${numHeads} heads, not a multiple of the ${numKvHeads} key/value heads`);
  const group = numHeads / numKvHeads;
  for (const [name, s] of [['k', ks], ['v', vs]] as const) {
    const rep = s.rep?.size ?? 1;
    if (group > 1 && rep !== group && !(numKvHeads === 1 && !s.head)) {
      return fail(softmax, `${name} has ${numKvHeads} heads repeated ${rep} times for ${numHeads} query heads`);
    }
    if (s.rep && s.head && !sameAxisInOrder(s.batch, s.head, s.rep)) return fail(softmax, `${name}'s key/value heads are repeated in tile order, not grouped`);
  }
  if (!headAxesAlign(qs, ks)) return fail(softmax, 'q and k hold their heads on different axes');
  if (q.linear.input !== k.linear.input || q.linear.input !== vp.linear.input) {
    return fail(softmax, `q, k and v do not read the same input (cross-attention is not recognised)`);
  }
  const vDim = vs.dim.size;
  const ctx = traceOutput(softmax, pv, qs, numHeads, vDim, linears, shapes, nodes);
  if (ctx instanceof NoMatch) return ctx;
  scale *= q.scale * k.scale;

  const mask = analyzeMask(masks);
  const headFactors = new Set<Factor>([qs.head, ks.head, vs.head, ctx.head].filter((f): f is Factor => !!f));
  const headSites = collectSites([q.replay, k.replay, vp.replay, ctx.replay], headFactors);
  headSites.push(...maskSites(mask.mask?.nodes ?? [], shapes, qs, numHeads));
  const rot = q.rotaryDims || k.rotaryDims;
  return {
    q: q.linear,
    k: k.linear,
    v: vp.linear,
    o: ctx.o,
    numHeads,
    numKvHeads,
    headSize,
    qFeatures: { start: q.layout.offset, size: numHeads * headSize },
    kFeatures: { start: k.layout.offset, size: numKvHeads * headSize },
    vFeatures: { start: vp.layout.offset, size: numKvHeads * vDim },
    contextTokens: ctx.contextTokens,
    cacheConcats: [...k.cache, ...vp.cache],
    layout: qs.batch.some((ax) => ax.includes(qs.head!) && ax.some((f) => f.kind === 'tok')) ? 'batch-heads' : 'heads',
    softmax,
    mask: mask.mask,
    causal: mask.causal,
    rotary: !!rot,
    rotaryDims: rot === 'full' ? headSize : rot || 0,
    scaleSite: scaleSiteOf(scoresScaled, q.scale !== 1, k.scale !== 1),
    scale,
    headSites,
    nodes,
    input: q.linear.input,
    output: ctx.o.output,
  };
}

/**
 * The layout a MatMul operand is multiplied in: onnxruntime's FusedMatMul transposes its
 * operands on the fly (transA/transB swap the last two axes; transBatchA/B first move axis 0
 * behind the batch axes).
 */
function operandLayout(mm: Node, operand: 0 | 1, layout: Layout): Layout {
  if (mm.opType !== 'FusedMatMul') return layout;
  const [batch, trans] = operand === 0 ? ['transBatchA', 'transA'] : ['transBatchB', 'transB'];
  let axes = layout.axes;
  const r = axes.length;
  if (mm.intAttr(batch, 0) && r > 2) axes = [...axes.slice(1, r - 1), axes[0]!, axes[r - 1]!];
  if (mm.intAttr(trans, 0)) axes = [...axes.slice(0, -2), axes[r - 1]!, axes[r - 2]!];
  return { ...layout, axes };
}

function scaleSiteOf(scores: boolean, onQ: boolean, onK: boolean): Attention['scaleSite'] {
  const sites = [scores ? 'scores' : '', onQ ? 'q' : '', onK ? 'k' : ''].filter(Boolean);
  return sites.length === 0 ? 'none' : (sites.join('+') as Attention['scaleSite']);
}

/**
 * Walks from a MatMul operand back to the linear layer it comes from, through layout ops,
 * constant scales, biases, rotary embeddings and a cache concat, then replays the path on the
 * linear's output features.
 */
function traceProjection(softmax: Node, start: Value, role: string, linears: LinearIndex, shapes: SymbolicShapes, nodes: Node[]): Traced | NoMatch {
  const path: PathStep[] = [];
  const cache: Node[] = [];
  let scale = 1;
  let rotaryDims: Traced['rotaryDims'] = 0;
  let v = start;
  let linear: LinearLayer | undefined;
  for (let step = 0; step < 40 && !linear; step++) {
    linear = linears.producing(v);
    if (linear) break;
    const p = v.producer();
    if (!p) return fail(softmax, `${role} comes from ${describeValue(v)}, not from a projection`);
    nodes.push(p);
    if (PATH_OPS.has(p.opType)) {
      path.push({ node: p, slot: 0, out: p.outputs.indexOf(v) });
      v = p.input(0)!;
      continue;
    }
    if (p.opType === 'Mul' || p.opType === 'Div') {
      const f = scaleFactor(p, shapes);
      if (!f) return fail(softmax, `${role} is multiplied by a tensor in ${p.opType} '${nodeLabel(p)}', not by a constant`);
      scale *= f.factor;
      v = f.rest;
      continue;
    }
    if (p.opType === 'Add') {
      const rope = rotaryInput(p);
      if (rope) {
        nodes.push(...rope.nodes);
        v = rope.x;
        rotaryDims = 'full';
        continue;
      }
      const bias = [0, 1].find((i) => isConstant(p.input(i)));
      if (bias !== undefined) {
        v = p.input(1 - bias)!;
        continue;
      }
      return fail(softmax, `${role} comes from Add '${nodeLabel(p)}' of two computed values`);
    }
    if (p.opType === 'Concat') {
      const partial = partialRotary(p, shapes);
      if (partial) {
        nodes.push(...partial.nodes);
        v = partial.x;
        rotaryDims = partial.dims;
        continue;
      }
      const cached = cacheConcat(p);
      if (cached) {
        path.push({ node: p, slot: cached.slot, out: 0, cacheConcat: true });
        cache.push(p);
        v = p.input(cached.slot)!;
        continue;
      }
      return fail(softmax, `${role} comes from Concat '${nodeLabel(p)}', neither a partial rotary embedding nor a key/value cache`);
    }
    return fail(softmax, `${role} comes from ${p.opType} '${nodeLabel(p)}', not from a projection through layout ops`);
  }
  if (!linear) return fail(softmax, `${role} is not traced to a projection within 40 ops`);
  const start0 = projectionLayout(shapes.shape(linear.output), linear.outFeatures);
  if (!start0) return fail(softmax, `the shape of ${role} projection '${linear.name}' cannot be told`);
  const replay = new LayoutReplay(shapes, softmax);
  const layout = replay.run(start0, path.reverse());
  if (layout instanceof NoMatch) return layout;
  return { cache, linear, layout, scale, rotaryDims, replay };
}

/**
 * Reads heads, head size and token axes from the layout of a product's operand: 'left' is
 * [..., tokens, dim] (q in q @ k^T), 'right' is [..., dim, tokens] (k^T), 'right-values' is
 * [..., tokens, dim] as the second operand (v in probs @ v).
 */
function readSide(softmax: Node, layout: Layout, side: 'left' | 'right' | 'right-values', role: string): Side | NoMatch {
  const axes = layout.axes;
  if (axes.length < 2) return fail(softmax, `${role} has rank ${axes.length}, not [..., tokens, headSize]`);
  const dimAxis = side === 'right' ? axes[axes.length - 2]! : axes[axes.length - 1]!;
  const tokAxis = side === 'right' ? axes[axes.length - 1]! : axes[axes.length - 2]!;
  const dim = dimAxis[0];
  if (dimAxis.length !== 1 || dim?.kind !== 'feat') return fail(softmax, `${role}'s contracted axis is not one run of projection features (${describeAxis(dimAxis)})`);
  if (tokAxis.some((f) => f.kind !== 'tok')) return fail(softmax, `${role}'s token axis also holds projection features (${describeAxis(tokAxis)})`);
  const batch = axes.slice(0, -2);
  const feats = batch.flat().filter((f): f is Feat => f.kind === 'feat');
  const reps = batch.flat().filter((f): f is Rep => f.kind === 'rep');
  if (feats.length > 1) return fail(softmax, `${role}'s heads are spread over ${feats.length} factors`);
  if (reps.length > 1) return fail(softmax, `${role} is repeated more than once`);
  return { head: feats[0], rep: reps[0], dim, batch, tokens: tokAxis };
}

function describeAxis(axis: readonly Factor[]): string {
  return axis.map((f) => `${f.kind} ${f.kind === 'tok' ? symText(f.size) : f.size}`).join(' × ') || 'size 1';
}

function sameAxisInOrder(batch: Factor[][], head: Factor, rep: Factor): boolean {
  return batch.some((ax) => ax.indexOf(head) >= 0 && ax.indexOf(rep) === ax.indexOf(head) + 1);
}

/** q's head axis and k's are the same axis counted from the end (or k broadcasts one head). */
function headAxesAlign(q: Side, k: Side): boolean {
  const at = (s: Side, f: Factor | undefined) => (f ? s.batch.length - s.batch.findIndex((ax) => ax.includes(f)) : undefined);
  const qa = at(q, q.head);
  const ka = at(k, k.head ?? k.rep);
  return qa === undefined || ka === undefined || qa === ka;
}

/**
 * From probs @ v forward to the output linear: the context is [..., heads, ..., tokens, dv]
 * and must reach o as tokens × (heads · dv) in head-major order.
 */
function traceOutput(softmax: Node, pv: Node, q: Side, numHeads: number, vDim: number, linears: LinearIndex, shapes: SymbolicShapes, nodes: Node[]): { o: LinearLayer; head?: Factor; replay: LayoutReplay; contextTokens: Sym[] } | NoMatch {
  const head: Factor | undefined = numHeads > 1 ? { kind: 'feat', size: numHeads, stride: vDim } : undefined;
  const dim: Factor = { kind: 'feat', size: vDim, stride: 1 };
  const batch = q.batch.map((ax) => ax.flatMap((f): Factor[] => (f === q.head ? (head ? [head] : []) : f.kind === 'tok' ? [f] : [])));
  let layout: Layout = { axes: [...batch, q.tokens, [dim]], offset: 0 };
  const replay = new LayoutReplay(shapes, softmax);
  let v = pv.output(0);
  for (let step = 0; step < 12; step++) {
    v = skipCastsDown(v, nodes);
    const o = linears.reading(v)[0];
    if (o) {
      const last = layout.axes[layout.axes.length - 1]!;
      const expected = head ? [head, dim] : [dim];
      if (last.length !== expected.length || last.some((f, i) => f !== expected[i])) {
        return fail(softmax, `the attention context reaches '${o.name}' with features ${describeAxis(last)}, not heads × head size`);
      }
      if (layout.axes.slice(0, -1).some((ax) => ax.some((f) => f.kind !== 'tok'))) return fail(softmax, `the attention context reaches '${o.name}' with heads left on a token axis`);
      if (o.inFeatures !== numHeads * vDim) return fail(softmax, `output projection '${o.name}' reads ${o.inFeatures} features, not heads * headSize = ${numHeads * vDim}`);
      const contextTokens = layout.axes.flat().flatMap((f) => (f.kind === 'tok' ? [f.size] : []));
      return { o, head, replay, contextTokens };
    }
    // Shape readers (torch's dynamic reshape targets) read only dims, not the data
    const c = v.consumers().filter((n) => n.opType !== 'Shape');
    const next = c.length === 1 ? c[0]! : undefined;
    if (!next || !PATH_OPS.has(next.opType) || next.input(0) !== v) {
      const readers = c.map((n) => `${n.opType} '${nodeLabel(n)}'`).join(', ') || 'nothing';
      return fail(softmax, `the attention context is read by ${readers}, not by layout ops and an output linear layer`);
    }
    nodes.push(next);
    const r = replay.step(layout, { node: next, slot: 0, out: 0 });
    if (r instanceof NoMatch) return r;
    layout = r;
    v = next.output(0);
  }
  return fail(softmax, 'the attention context does not reach an output linear layer within a few ops');
}

/** Shape entries built from a head factor, or from a factor the heads were cut from. */
function collectSites(replays: readonly LayoutReplay[], heads: Set<Factor>): HeadSite[] {
  const ancestors = new Set<Factor>([...heads].flatMap((h) => lineage(h)));
  const seen = new Set<string>();
  const sites: HeadSite[] = [];
  for (const r of replays) {
    for (const e of r.entries) {
      if (!e.factors.some((f) => ancestors.has(f))) continue;
      const key = `${e.node.name}|${e.slot}|${e.entry}`;
      if (seen.has(key) || !e.node.input(e.slot)) continue;
      seen.add(key);
      sites.push({ node: e.node, slot: e.slot, entry: e.entry });
    }
  }
  return sites;
}

/**
 * Heads stated on the mask's way to the scores (torch MultiheadAttention expands a key padding
 * mask to [B·heads, 1, S]): entries of Reshape/Expand targets equal to the scores' head-axis size.
 */
function maskSites(maskNodes: readonly Node[], shapes: SymbolicShapes, q: Side, numHeads: number): HeadSite[] {
  if (!q.head || numHeads <= 1) return [];
  const headAxis = q.batch.find((ax) => ax.includes(q.head!))!;
  const size = axisSize(headAxis);
  const sites: HeadSite[] = [];
  for (const n of maskNodes) {
    if (n.opType !== 'Reshape' && n.opType !== 'Expand') continue;
    // expand_as(scores): a target read from a tensor's Shape follows that tensor's heads by itself
    let src = n.input(1)?.producer();
    while (src && (src.opType === 'Cast' || src.opType === 'Identity')) src = src.input(0)?.producer();
    if (src?.opType === 'Shape') continue;
    const target = shapes.value(n.input(1));
    target?.forEach((d, entry) => {
      if (symEqual(d, size) || (n.opType === 'Expand' && symEqual(d, num(numHeads)))) sites.push({ node: n, slot: 1, entry });
    });
  }
  return sites;
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

/**
 * Partial rotary (Phi): Concat(rotary(x[..., :r]), x[..., r:]) along the last axis, where both
 * slices read the same x.
 */
function partialRotary(concat: Node, shapes: SymbolicShapes): { x: Value; dims: number; nodes: Node[] } | undefined {
  if (concat.inputs.length !== 2) return undefined;
  const add = producerOf(concat.input(0), 'Add');
  const rope = add && rotaryInput(add);
  const rotSlice = rope && producerOf(rope.x, 'Slice');
  const passSlice = producerOf(concat.input(1), 'Slice');
  if (!rope || !rotSlice || !passSlice || rotSlice.input(0) !== passSlice.input(0)) return undefined;
  const dims = shapes.shape(rope.x)?.at(-1);
  if (!dims || !isNumber(dims)) return undefined;
  return { x: rotSlice.input(0)!, dims: dims.c, nodes: [add, ...rope.nodes, rotSlice, passSlice] };
}

/** Concat(past, new) where past comes from a graph input (a key/value cache): the slot of `new`. */
function cacheConcat(concat: Node): { slot: number } | undefined {
  if (concat.inputs.length !== 2) return undefined;
  const fromInput = (v: Value | undefined) => {
    for (let i = 0; v && i < 6; i++) {
      if (v.isGraphInput()) return true;
      const p = v.producer();
      if (!p || !['Cast', 'Identity', 'Transpose', 'Reshape'].includes(p.opType)) return false;
      v = p.input(0);
    }
    return false;
  };
  if (fromInput(concat.input(0)) && !fromInput(concat.input(1))) return { slot: 1 };
  return undefined;
}

function notScores(softmax: Node): string {
  return `not attention: no MatMul of two computed values (q @ k^T) before the Softmax, which reads ${describeValue(softmax.input(0))}`;
}

/** x / c or x * c (either order) with a constant scalar c. */
function scaleFactor(node: Node, shapes: SymbolicShapes): { factor: number; rest: Value } | undefined {
  const scalar = (v: Value | undefined) => constantScalar(v) ?? (isOneElement(shapes, v) ? shapes.scalar(v) : undefined);
  const c1 = scalar(node.input(1));
  if (c1 !== undefined && c1 !== 0) return { factor: node.opType === 'Div' ? 1 / c1 : c1, rest: node.input(0)! };
  const c0 = node.opType === 'Mul' ? scalar(node.input(0)) : undefined;
  if (c0 !== undefined && c0 !== 0) return { factor: c0, rest: node.input(1)! };
  return undefined;
}

function isOneElement(shapes: SymbolicShapes, v: Value | undefined): boolean {
  const s = shapes.shape(v);
  return !!s && s.every((d) => d && isNumber(d) && d.c === 1);
}

function isLastTwoSwap(perm: readonly number[] | undefined): boolean {
  if (!perm || perm.length < 2) return false;
  const n = perm.length;
  return perm.every((p, i) => (i < n - 2 ? p === i : i === n - 2 ? p === n - 1 : p === n - 2));
}

/** Whether `v` is (a scaled, masked or cast form of) a MatMul of two computed values. */
function leadsToScores(v: Value | undefined, depth = 0): boolean {
  const p = v?.producer();
  if (!p || depth > 8) return false;
  if (p.opType === 'MatMul' || p.opType === 'FusedMatMul') return !!p.input(0) && !!p.input(1) && !isConstant(p.input(0)) && !isConstant(p.input(1));
  if (['Div', 'Mul', 'Add', 'Cast', 'Identity', 'Transpose'].includes(p.opType)) return p.inputs.some((i) => leadsToScores(i, depth + 1));
  if (p.opType === 'Where') return leadsToScores(p.input(1), depth + 1) || leadsToScores(p.input(2), depth + 1);
  return false;
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
