// Float64 copies of float32 models, for gradient checks. onnxruntime's CPU kernels do most ops
// in double; the few that are float-only (Erf, Gelu, Q/DQ, contrib ops) are either computed in
// float inside a double graph ("islands", fine for analytic gradients) or, where a finite
// difference needs every digit, replaced by double-precision expansions. com.microsoft
// FusedMatMul (which gradient graphs use) becomes MatMul with its transposes written out.
import type { Attribute } from '../ir/attribute.js';
import { attrString } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import { Value } from '../ir/value.js';
import { inferTypes } from './infer.js';

/** Ops whose onnxruntime CPU kernels take no double. */
const FLOAT_ONLY = new Set(['Erf', 'Gelu', 'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear']);

export type DoubleMode =
  /** Float-only ops run in float32 between Casts. */
  | 'islands'
  /** Erf and Gelu are rebuilt from double ops (accurate to ~1e-14); other float-only ops become islands. */
  | 'exact';

/** A copy of `model` computing in float64 wherever it computed in float32. */
export function toDouble(model: Model, mode: DoubleMode = 'islands'): Model {
  const m = model.clone();
  const g = m.graph;
  const info = inferTypes(g);
  const isF32 = (v: Value | undefined): boolean => v !== undefined && info.get(v)?.dtype === DataType.FLOAT;
  const floatValues = new Set<Value>();
  for (const v of g.ownValues()) if (isF32(v)) floatValues.add(v);

  // declared types (inputs, outputs, value_info) and constants
  for (const v of g.ownValues()) if (v.type?.kind === 'tensor' && v.type.dtype === DataType.FLOAT) v.type = { ...v.type, dtype: DataType.DOUBLE };
  for (const v of [...g.initializers]) if (v.initializer?.dtype === DataType.FLOAT) g.setInitializer(v, widen(v.initializer));

  let counter = 0;
  for (const node of [...g.nodes]) {
    widenAttributes(node);
    const foreign = node.domain !== '' && node.domain !== 'ai.onnx';
    if (!FLOAT_ONLY.has(node.opType) && !foreign) continue;
    const msGelu = node.domain === 'com.microsoft' && (node.opType === 'Gelu' || node.opType === 'FastGelu');
    if (mode === 'exact' && ((!foreign && (node.opType === 'Erf' || node.opType === 'Gelu')) || msGelu)) {
      const b = new Emitter(g, `${node.name || node.opType}_f64_${counter++}`, node);
      const bias = node.opType === 'FastGelu' ? node.input(1) : undefined;
      const x = bias ? b.op('Add', [node.input(0)!, bias]) : node.input(0)!;
      const approximate = node.opType === 'FastGelu' ? 'tanh' : (attrString(node.attr('approximate')) ?? 'none');
      replaceNode(g, node, node.opType === 'Erf' ? erf64(b, x) : gelu64(b, x, approximate));
      continue;
    }
    if (node.domain === 'com.microsoft' && node.opType === 'FusedMatMul') {
      // the transposes it folds, written out: MatMul takes double
      const ranks = node.inputs.map((v) => (v ? info.get(v)?.shape?.length : undefined));
      if (!node.intAttr('transBatchA', 0) && !node.intAttr('transBatchB', 0) && ranks.every((r) => r !== undefined && r >= 2)) {
        const b = new Emitter(g, `${node.name || node.opType}_f64_${counter++}`, node);
        const operand = (i: number, trans: string): Value => {
          const v = node.input(i)!;
          if (!node.intAttr(trans, 0)) return v;
          const perm = Array.from({ length: ranks[i]! }, (_, j) => j);
          perm.splice(-2, 2, perm.length - 1, perm.length - 2);
          return b.op('Transpose', [v], { perm: { type: 'ints', value: perm } });
        };
        const product = b.op('MatMul', [operand(0, 'transA'), operand(1, 'transB')]);
        const alpha = node.floatAttr('alpha', 1);
        replaceNode(g, node, alpha === 1 ? product : b.op('Mul', [product, b.c(alpha)]));
        continue;
      }
    }
    // island: cast float inputs down, outputs back up
    node.inputs.forEach((v, i) => {
      if (!v || !floatValues.has(v)) return;
      const c = g.addNode('Cast', [v], [`${v.name}_as_f32_${counter++}`], { name: `${node.name}_island_in_${counter++}`, attributes: { to: { type: 'int', value: DataType.FLOAT } }, before: node });
      node.setInput(i, c.output(0));
    });
    node.outputs.forEach((y) => {
      if (!floatValues.has(y)) return;
      const inner = g.uniqueName(`${y.name}_f32`);
      const readers = [...y.uses()];
      const isOut = g.outputs.includes(y);
      const c = g.addNode('Cast', [y], [`${y.name}_f64_${counter++}`], { name: `${node.name}_island_out_${counter++}`, attributes: { to: { type: 'int', value: DataType.DOUBLE } }, after: node });
      const up = c.output(0);
      for (const u of readers) u.node.setInput(u.index, up);
      if (isOut) {
        g.outputs = g.outputs.map((o) => (o === y ? up : o));
        const name = y.name;
        g.renameValue(y, inner);
        g.renameValue(up, name);
      }
    });
  }
  g.toposort();
  return m;
}

