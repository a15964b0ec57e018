// Physical removal of MLP neurons, attention heads and whole sublayers from an ONNX graph.
import { constantNumbers, constantSource, constantTensor } from '../discover/constants.js';
import { discoverStructure } from '../discover/index.js';
import { readShapeVector } from '../discover/shape.js';
import type { Attention, LinearLayer, Mlp, Structure } from '../discover/structure.js';
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
  for (const [i, keep] of plan.mlpKeep ?? []) {
    if (dropMlp.has(i)) continue;
    const mlp = blockOf(i).mlp;
    if (!mlp) throw new UserError(`block ${i} of ${where} has no recognised MLP to prune`);
    neuronsRemoved += pruneMlp(g, mlp, checkedKeep(keep, mlp.width, `MLP of block ${i}`));
  }
  for (const [i, keep] of plan.headKeep ?? []) {
    if (dropAttn.has(i)) continue;
    const att = blockOf(i).attention;
    if (!att) throw new UserError(`block ${i} of ${where} has no recognised attention to prune`);
    headsRemoved += pruneHeads(g, att, checkedKeep(keep, att.numHeads, `attention of block ${i}`));
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

function pruneMlp(g: Graph, mlp: Mlp, keep: number[]): number {
  sliceOutputs(g, mlp.fc1, keep);
  if (mlp.gate) sliceOutputs(g, mlp.gate, keep);
  sliceInputs(g, mlp.fc2, keep);
  return mlp.width - keep.length;
}

function pruneHeads(g: Graph, att: Attention, keepHeads: number[]): number {
  const hd = att.headSize;
  const features = keepHeads.flatMap((h) => Array.from({ length: hd }, (_, j) => h * hd + j));
  for (const l of [att.q, att.k, att.v]) sliceOutputs(g, l, features);
  sliceInputs(g, att.o, features);
  const heads = keepHeads.length;
  const width = att.numHeads * hd;
  for (const n of att.nodes) {
    if (n.opType !== 'Reshape') continue;
    const shape = readShapeVector(n.input(1));
    if (!shape) throw new UserError(`cannot read the target shape of Reshape '${n.name}' to change its head count`);
    if (shape.length === 4 && shape[2] === att.numHeads) rewriteShapeEntry(g, n, 1, 2, heads);
    else if (shape.length === 4 && shape[2] === -1 && shape[3] === hd) continue;
    else if (shape[shape.length - 1] === width) rewriteShapeEntry(g, n, 1, shape.length - 1, heads * hd);
    else if (shape.length === 4 && shape[3] === width / att.numHeads) continue;
    else if (shape[shape.length - 1] === -1) continue;
    else throw new UserError(`Reshape '${n.name}' in the attention has target [${shape.map((d) => d ?? '?').join(',')}], whose head count cannot be changed`);
  }
  return att.numHeads - keepHeads.length;
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
 * Sets entry `pos` of the shape tensor that `node` reads at input `slot`. Constant vectors get a
 * new constant; a Concat (torch's run-time shapes) is copied for this reader alone and the piece
 * holding the entry replaced, so shape pieces shared with other layers are never changed.
 */
function rewriteShapeEntry(g: Graph, node: Node, slot: number, pos: number, value: number): void {
  const v = node.input(slot);
  const where = `the shape read by '${node.name}'`;
  const c = constantNumbers(v);
  if (c) {
    const dtype = constantTensor(v)?.dtype ?? DataType.INT64;
    const data = c.map((x, i) => (i === pos ? value : x));
    const t = dtype === DataType.INT32 ? Tensor.from(`${v!.name}_pruned`, DataType.INT32, [data.length], data) : Tensor.from(`${v!.name}_pruned`, DataType.INT64, [data.length], data.map((x) => BigInt(x)));
    if (constantTensor(v)!.dims.length === 0 && data.length === 1) {
      node.setInput(slot, g.addInitializer(Tensor.from(`${v!.name}_pruned`, t.dtype, [], dtype === DataType.INT32 ? data : data.map((x) => BigInt(x)))));
    } else node.setInput(slot, g.addInitializer(t));
    return;
  }
  const p = v?.producer();
  if (p && p.opType === 'Concat') {
    const copy = g.addNode('Concat', [...p.inputs], 1, { name: g.uniqueNodeName(`${p.name}_pruned`), attributes: Object.fromEntries(p.attributes), before: node });
    node.setInput(slot, copy.output(0));
    let offset = 0;
    for (let i = 0; i < copy.inputs.length; i++) {
      const len = readShapeVector(copy.input(i))?.length;
      if (len === undefined) throw new UserError(`cannot tell the length of piece ${i} of ${where}`);
      if (pos < offset + len) return rewriteShapeEntry(g, copy, i, pos - offset, value);
      offset += len;
    }
    throw new UserError(`${where} has no entry ${pos}`);
  }
  if (p && p.opType === 'Unsqueeze' && pos === 0 && constantNumbers(p.input(0))?.length === 1) {
    node.setInput(slot, g.addInitializer(Tensor.from(`${v!.name}_pruned`, DataType.INT64, [1], [BigInt(value)])));
    return;
  }
  if (p && (p.opType === 'Cast' || p.opType === 'Identity') && constantNumbers(p.input(0))) {
    const data = constantNumbers(p.input(0))!.map((x, i) => (i === pos ? value : x));
    node.setInput(slot, g.addInitializer(Tensor.from(`${v!.name}_pruned`, DataType.INT64, [data.length], data.map((x) => BigInt(x)))));
    return;
  }
  throw new UserError(`entry ${pos} of ${where} is computed by ${p ? `${p.opType} '${p.name}'` : 'a graph input'}, so the head count in it cannot be changed`);
}

/** Value shapes recorded in the file go stale when widths change; let onnxruntime infer them again. */
function forgetIntermediateShapes(g: Graph): void {
  for (const n of g.nodes) {
    for (const o of n.outputs) {
      if (!o.isGraphOutput() && o.type?.kind === 'tensor') o.type = { ...o.type, shape: undefined };
    }
  }
}
