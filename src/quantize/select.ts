import { UserError } from '../errors.js';
import type { LinearLayer, Structure } from '../discover/structure.js';
import { constantTensor } from '../discover/constants.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { findConvs, type ConvLayer } from './conv.js';

/** Ops that mean the model already holds quantized computation. */
const QUANTIZED_OPS = new Set(['QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear', 'MatMulInteger', 'QLinearMatMul', 'MatMulNBits', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat', 'QLinearConv', 'GatherBlockQuantized', 'QGemm']);

export interface EmbeddingTable {
  node: Node;
  table: Value;
  rows: number;
  width: number;
}

export interface Selection {
  linears: LinearLayer[];
  /** 2-D Convs with a constant float weight (patch embeddings), written as integer kernels. */
  convs: ConvLayer[];
  embeddings: EmbeddingTable[];
  excluded: { name: string; pattern: string }[];
  skipped: { name: string; reason: string }[];
}

/** A glob (`*` and `?`) or a /regex/. */
export function namePattern(pattern: string): RegExp {
  const re = /^\/(.*)\/([a-z]*)$/.exec(pattern);
  if (re) {
    try {
      return new RegExp(re[1]!, re[2]);
    } catch (e) {
      throw new UserError(`--exclude pattern ${pattern} is not a valid regular expression (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** A user error naming the first quantized node; `action` is what to do with the float model instead (quantize, prune). */
export function assertNotQuantized(model: Model, file: string, action = 'quantize'): void {
  for (const n of model.graph.allNodes()) {
    if (QUANTIZED_OPS.has(n.opType)) throw new UserError(`${file} is already quantized (it has a ${n.opType} node '${n.name}'); ${action} the float model instead`);
  }
}

/**
 * The layers a scheme quantizes: every linear layer discovery found (attention, MLP, heads),
 * every 2-D Conv with a constant float weight (patch embeddings) and, optionally, embedding
 * tables; minus the user's exclusions. Layers that cannot be rewritten are listed with the
 * reason.
 */
export function selectLayers(model: Model, structure: Structure, exclude: string[], embeddings: boolean): Selection {
  const patterns = exclude.map((p) => ({ p, re: namePattern(p) }));
  const excludedBy = (...names: string[]): string | undefined => patterns.find(({ re }) => names.some((n) => re.test(n)))?.p;
  const out: Selection = { linears: [], convs: [], embeddings: [], excluded: [], skipped: [] };
  for (const l of structure.linears) {
    const pattern = excludedBy(l.name, l.node.name);
    if (pattern) {
      out.excluded.push({ name: l.name, pattern });
      continue;
    }
    const w = constantTensor(l.weight);
    if (!w || w.dtype !== DataType.FLOAT) {
      out.skipped.push({ name: l.name, reason: `weight '${l.weight.name}' is not a float32 constant` });
      continue;
    }
    if (l.node.opType === 'Gemm' && (l.node.floatAttr('alpha', 1) !== 1 || l.node.floatAttr('beta', 1) !== 1 || l.node.intAttr('transA', 0) !== 0)) {
      out.skipped.push({ name: l.name, reason: `Gemm '${l.node.name}' uses alpha/beta/transA, which the rewrite does not carry` });
      continue;
    }
    out.linears.push(l);
  }
  const convs = findConvs(model);
  for (const c of convs.convs) {
    const pattern = excludedBy(c.name, c.node.name);
    if (pattern) out.excluded.push({ name: c.name, pattern });
    else out.convs.push(c);
  }
  for (const s of convs.skipped) {
    const pattern = excludedBy(s.name);
    if (pattern) out.excluded.push({ name: s.name, pattern });
    else out.skipped.push(s);
  }
  if (embeddings) {
    for (const n of model.graph.nodes) {
      if (n.opType !== 'Gather' || n.intAttr('axis', 0) !== 0) continue;
      const t = constantTensor(n.input(0));
      if (!t || t.dtype !== DataType.FLOAT || t.dims.length !== 2 || t.size < 4096) continue;
      const name = n.input(0)!.name;
      const pattern = excludedBy(name, n.name);
      if (pattern) {
        out.excluded.push({ name, pattern });
        continue;
      }
      out.embeddings.push({ node: n, table: n.input(0)!, rows: t.dims[0]!, width: t.dims[1]! });
    }
  }
  return out;
}
