import { constantNumbers, constantSource, constantTensor } from '../discover/constants.js';
import { SymbolicShapes } from '../discover/infer-shapes.js';
import { topoPositions } from '../discover/order.js';
import type { LinearLayer, NormLayer, Structure } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/**
 * A LayerNorm (or RMSNorm) whose output can be rescaled per channel, and the linear layers
 * that read it, directly or through layout ops that keep the channel axis last (`views`).
 * `restore` lists every other reader (residual Adds, a masked mean-pool, ...): the fold hands
 * each the original tensor again through `y = y' * r + t`, so the rewrite stays exact.
 * Shape-only readers (`Shape`, `Size`) see the same dims before and after and need nothing.
 */
export interface FoldSite {
  /** The norm's output name (what the report and the calibration use). */
  name: string;
  norm: NormLayer;
  linears: LinearLayer[];
  /** The norm output and its channel-last layout views (Transpose, Reshape, Gather, ...) on the way to the linears. */
  views: Value[];
  restore: FoldReader[];
  hidden: number;
  /**
   * Where a shift t goes: 'bias' into the norm's β (a LayerNorm with β, or a fused
   * LayerNormalization that takes one); 'add' into a new `Add(·, -t/r)` right after the norm
   * (RMSNorm, and LayerNorms written without β), which is exact as well.
   */
  shiftBy: 'bias' | 'add';
}

/** A reader that is handed the original values back: `node` reads `value` (the norm output or one of its views). */
export interface FoldReader {
  node: Node;
  value: Value;
}

export interface FoldSearch {
  sites: FoldSite[];
  skipped: { name: string; reason: string }[];
}

/**
 * The per-channel change of variables applied at a site: the norm's output y becomes
 * y' = (y - t) / r. Then γ' = γ / r, β' = (β - t) / r, and every consumer y·W + b becomes
 * y'·(diag(r)·W) + (b + t·W), so the model computes the same function.
 */
export interface AffineFold {
  /** r, one positive factor per channel. */
  scale: ArrayLike<number>;
  /** t, one shift per channel (default zero). */
  shift?: ArrayLike<number>;
}

/** Readers that take only a tensor's dims, never its values. */
const SHAPE_ONLY = new Set(['Shape', 'Size']);

/**
 * The norms whose output may be rescaled: at least one linear layer with a float constant
 * weight must read it, directly or through layout ops that keep the channel axis last; every
 * other reader gets the original tensor back. Every norm that does not qualify is listed with
 * the reason.
 */
export function findFoldSites(structure: Structure): FoldSearch {
  const out: FoldSearch = { sites: [], skipped: [] };
  const byNode = new Map<Node, LinearLayer>(structure.linears.map((l) => [l.node, l]));
  let shapes: SymbolicShapes | undefined;
  const shapesOf = (graph: Graph): SymbolicShapes => (shapes ??= new SymbolicShapes(graph, graph.nodes.slice().sort(byPosition(topoPositions(graph)))));
  for (const norm of structure.norms) {
    const name = norm.output.name;
    const skip = (reason: string): void => void out.skipped.push({ name, reason });
    const gamma = constantTensor(norm.scale);
    if (!norm.scale || !gamma || gamma.dtype !== DataType.FLOAT) {
      skip('the norm has no float constant scale (γ) to absorb the factors');
      continue;
    }
    const hidden = gamma.size;
    if (hidden < 2) {
      skip(`the norm's scale has ${hidden} element; a per-channel fold needs one per channel`);
      continue;
    }
    if (norm.bias && constantTensor(norm.bias)?.dtype !== DataType.FLOAT) {
      skip('the norm bias (β) is not a float constant');
      continue;
    }
    const linears: LinearLayer[] = [];
    const restore: FoldReader[] = [];
    const views: Value[] = [];
    let reason: string | undefined;
    const queue: Value[] = [norm.output];
    walk: while (queue.length > 0) {
      const v = queue.shift()!;
      if (v.isGraphOutput()) {
        reason = v === norm.output ? 'the norm output is a graph output' : `the norm output reaches the graph output '${v.name}' through layout ops`;
        break;
      }
      views.push(v);
      for (const use of v.uses()) {
        if (SHAPE_ONLY.has(use.node.opType)) continue;
        if (use.node.graph !== v.graph) {
          // read inside a subgraph (If/Loop body): handed y back from this graph, never followed
          if (!restore.some((r) => r.node === use.node && r.value === v)) restore.push({ node: use.node, value: v });
          continue;
        }
        const l = byNode.get(use.node);
        if (l && use.index === 0 && l.input === v && foldableReader(l, hidden) === undefined) {
          if (!linears.includes(l)) linears.push(l);
          continue;
        }
        if (l && use.index === 0 && l.input === v && l.inFeatures !== hidden) {
          // a linear over other features means the channel axis was not where we thought
          reason = foldableReader(l, hidden);
          break walk;
        }
        const next = channelView(use.node, use.index, v, (g) => shapesOf(g), hidden);
        if (next) {
          queue.push(next);
          continue;
        }
        if (!restore.some((r) => r.node === use.node && r.value === v)) restore.push({ node: use.node, value: v });
      }
    }
    if (reason) {
      skip(reason);
      continue;
    }
    if (linears.length === 0) {
      const readers = restore.map((r) => `${r.node.opType} '${r.node.name}'`).join(', ');
      skip(`no linear layer with a float constant weight reads the norm output (directly or through Transpose/Reshape/Gather/Slice keeping the channel axis last); its readers: ${readers || 'none'}`);
      continue;
    }
    const shiftBy = norm.kind === 'layernorm' && (!!norm.bias || norm.form === 'fused') ? 'bias' : 'add';
    out.sites.push({ name, norm, linears, views, restore, hidden, shiftBy });
  }
  return out;
}

