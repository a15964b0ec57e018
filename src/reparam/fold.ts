import { constantSource, constantTensor } from '../discover/constants.js';
import type { LinearLayer, NormLayer, Structure } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/**
 * A LayerNorm (or RMSNorm) whose output can be rescaled per channel, and the linear layers
 * that read it. `restore` lists the other readers (residual Adds of post-LN blocks): the fold
 * hands them the original tensor again through `y = y' * r + t`, so the rewrite stays exact.
 */
export interface FoldSite {
  /** The norm's output name (what the report and the calibration use). */
  name: string;
  norm: NormLayer;
  linears: LinearLayer[];
  restore: Node[];
  hidden: number;
  /** False for RMSNorm and for norms written without a bias: only t = 0 folds there. */
  canShift: boolean;
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

/**
 * The norms whose output may be rescaled: each reader must be a linear layer with a float
 * constant weight (a residual Add may read it too; it gets the original tensor back).
 * Every norm that does not qualify is listed with the reason.
 */
export function findFoldSites(structure: Structure): FoldSearch {
  const out: FoldSearch = { sites: [], skipped: [] };
  const byNode = new Map<Node, LinearLayer>(structure.linears.map((l) => [l.node, l]));
  const residualAdds = new Set(structure.residuals.map((r) => r.add));
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
    if (norm.output.isGraphOutput()) {
      skip('the norm output is a graph output');
      continue;
    }
    const linears: LinearLayer[] = [];
    const restore: Node[] = [];
    let reason: string | undefined;
    for (const use of norm.output.uses()) {
      const l = byNode.get(use.node);
      if (l && use.index === 0 && l.input === norm.output) {
        const w = constantTensor(l.weight);
        if (!w || w.dtype !== DataType.FLOAT) reason = `reader '${l.name}' has no float constant weight`;
        else if (l.inFeatures !== hidden) reason = `reader '${l.name}' takes ${l.inFeatures} features, the norm gives ${hidden}`;
        else if (l.node.opType === 'Gemm' && (l.node.intAttr('transA', 0) !== 0 || l.node.floatAttr('alpha', 1) !== 1 || l.node.floatAttr('beta', 1) !== 1)) reason = `reader '${l.name}' is a Gemm with transA/alpha/beta`;
        else if (l.bias && constantTensor(l.bias)?.dtype !== DataType.FLOAT) reason = `reader '${l.name}' has a bias that is not a float constant`;
        else {
          if (!linears.includes(l)) linears.push(l);
          continue;
        }
        break;
      }
      if (residualAdds.has(use.node)) {
        if (!restore.includes(use.node)) restore.push(use.node);
        continue;
      }
      reason = `the norm output is also read by ${use.node.opType} '${use.node.name}', which is not a linear layer or a residual add`;
      break;
    }
    if (reason) {
      skip(reason);
      continue;
    }
    if (linears.length === 0) {
      skip('no linear layer reads the norm output');
      continue;
    }
    const canShift = norm.kind === 'layernorm' && (!!norm.bias || norm.form === 'fused');
    out.sites.push({ name, norm, linears, restore, hidden, canShift });
  }
  return out;
}

/** Reads a constant as float32 [out, in] rows for the linear (whatever its stored layout). */
function weightRows(l: LinearLayer): { w: Float32Array; stride: number } {
  return { w: constantTensor(l.weight)!.toFloat32(), stride: l.outFeatures };
}

/**
 * Applies y' = (y - t) / r at a site, in place: new constants for the norm's γ and β and for
 * each reader's weight and bias (shared originals are left to other readers), and a
 * `y' * r + t` branch for residual readers. Arithmetic is in float64, stored as float32.
 */
export function applyFold(model: Model, site: FoldSite, fold: AffineFold): void {
  const g = model.graph;
  const n = site.hidden;
  const r = Float64Array.from(fold.scale);
  const t = fold.shift ? Float64Array.from(fold.shift) : new Float64Array(n);
  if (r.length !== n || t.length !== n) throw new Error(`fold at '${site.name}': ${r.length} factors and ${t.length} shifts for ${n} channels`);
  for (let i = 0; i < n; i++) if (!(r[i]! > 0) || !Number.isFinite(r[i]!)) throw new Error(`fold at '${site.name}': factor ${i} is ${r[i]}, not a positive number`);
  const shifted = t.some((x) => x !== 0);
  if (shifted && !site.canShift) throw new Error(`fold at '${site.name}': the norm has no bias, so only a pure scaling (t = 0) can be folded`);
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
      const add = g.addNode('Add', [y, bv], [`${y.name}_biased`], { name: g.uniqueNodeName(`${l.name}/fold_bias`), after: l.node });
      y.replaceAllUsesWith(add.output(0));
      add.setInput(0, y);
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
  } else if (shifted) {
    // a fused LayerNormalization without its optional bias input
    const node = site.norm.nodes[0]!;
    const bv = g.addInitializer(Tensor.from(`${base}.beta_folded`, DataType.FLOAT, [n], b2));
    node.setInput(2, bv);
    site.norm.bias = bv;
  }

  // residual readers get y = y' * r + t back
  if (site.restore.length > 0) {
    const y = site.norm.output;
    const rv = g.addInitializer(Tensor.from(`${base}.fold_scale`, DataType.FLOAT, [n], r));
    const producer = y.producer()!;
    let back: Value = g.addNode('Mul', [y, rv], [`${base}_restored`], { name: g.uniqueNodeName(`${base}/fold_restore`), after: producer }).output(0);
    if (shifted) {
      const tv = g.addInitializer(Tensor.from(`${base}.fold_shift`, DataType.FLOAT, [n], t));
      back = g.addNode('Add', [back, tv], [`${base}_restored_shifted`], { name: g.uniqueNodeName(`${base}/fold_restore_shift`), after: back.producer()! }).output(0);
    }
    for (const node of site.restore) node.inputs.forEach((v, i) => v === y && node.setInput(i, back));
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
