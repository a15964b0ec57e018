// Physical removal of MLP neurons, attention heads and whole sublayers from an ONNX graph.
import { constantSource, constantTensor } from '../discover/constants.js';
import { discoverStructure } from '../discover/index.js';
import { SymbolicShapes } from '../discover/infer-shapes.js';
import { isNumber } from '../discover/symbolic.js';
import type { Attention, FeatureRange, LinearLayer, Mlp, Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/**
 * What to keep, by block index (as discovered). Absent entries keep everything. Indices are
 * neuron indices of a block's MLP (0..width-1) and head indices of its attention (0..heads-1).
 */
export interface PrunePlan {
  mlpKeep?: Map<number, number[]>;
  headKeep?: Map<number, number[]>;
  /** Blocks whose attention sublayer is removed (the residual Add keeps only its skip input). */
  dropAttention?: number[];
  /** Blocks whose MLP sublayer is removed. */
  dropMlp?: number[];
}

export interface SurgeryResult {
  neuronsRemoved: number;
  headsRemoved: number;
  sublayersRemoved: number;
}

/** Applies a plan to `model` in place (clone first to keep the original). */
export function applyPrunePlan(model: Model, plan: PrunePlan, structure: Structure = discoverStructure(model)): SurgeryResult {
  const g = model.graph;
  const where = model.sourcePath ?? 'the model';
  const blockOf = (i: number) => {
    const b = structure.blocks.find((x) => x.index === i);
    if (!b) throw new UserError(`${where} has no transformer block ${i}`);
    return b;
  };
  let neuronsRemoved = 0;
  let headsRemoved = 0;
  let sublayersRemoved = 0;
  const dropAttn = new Set(plan.dropAttention ?? []);
  const dropMlp = new Set(plan.dropMlp ?? []);
  // shape values read before any rewrite: the sites' pieces are looked up in the original graph
  const shapes = new SymbolicShapes(g, g.topologicalOrder());
  for (const [i, keep] of plan.mlpKeep ?? []) {
    if (dropMlp.has(i)) continue;
    const mlp = blockOf(i).mlp;
    if (!mlp) throw new UserError(`block ${i} of ${where} has no recognised MLP to prune`);
    neuronsRemoved += pruneMlp(g, mlp, checkedKeep(keep, mlp.width, `MLP of block ${i}`), shapes);
  }
  for (const [i, keep] of plan.headKeep ?? []) {
    if (dropAttn.has(i)) continue;
    const att = blockOf(i).attention;
    if (!att) throw new UserError(`block ${i} of ${where} has no recognised attention to prune`);
    headsRemoved += pruneHeads(g, att, checkedKeep(keep, att.numHeads, `attention of block ${i}`), shapes);
  }
  for (const i of dropAttn) {
    const r = blockOf(i).attentionResidual;
    if (!r) throw new UserError(`the attention of block ${i} of ${where} has no residual Add, so it cannot be dropped`);
    dropSublayer(r.add, r.skip);
    sublayersRemoved++;
  }
  for (const i of dropMlp) {
    const r = blockOf(i).mlpResidual;
    if (!r) throw new UserError(`the MLP of block ${i} of ${where} has no residual Add, so it cannot be dropped`);
    dropSublayer(r.add, r.skip);
    sublayersRemoved++;
  }
  forgetIntermediateShapes(g);
  g.removeDeadNodes();
  g.removeUnusedInitializers();
  g.toposort();
  return { neuronsRemoved, headsRemoved, sublayersRemoved };
}

function checkedKeep(keep: number[], n: number, what: string): number[] {
  const sorted = [...new Set(keep)].sort((a, b) => a - b);
  if (sorted.length === 0) throw new UserError(`the plan keeps nothing of the ${what}; drop the sublayer instead`);
  if (sorted[0]! < 0 || sorted[sorted.length - 1]! >= n) throw new UserError(`the plan keeps index ${sorted.find((k) => k < 0 || k >= n)} of the ${what}, which has ${n}`);
  return sorted;
}

function pruneMlp(g: Graph, mlp: Mlp, keep: number[], shapes: SymbolicShapes): number {
  sliceOutputs(g, mlp.fc1, keep);
  if (mlp.gate) sliceOutputs(g, mlp.gate, keep);
  // a bias the activation applies itself (onnxruntime's BiasGelu, FastGelu with bias) has one entry per neuron
  for (const n of mlp.activationNodes) {
    n.inputs.forEach((v, slot) => {
      const t = constantTensor(v);
      if (!t || t.dims.length !== 1 || t.dims[0] !== mlp.width || mlp.width === 1) return;
      const data = t.toFloat32();
      n.setInput(slot, g.addInitializer(Tensor.fromBytes(g.uniqueName(`${v!.name}_pruned`), DataType.FLOAT, [keep.length], bytes(Float32Array.from(keep, (k) => data[k]!)))));
    });
  }
  sliceInputs(g, mlp.fc2, keep);
  for (const site of mlp.widthSites) scaleShapeEntries(g, shapes, site.node, site.slot, [site.entry], keep.length / mlp.width);
  return mlp.width - keep.length;
}

/**
 * Removes query heads `keepHeads` does not list (with grouped-query attention, whole key/value
 * groups: a group goes when none of its query heads is kept, and stays whole otherwise): their
 * rows of q/k/v wherever they sit (one packed projection or three), their columns of o, and
 * every shape entry that states the head count, scaled by the kept share.
 */
function pruneHeads(g: Graph, att: Attention, keepHeads: number[], shapes: SymbolicShapes): number {
  const hd = att.headSize;
  const group = att.numHeads / att.numKvHeads;
  const keepGroups = [...new Set(keepHeads.map((h) => Math.floor(h / group)))];
  const heads = keepGroups.flatMap((k) => Array.from({ length: group }, (_, i) => k * group + i));
  if (heads.length !== keepHeads.length && group > 1) {
    throw new UserError(`attention '${att.o.name}' groups its ${att.numHeads} query heads by ${group} around ${att.numKvHeads} key/value heads: remove whole groups of ${group} heads`);
  }
  const dv = att.vFeatures.size / att.numKvHeads;
  const run = (start: number, size: number, units: number[]) => units.flatMap((u) => Array.from({ length: size }, (_, j) => start + u * size + j));
  const rows = new Map<LinearLayer, number[]>();
  const add = (l: LinearLayer, f: number[]) => rows.set(l, [...(rows.get(l) ?? []), ...f]);
  add(att.q, run(att.qFeatures.start, hd, heads));
  add(att.k, run(att.kFeatures.start, hd, keepGroups));
  add(att.v, run(att.vFeatures.start, dv, keepGroups));
  for (const [l, f] of rows) {
    // the other features of a packed projection (none here, but a fused MLP could share it) stay
    const touched = new Set([...rangeOf(att.qFeatures, l === att.q), ...rangeOf(att.kFeatures, l === att.k), ...rangeOf(att.vFeatures, l === att.v)]);
    const untouched = Array.from({ length: l.outFeatures }, (_, i) => i).filter((i) => !touched.has(i));
    sliceOutputs(g, l, [...f, ...untouched].sort((x, y) => x - y));
  }
  sliceInputs(g, att.o, run(0, dv, heads));
  // a decoder's cache holds the kept key/value heads only: its declared inputs and outputs say so
  for (const concat of att.cacheConcats) {
    const ends = [...concat.inputs.filter((v): v is Value => !!v?.isGraphInput()), ...followToOutputs(concat.output(0))];
    for (const v of ends) setHeadDim(v, att.numKvHeads, keepGroups.length);
  }
  const ratio = heads.length / att.numHeads;
  const bySlot = new Map<string, { node: Node; slot: number; entries: number[] }>();
  for (const site of att.headSites) {
    const key = `${site.node.name}|${site.slot}`;
    const e = bySlot.get(key) ?? { node: site.node, slot: site.slot, entries: [] };
    e.entries.push(site.entry);
    bySlot.set(key, e);
  }
  for (const { node, slot, entries } of bySlot.values()) scaleShapeEntries(g, shapes, node, slot, entries, ratio);
  return att.numHeads - heads.length;
}

/** Graph outputs equal to `v` (directly or through Identity/Cast). */
function followToOutputs(v: Value): Value[] {
  const out: Value[] = v.isGraphOutput() ? [v] : [];
  for (const c of v.consumers()) if (c.opType === 'Identity' || c.opType === 'Cast') out.push(...followToOutputs(c.output(0)));
  return out;
}

/** Rewrites the declared [batch, heads, seq, size] dim 1 of a cache tensor from `from` to `to`. */
function setHeadDim(v: Value, from: number, to: number): void {
  if (v.type?.kind !== 'tensor' || !v.type.shape || v.type.shape[1] !== from) return;
  v.type = { ...v.type, shape: v.type.shape.map((d, i) => (i === 1 ? to : d)) };
}

function rangeOf(r: FeatureRange, applies: boolean): number[] {
  return applies ? Array.from({ length: r.size }, (_, i) => r.start + i) : [];
}

/** Replaces the Add of a residual and a sublayer with its skip input; the sublayer dies. */
function dropSublayer(add: Node, skip: Value): void {
  add.output(0).replaceAllUsesWith(skip);
}

/** Keeps output features `keep` of a linear layer (weight columns, or rows when transB), and its bias. */
function sliceOutputs(g: Graph, l: LinearLayer, keep: number[]): void {
  const w = floatData(l.weight, l.name);
  const [rows, cols] = l.weight.shape as number[];
  const sliced = l.transB ? takeRows(w, rows!, cols!, keep) : takeCols(w, rows!, cols!, keep);
  replaceConstant(g, l.node, l.weight, Tensor.fromBytes(`${l.weight.name}_pruned`, DataType.FLOAT, l.transB ? [keep.length, cols!] : [rows!, keep.length], bytes(sliced)));
  if (l.bias) {
    const b = floatData(l.bias, l.name);
    const kept = Float32Array.from(keep, (k) => b[k]!);
    const dims = l.bias.shape!.length === 2 ? [1, keep.length] : [keep.length];
    replaceConstant(g, l.biasAdd ?? l.node, l.bias, Tensor.fromBytes(`${l.bias.name}_pruned`, DataType.FLOAT, dims, bytes(kept)));
  }
}

/** Keeps input features `keep` of a linear layer (weight rows, or columns when transB). */
function sliceInputs(g: Graph, l: LinearLayer, keep: number[]): void {
  const w = floatData(l.weight, l.name);
  const [rows, cols] = l.weight.shape as number[];
  const sliced = l.transB ? takeCols(w, rows!, cols!, keep) : takeRows(w, rows!, cols!, keep);
  replaceConstant(g, l.node, l.weight, Tensor.fromBytes(`${l.weight.name}_pruned`, DataType.FLOAT, l.transB ? [rows!, keep.length] : [keep.length, cols!], bytes(sliced)));
}

function floatData(v: Value, layer: string): Float32Array {
  const t = constantTensor(v);
  if (!t) throw new UserError(`the weight '${v.name}' of '${layer}' is not constant`);
  if (t.dtype !== DataType.FLOAT) throw new UserError(`the weight '${v.name}' of '${layer}' is ${dtypeName(t.dtype)}; pruning needs a float32 model (prune before quantizing)`);
  if (t.dims.length > 2 || (t.dims.length === 2 && t.dims[0] === 0)) throw new UserError(`the weight '${v.name}' of '${layer}' has shape [${t.dims.join(',')}], not a matrix`);
  return t.toFloat32();
}

function takeCols(w: Float32Array, rows: number, cols: number, keep: number[]): Float32Array {
  const out = new Float32Array(rows * keep.length);
  for (let r = 0; r < rows; r++) for (let j = 0; j < keep.length; j++) out[r * keep.length + j] = w[r * cols + keep[j]!]!;
  return out;
}

function takeRows(w: Float32Array, _rows: number, cols: number, keep: number[]): Float32Array {
  const out = new Float32Array(keep.length * cols);
  keep.forEach((k, j) => out.set(w.subarray(k * cols, (k + 1) * cols), j * cols));
  return out;
}

function bytes(a: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Points the input of `node` that reads `source` (directly or through Identity) at a new constant. */
function replaceConstant(g: Graph, node: Node, source: Value, t: Tensor): void {
  const slot = node.inputs.findIndex((v) => v && constantSource(v) === source);
  if (slot < 0) throw new Error(`node '${node.name}' does not read '${source.name}'`);
  node.setInput(slot, g.addInitializer(t));
}

/**
 * Multiplies entries `entries` of the shape-like tensor `node` reads at input `slot` by `ratio`.
 * A tensor whose value is known becomes a new constant; one computed at run time (torch's
 * Concat of Shape pieces, the batch·heads Mul of MultiheadAttention) is copied for this reader
 * alone down to the pieces that hold the entries, so pieces shared with other readers never change.
 */
function scaleShapeEntries(g: Graph, shapes: SymbolicShapes, node: Node, slot: number, entries: number[], ratio: number): void {
  const v = node.input(slot);
  const where = `entries ${entries.join(', ')} of the shape read by '${node.name}'`;
  const known = shapes.value(v);
  if (v && known && known.every((d) => d && isNumber(d))) {
    const data = known.map((d, i) => (entries.includes(i) ? scaled(d!.c, ratio, where) : d!.c));
    const dtype = constantTensor(v)?.dtype === DataType.INT32 ? DataType.INT32 : DataType.INT64;
    const dims = shapes.shape(v)?.length === 0 ? [] : [data.length];
    node.setInput(slot, g.addInitializer(Tensor.from(g.uniqueName(`${v.name}_pruned`), dtype, dims, dtype === DataType.INT32 ? data : data.map((x) => BigInt(x)))));
    return;
  }
  const p = v?.producer();
  if (!p) throw new UserError(`${where} comes from a graph input, so the head count in it cannot be changed`);
  const copy = g.addNode(p.opType, [...p.inputs], p.outputs.length, { name: g.uniqueNodeName(`${p.name}_pruned`), attributes: Object.fromEntries(p.attributes), before: node });
  node.setInput(slot, copy.output(p.outputs.indexOf(v!)));
  if (p.opType === 'Concat') {
    let offset = 0;
    for (let i = 0; i < p.inputs.length; i++) {
      const len = shapes.value(p.input(i))?.length ?? shapes.shape(p.input(i))?.[0]?.c;
      if (len === undefined) throw new UserError(`cannot tell the length of piece ${i} of the shape read by '${node.name}'`);
      const mine = entries.filter((e) => e >= offset && e < offset + len).map((e) => e - offset);
      if (mine.length > 0) scaleShapeEntries(g, shapes, copy, i, mine, ratio);
      offset += len;
    }
    return;
  }
  const sameVector = shapes.value(p.input(0))?.length === shapes.value(v)?.length;
  if (['Unsqueeze', 'Squeeze', 'Cast', 'Identity'].includes(p.opType) || (p.opType === 'Reshape' && sameVector)) return scaleShapeEntries(g, shapes, copy, 0, entries, ratio);
  if (p.opType === 'Where') {
    // torch's expand(-1, ...) picks each entry from one side: follow the side that supplies it
    const cond = shapes.value(p.input(0));
    const len = shapes.value(v)?.length;
    const side = (e: number) => (cond?.[cond.length === 1 ? 0 : e]?.c ? 1 : 2);
    if (cond && cond.every((c) => c && isNumber(c)) && entries.every((e) => shapes.value(p.input(side(e)))?.length === len)) {
      for (const slotOf of [1, 2]) {
        const mine = entries.filter((e) => side(e) === slotOf);
        if (mine.length > 0) scaleShapeEntries(g, shapes, copy, slotOf, mine, ratio);
      }
      return;
    }
  }
  if (p.opType === 'Mul' && entries.length === 1) {
    const factor = [0, 1].find((i) => {
      const x = shapes.value(p.input(i));
      return x?.length === 1 && x[0] && isNumber(x[0]);
    });
    if (factor !== undefined) return scaleShapeEntries(g, shapes, copy, factor, [0], ratio);
  }
  throw new UserError(`${where} is computed by ${p.opType} '${p.name}', so the head count in it cannot be changed`);
}

function scaled(x: number, ratio: number, where: string): number {
  const y = x * ratio;
  if (Math.abs(y - Math.round(y)) > 1e-9) throw new UserError(`${where} is ${x}, which does not scale to a whole number of kept heads`);
  return Math.round(y);
}

/** Value shapes recorded in the file go stale when widths change; let onnxruntime infer them again. */
function forgetIntermediateShapes(g: Graph): void {
  for (const n of g.nodes) {
    for (const o of n.outputs) {
      if (!o.isGraphOutput() && o.type?.kind === 'tensor') o.type = { ...o.type, shape: undefined };
    }
  }
}