/** Why a linear reading the norm output cannot absorb the factors, or undefined when it can. */
function foldableReader(l: LinearLayer, hidden: number): string | undefined {
  const w = constantTensor(l.weight);
  if (!w || w.dtype !== DataType.FLOAT) return `reader '${l.name}' has no float constant weight`;
  if (l.inFeatures !== hidden) return `reader '${l.name}' takes ${l.inFeatures} features, the norm gives ${hidden}`;
  if (l.node.opType === 'Gemm' && (l.node.intAttr('transA', 0) !== 0 || l.node.floatAttr('alpha', 1) !== 1 || l.node.floatAttr('beta', 1) !== 1)) return `reader '${l.name}' is a Gemm with transA/alpha/beta`;
  if (l.bias && constantTensor(l.bias)?.dtype !== DataType.FLOAT) return `reader '${l.name}' has a bias that is not a float constant`;
  return undefined;
}

/**
 * The output of `node` when it only moves or selects elements of `v` (read at `index`) and
 * keeps v's last axis, the channel axis, as its own last axis: then a per-channel scale and
 * shift commute with it. Transpose must leave the last axis in place; Reshape, Flatten,
 * Squeeze and Unsqueeze keep the channel of every element when the last dim is `hidden` on
 * both sides (row-major order: channel = flat index mod hidden); Gather and Slice must not
 * touch the last axis.
 */
function channelView(node: Node, index: number, v: Value, shapesOf: (g: Graph) => SymbolicShapes, hidden: number): Value | undefined {
  if (index !== 0 || node.outputs.length < 1) return undefined;
  const graph = v.graph;
  const rankOf = (x: Value): number | undefined => (graph ? shapesOf(graph).shape(x)?.length : undefined);
  switch (node.opType) {
    case 'Identity':
      return node.output(0);
    case 'Transpose': {
      const perm = node.intsAttr('perm');
      const rank = perm?.length ?? rankOf(v);
      if (rank === undefined) return undefined;
      const last = perm ? perm[rank - 1] : 0;
      return last === rank - 1 ? node.output(0) : undefined;
    }
    case 'Reshape':
    case 'Flatten':
    case 'Squeeze':
    case 'Unsqueeze': {
      const dims = graph ? shapesOf(graph).shape(node.output(0)) : undefined;
      const lastDim = dims?.[dims.length - 1];
      return lastDim && lastDim.s.length === 0 && lastDim.c === hidden ? node.output(0) : undefined;
    }
    case 'Gather': {
      const rank = rankOf(v);
      if (rank === undefined) return undefined;
      const axis = node.intAttr('axis', 0)!;
      return (axis + rank) % rank !== rank - 1 ? node.output(0) : undefined;
    }
    case 'Slice': {
      const rank = rankOf(v);
      if (rank === undefined) return undefined;
      let axes = node.input(3) ? constantNumbers(node.input(3)) : undefined;
      if (!node.input(3)) {
        const n = graph ? shapesOf(graph).shape(node.input(1))?.[0] : undefined;
        if (n && n.s.length === 0) axes = Array.from({ length: n.c }, (_, i) => i);
      }
      if (!axes) return undefined;
      return axes.every((a) => (a + rank) % rank !== rank - 1) ? node.output(0) : undefined;
    }
    default:
      return undefined;
  }
}