/** Gives `node`'s output (its name too, when it is a graph output) to `out`, and removes the node. */
function replaceNode(g: Graph, node: Node, out: Value): void {
  const y = node.output(0);
  for (const use of [...y.uses()]) use.node.setInput(use.index, out);
  if (g.outputs.includes(y)) {
    g.outputs = g.outputs.map((o) => (o === y ? out : o));
    const name = y.name;
    g.renameValue(y, g.uniqueName(`${name}_replaced`));
    g.renameValue(out, name);
  }
  g.removeNode(node);
}

function widen(t: Tensor): Tensor {
  return Tensor.fromBytes(t.name, DataType.DOUBLE, t.dims, new Uint8Array(Float64Array.from(t.toFloat32()).buffer));
}

function widenAttributes(node: Node): void {
  for (const [k, a] of node.attributes) {
    if (a.type === 'tensor' && a.value.dtype === DataType.FLOAT) node.attributes.set(k, { ...a, value: widen(a.value) });
    const typeAttr = (k === 'to' && node.opType === 'Cast') || k === 'dtype';
    if (typeAttr && a.type === 'int' && a.value === DataType.FLOAT) node.attributes.set(k, { ...a, value: DataType.DOUBLE });
  }
  if (node.opType === 'Constant') {
    const f = node.attr('value_float');
    if (f?.type === 'float') {
      node.attributes.delete('value_float');
      node.attributes.set('value', { type: 'tensor', value: Tensor.from('value', DataType.DOUBLE, [], [f.value]) });
    }
    const fs = node.attr('value_floats');
    if (fs?.type === 'floats') {
      node.attributes.delete('value_floats');
      node.attributes.set('value', { type: 'tensor', value: Tensor.from('value', DataType.DOUBLE, [fs.value.length], fs.value) });
    }
  }
}

class Emitter {
  private k = 0;
  constructor(
    private readonly g: Graph,
    private readonly prefix: string,
    private readonly before: Node,
  ) {}
  op(type: string, inputs: Value[], attributes: Record<string, Attribute> = {}): Value {
    const name = `${this.prefix}/${type}_${this.k++}`;
    const n = new Node(type, { name, inputs, attributes });
    const out = this.g.uniqueName(name);
    n.appendOutput(new Value(out));
    this.g.insertNode(n, { before: this.before });
    return n.output(0);
  }
  c(x: number): Value {
    return this.g.addInitializer(Tensor.from(this.g.uniqueName(`${this.prefix}/c${this.k++}`), DataType.DOUBLE, [], [x]));
  }
}

/**
 * erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)): every term positive, so
 * no cancellation; x is clamped to [-6, 6], where erf is +-1 to double precision.
 */
function erf64(b: Emitter, x0: Value): Value {
  const x = b.op('Clip', [x0, b.c(-6), b.c(6)]);
  const x2 = b.op('Mul', [x, x]);
  let t = b.c(1);
  for (let n = 150; n >= 1; n--) t = b.op('Add', [b.c(1), b.op('Mul', [b.op('Mul', [x2, b.c(2 / (2 * n + 1))]), t])]);
  const series = b.op('Mul', [x, t]);
  return b.op('Mul', [b.op('Mul', [series, b.op('Exp', [b.op('Neg', [x2])])]), b.c(2 / Math.sqrt(Math.PI))]);
}

function gelu64(b: Emitter, x: Value, approximate: string): Value {
  const half = b.op('Mul', [x, b.c(0.5)]);
  if (approximate === 'tanh') {
    const cube = b.op('Mul', [b.op('Mul', [x, x]), x]);
    const inner = b.op('Mul', [b.op('Add', [x, b.op('Mul', [cube, b.c(0.044715)])]), b.c(Math.sqrt(2 / Math.PI))]);
    return b.op('Mul', [half, b.op('Add', [b.c(1), b.op('Tanh', [inner])])]);
  }
  return b.op('Mul', [half, b.op('Add', [b.c(1), erf64(b, b.op('Mul', [x, b.c(Math.SQRT1_2)]))])]);
}