function byPosition(positions: Map<Node, number>): (a: Node, b: Node) => number {
  const at = (n: Node): number => positions.get(n) ?? Number.MAX_SAFE_INTEGER;
  return (a, b) => at(a) - at(b);
}

/** Reads a constant as float32 [out, in] rows for the linear (whatever its stored layout). */
function weightRows(l: LinearLayer): { w: Float32Array; stride: number } {
  return { w: constantTensor(l.weight)!.toFloat32(), stride: l.outFeatures };
}

/**
 * Applies y' = (y - t) / r at a site, in place: new constants for the norm's γ and β and for
 * each reader's weight and bias (shared originals are left to other readers), and a
 * `y' * r + t` branch for every other reader. Arithmetic is in float64, stored as float32.
 *
 * Without a β to absorb the shift (RMSNorm, LayerNorm written without bias), the norm keeps
 * γ' = γ / r and an `Add(·, -t/r)` follows it: (γ/r)·x̂ - t/r = (γ·x̂ - t)/r = (y - t)/r, the
 * same y' as with β, so the readers' rewrite is unchanged (docs/repquant.md).
 */
export function applyFold(model: Model, site: FoldSite, fold: AffineFold): void {
  const g = model.graph;
  const n = site.hidden;
  const r = Float64Array.from(fold.scale);
  const t = fold.shift ? Float64Array.from(fold.shift) : new Float64Array(n);
  if (r.length !== n || t.length !== n) throw new Error(`fold at '${site.name}': ${r.length} factors and ${t.length} shifts for ${n} channels`);
  for (let i = 0; i < n; i++) if (!(r[i]! > 0) || !Number.isFinite(r[i]!)) throw new Error(`fold at '${site.name}': factor ${i} is ${r[i]}, not a positive number`);
  const shifted = t.some((x) => x !== 0);
  const base = site.name;

  // the readers first (they need the original W for the bias)
  for (const l of site.linears) {
    const { w } = weightRows(l);
    const out = l.outFeatures;
    const bias = new Float64Array(out);
    const b0 = l.bias ? constantTensor(l.bias)!.toFloat32() : undefined;
    if (b0) for (let o = 0; o < out; o++) bias[o] = b0.length === 1 ? b0[0]! : b0[o]!;
    const w2 = new Float32Array(w.length);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < out; o++) {
        // element (in i, out o): MatMul stores [in, out]; Gemm transB stores [out, in]
        const idx = l.transB ? o * n + i : i * out + o;
        bias[o] += t[i]! * w[idx]!;
        w2[idx] = w[idx]! * r[i]!;
      }
    }
    const wDims = constantTensor(l.weight)!.dims;
    const wv = g.addInitializer(Tensor.from(`${l.name}.weight_folded`, DataType.FLOAT, wDims, w2));
    l.node.setInput(1, wv);
    l.weight = wv;
    if (!shifted) continue;
    const bv = g.addInitializer(Tensor.from(`${l.name}.bias_folded`, DataType.FLOAT, [out], bias));
    if (l.node.opType === 'Gemm') {
      l.node.setInput(2, bv);
    } else if (l.biasAdd) {
      const idx = l.biasAdd.inputs.findIndex((v) => v && constantSource(v) === l.bias);
      l.biasAdd.setInput(idx, bv);
    } else {
      const y = l.node.output(0);
      const name = y.name;
      const add = g.addNode('Add', [y, bv], [g.uniqueName(`${name}_biased`)], { name: g.uniqueNodeName(`${l.name}/fold_bias`), after: l.node });
      y.replaceAllUsesWith(add.output(0));
      add.setInput(0, y);
      // the linear's output keeps its name (what the quantize pass's per-layer check looks up in
      // the unfolded model); the bare product takes a new one. A graph output was renamed already.
      if (add.output(0).name !== name) {
        g.renameValue(y, g.uniqueName(`${name}_unbiased`));
        g.renameValue(add.output(0), name);
      }
      l.biasAdd = add;
      l.output = add.output(0);
    }
    l.bias = bv;
  }

  // the norm's affine part
  const gamma = constantTensor(site.norm.scale)!.toFloat32();
  const beta = site.norm.bias ? constantTensor(site.norm.bias)!.toFloat32() : undefined;
  const g2 = new Float32Array(n);
  const b2 = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    g2[i] = gamma[i]! / r[i]!;
    b2[i] = ((beta ? beta[i]! : 0) - t[i]!) / r[i]!;
  }
  const gammaDims = constantTensor(site.norm.scale)!.dims;
  const gv = g.addInitializer(Tensor.from(`${base}.gamma_folded`, DataType.FLOAT, gammaDims, g2));
  replaceConstant(site.norm.nodes, site.norm.scale!, gv);
  site.norm.scale = gv;
  if (site.norm.bias) {
    const bv = g.addInitializer(Tensor.from(`${base}.beta_folded`, DataType.FLOAT, constantTensor(site.norm.bias)!.dims, b2));
    replaceConstant(site.norm.nodes, site.norm.bias, bv);
    site.norm.bias = bv;
  } else if (shifted && site.shiftBy === 'bias') {
    // a fused LayerNormalization without its optional bias input
    const node = site.norm.nodes[0]!;
    const bv = g.addInitializer(Tensor.from(`${base}.beta_folded`, DataType.FLOAT, [n], b2));
    node.setInput(2, bv);
    site.norm.bias = bv;
  } else if (shifted) {
    // no β to absorb -t/r: it follows the norm as an Add, which every reader then reads
    const y = site.norm.output;
    const bv = g.addInitializer(Tensor.from(`${base}.fold_beta`, DataType.FLOAT, [n], b2));
    const add = g.addNode('Add', [y, bv], [g.uniqueName(`${base}_fold_shifted`)], { name: g.uniqueNodeName(`${base}/fold_shift`), after: y.producer()! });
    y.replaceAllUsesWith(add.output(0));
    add.setInput(0, y);
    const i = site.views.indexOf(y);
    site.views[i] = add.output(0);
    for (const reader of site.restore) if (reader.value === y) reader.value = add.output(0);
  }

  // every other reader gets y = y' * r + t back, at the view it reads (channel axis last there too)
  const restored = new Map<Value, Value>();
  for (const { node, value } of site.restore) {
    let back = restored.get(value);
    if (!back) {
      const stem = g.uniqueName(`${value.name}_restored`);
      const rv = g.addInitializer(Tensor.from(`${stem}.fold_scale`, DataType.FLOAT, [n], r));
      back = g.addNode('Mul', [value, rv], [stem], { name: g.uniqueNodeName(`${base}/fold_restore`), after: value.producer()! }).output(0);
      if (shifted) {
        const tv = g.addInitializer(Tensor.from(`${stem}.fold_shift`, DataType.FLOAT, [n], t));
        back = g.addNode('Add', [back, tv], [`${stem}_shifted`], { name: g.uniqueNodeName(`${base}/fold_restore_shift`), after: back.producer()! }).output(0);
      }
      restored.set(value, back);
    }
    node.inputs.forEach((v, i) => v === value && node.setInput(i, back));
  }
}

/** Points every reader of `old` (through Identity nodes) among `nodes` at `next`. */
function replaceConstant(nodes: Node[], old: Value, next: Value): void {
  let found = false;
  for (const node of nodes) {
    node.inputs.forEach((v, i) => {
      if (v && constantSource(v) === old) {
        node.setInput(i, next);
        found = true;
      }
    });
  }
  if (!found) throw new Error(`no node of the norm reads '${old.name}'`);
}

/** Largest |w| per input channel over all readers of a site (SmoothQuant's weight statistic). */
export function weightAbsMaxPerInput(site: FoldSite): Float64Array {
  const n = site.hidden;
  const m = new Float64Array(n);
  for (const l of site.linears) {
    const { w } = weightRows(l);
    const out = l.outFeatures;
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < out; o++) {
        const v = Math.abs(w[l.transB ? o * n + i : i * out + o]!);
        if (v > m[i]!) m[i] = v;
      }
    }
  }
  return m;
}
