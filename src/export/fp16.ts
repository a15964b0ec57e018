// float32 -> float16 conversion of a whole model (onnxconverter-common's convert_float_to_float16
// convention): float initializers, Constant nodes, Cast targets and declared types become float16;
// operators that lose too much in float16, or that onnxruntime's CPU build runs badly or not at
// all in float16, stay in float32 behind Casts; graph inputs and outputs keep float32 when asked
// (keep_io_types). Subgraphs (If, Loop, Scan bodies) are converted by the same rule, so a value
// shared by both branches of a merged decoder's If is rewritten once.
import { matchNorm } from '../discover/layer-norm.js';
import { NoMatch } from '../discover/match.js';
import type { Attribute } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import { floatToFloat16Bits } from '../ir/float-bits.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import { Value } from '../ir/value.js';
import { inferElementTypes } from './element-types.js';

/** The largest finite float16; float32 values beyond it are clamped (masks of -3.4e38 become -65504). */
export const FLOAT16_MAX = 65504;

/**
 * Operators kept in float32, with the reason. Measured with onnxruntime-node 1.30 on the CPU
 * (`node dist/benchmarks/fp16-ops.js`): most float operators have no float16 CPU kernel and run
 * through Casts onnxruntime inserts (float32 arithmetic, float16 storage: fine); the ones below
 * fail, or have a float16 kernel that is far slower than float32.
 */
export const FLOAT32_OPS: ReadonlyMap<string, string> = new Map([
  ['Range', 'ONNX Range has no float16 type: onnxruntime refuses the model'],
  ['LayerNormalization', "onnxruntime's float16 CPU kernel is 13x slower than float32"],
  ['SimplifiedLayerNormalization', "onnxruntime's float16 CPU kernel is 13x slower than float32"],
  ['SkipLayerNormalization', 'the float16 CPU kernel is the slow LayerNormalization one'],
  ['SkipSimplifiedLayerNormalization', 'the float16 CPU kernel is the slow LayerNormalization one'],
  ['Clip', "onnxruntime's float16 CPU kernel is 29x slower than float32"],
  ['Max', "onnxruntime's float16 CPU kernel is 27x slower than float32"],
  ['Min', "onnxruntime's float16 CPU kernel is 21x slower than float32"],
  ['Transpose', 'onnxruntime-node 1.30 crashed (segfault) creating a session at its default optimization level for two seq-first zoo encoders with float16 Transposes'],
  ['QuantizeLinear', 'float16 scales need opset 19'],
  ['DequantizeLinear', 'float16 scales need opset 19'],
]);

/** Why the nodes of a decomposed LayerNorm/RMSNorm stay in float32. */
export const DECOMPOSED_NORM_REASON =
  'decomposed norm: the squares of the residual stream overflow float16 above 256 and small epsilons (1e-12) flush to 0';

/**
 * Why the path from an attention's scores to its Softmax stays in float32 (found by walking back
 * from each Softmax through SCORE_PATH_OPS, stopping at the score MatMul).
 */
export const SCORE_PATH_REASON =
  'attention scores to Softmax: a score plus a -65504 mask, or two masks added, overflow float16 to -inf (a fully masked row then gives NaN); Softmax has no float16 CPU kernel anyway';

const SCORE_PATH_OPS = new Set(['Softmax', 'Add', 'Sub', 'Mul', 'Div', 'Where', 'Cast', 'Neg', 'Tanh', 'Reshape', 'Expand', 'Unsqueeze', 'Squeeze', 'Slice', 'ConstantOfShape']);
const SCORE_PATH_LIMIT = 24;

/** The nodes from each Softmax back to (not including) the MatMuls that compute its scores. */
function scorePathNodes(graph: Graph, isFloat: (v: Value | undefined) => boolean): Node[] {
  const out = new Set<Node>();
  for (const softmax of graph.allNodes()) {
    if (softmax.opType !== 'Softmax' || !isFloat(softmax.input(0))) continue;
    const stack: Node[] = [softmax];
    let seen = 0;
    while (stack.length > 0 && seen < SCORE_PATH_LIMIT) {
      const n = stack.pop()!;
      if (out.has(n)) continue;
      out.add(n);
      seen++;
      for (const v of n.inputs) {
        const p = v?.producer();
        if (p && isFloat(v) && SCORE_PATH_OPS.has(p.opType) && p.opType !== 'Softmax') stack.push(p);
      }
    }
  }
  return [...out];
}

/** Operator inputs whose type the spec fixes to float32 whatever the data's type. */
const FLOAT32_SLOTS = new Map<string, number[]>([
  ['Resize', [2]],
  ['Upsample', [1]],
]);

/** Operators that read any type at these inputs: no Cast is put in front of them. */
const ANY_TYPE_SLOTS = new Map<string, number[]>([
  ['Cast', [0]],
  ['CastLike', [0]],
  ['Shape', [0]],
  ['Size', [0]],
]);

export interface Float16Options {
  /** Graph inputs and outputs stay float32, with Casts after/before them (default true). */
  keepIoTypes?: boolean;
  /** Operator types kept in float32 besides FLOAT32_OPS (e.g. 'Softmax'). */
  keepOps?: readonly string[];
  /** Keep the nodes of decomposed LayerNorm/RMSNorm in float32 (default true). */
  keepNorms?: boolean;
  /** Keep each attention's path from its score MatMul to its Softmax in float32 (default true). */
  keepScores?: boolean;
  /** Further nodes to keep in float32. */
  keepNode?: (node: Node) => boolean;
}

export interface Float16Result {
  /** Float initializers and Constant tensors written in float16, and their elements. */
  tensors: number;
  elements: number;
  /** Finite elements beyond ±65504, clamped to it. */
  clamped: number;
  /** Non-zero elements below float16's smallest subnormal, which became 0. */
  flushed: number;
  /** Nodes left in float32, each with the reason. */
  kept: { node: string; op: string; reason: string }[];
  /** Casts inserted at the boundaries of float32 regions and graph inputs/outputs. */
  casts: number;
}

/**
 * Converts `model` (in place) to float16. Values that are float32 tensors become float16 unless
 * produced by a node kept in float32; a constant stays float32 when a kept node reads it (its
 * float16 readers then read a Cast of it, which onnxruntime folds), so epsilons and exponents of
 * a kept norm keep their exact value. Casts are inserted wherever a reader needs the other type.
 */
export function convertToFloat16(model: Model, options: Float16Options = {}): Float16Result {
  const keepIo = options.keepIoTypes ?? true;
  const result: Float16Result = { tensors: 0, elements: 0, clamped: 0, flushed: 0, kept: [], casts: 0 };
  const types = inferElementTypes(model.graph);
  const isFloat = (v: Value | undefined): v is Value => v !== undefined && types.get(v) === DataType.FLOAT;

  // which nodes stay float32
  const keptOps = new Map(FLOAT32_OPS);
  for (const op of options.keepOps ?? []) keptOps.set(op, 'kept in float32 as asked');
  if (model.opset >= 19) {
    keptOps.delete('QuantizeLinear');
    keptOps.delete('DequantizeLinear');
  }
  const kept = new Map<Node, string>();
  for (const n of model.graph.allNodes()) {
    const reason = keptOps.get(n.opType);
    const floatIo = [...n.inputs, ...n.outputs].some(isFloat);
    if (reason && floatIo) kept.set(n, reason);
    else if (floatIo && options.keepNode?.(n)) kept.set(n, 'kept in float32 as asked');
    if ((options.keepNorms ?? true) && n.opType === 'Sqrt') {
      const norm = matchNorm(n);
      if (norm && !(norm instanceof NoMatch)) for (const x of norm.nodes) if (!kept.has(x)) kept.set(x, DECOMPOSED_NORM_REASON);
    }
  }
  if (options.keepScores ?? true) for (const n of scorePathNodes(model.graph, isFloat)) if (!kept.has(n)) kept.set(n, SCORE_PATH_REASON);
  for (const [n, reason] of kept) result.kept.push({ node: n.name, op: n.opType, reason });
  // a Constant node read by a kept node keeps its exact float32 value, as a constant initializer does
  for (const n of model.graph.allNodes()) {
    if (n.opType === 'Constant' && n.outputs.some((o) => isFloat(o) && o.uses().some((u) => kept.has(u.node)))) kept.set(n, 'read by a node kept in float32');
  }

  // the new type of every float value
  const newType = new Map<Value, DataType>();
  const decide = (v: Value): DataType => {
    if (v.graph === model.graph && v.isGraphInput()) return keepIo ? DataType.FLOAT : DataType.FLOAT16;
    const p = v.producer();
    if (p) return kept.has(p) ? DataType.FLOAT : DataType.FLOAT16;
    if (v.isConstant()) return v.uses().some((u) => kept.has(u.node)) ? DataType.FLOAT : DataType.FLOAT16;
    return DataType.FLOAT16; // a subgraph's own input (Loop/Scan body): its node is not kept
  };
  for (const [v, t] of types) if (t === DataType.FLOAT) newType.set(v, decide(v));

  const graphs = [...allGraphs(model.graph)];
  for (const g of graphs) {
    // constants
    for (const v of [...g.initializers]) {
      if (newType.get(v) !== DataType.FLOAT16 || !v.initializer) continue;
      g.setInitializer(v, toFloat16(v.initializer, result));
    }
    for (const n of g.nodes) {
      if (kept.has(n)) continue;
      rewriteAttributes(n, result);
    }
    // declared types
    for (const v of g.ownValues()) {
      const t = newType.get(v);
      if (t === DataType.FLOAT16 && v.type?.kind === 'tensor') v.type = { ...v.type, dtype: DataType.FLOAT16 };
    }
    for (const v of g.inputs) {
      const t = newType.get(v);
      if (t === DataType.FLOAT16 && v.type?.kind === 'tensor') v.type = { ...v.type, dtype: DataType.FLOAT16 };
    }
  }

  // Casts where a reader needs the other type
  const castCache = new Map<Graph, Map<Value, Value>>();
  const castOf = (g: Graph, v: Value, to: DataType, before: Node | undefined): Value => {
    const inGraph = castCache.get(g) ?? new Map<Value, Value>();
    castCache.set(g, inGraph);
    const hit = inGraph.get(v);
    if (hit) return hit;
    const suffix = to === DataType.FLOAT16 ? 'float16' : 'float32';
    const c = g.addNode('Cast', [v], [`${v.name}_${suffix}`], { name: g.uniqueNodeName(`${v.name}/Cast_${suffix}`), attributes: { to: { type: 'int', value: to } }, ...(before ? { before } : {}) });
    const out = c.output(0);
    if (v.type?.kind === 'tensor') out.type = { ...v.type, dtype: to };
    else out.type = { kind: 'tensor', dtype: to, shape: undefined };
    newType.set(out, to);
    inGraph.set(v, out);
    result.casts++;
    return out;
  };
  for (const g of graphs) {
    for (const n of [...g.nodes]) {
      const any = ANY_TYPE_SLOTS.get(n.opType) ?? [];
      const f32 = FLOAT32_SLOTS.get(n.opType) ?? [];
      n.inputs.forEach((v, i) => {
        if (!v || !isFloat(v) || any.includes(i)) return;
        const want = kept.has(n) || f32.includes(i) ? DataType.FLOAT : DataType.FLOAT16;
        const have = newType.get(v) ?? DataType.FLOAT;
        if (have !== want) n.setInput(i, castOf(g, v, want, n));
      });
    }
    // outputs: float32 for the main graph with keep_io_types; float16 otherwise (subgraph
    // outputs must match their node's float16 outputs)
    g.outputs = g.outputs.map((v) => {
      if (!isFloat(v)) return v;
      const want = g === model.graph && keepIo ? DataType.FLOAT : DataType.FLOAT16;
      const have = newType.get(v) ?? DataType.FLOAT;
      if (have === want) return v;
      if (g !== model.graph) return castOf(g, v, want, undefined);
      // a main-graph output keeps its name: the float16 value is renamed, the Cast takes the name
      const name = v.name;
      g.renameValue(v, g.uniqueName(`${name}_${have === DataType.FLOAT16 ? 'float16' : 'float32'}`));
      // built by hand: addNode would rename the output when a subgraph (a merged decoder's If
      // branch) has a value of the same name
      const out = new Value(name);
      g.insertNode(new Node('Cast', { name: g.uniqueNodeName(`${name}/Cast`), inputs: [v], outputs: [out], attributes: { to: { type: 'int', value: want } } }));
      out.type = v.type?.kind === 'tensor' ? { ...v.type, dtype: want } : { kind: 'tensor', dtype: want, shape: undefined };
      if (v.type?.kind === 'tensor') v.type = { ...v.type, dtype: have };
      result.casts++;
      return out;
    });
  }
  for (const g of graphs) g.toposort();
  return result;
}

function* allGraphs(g: Graph): Generator<Graph> {
  yield g;
  for (const n of g.nodes) for (const sg of n.subgraphs()) yield* allGraphs(sg);
}

/** Constant values, ConstantOfShape fills, Cast targets and dtype attributes of a node that now runs in float16. */
function rewriteAttributes(n: Node, result: Float16Result): void {
  const set = (k: string, a: Attribute): void => void n.attributes.set(k, a);
  if (n.opType === 'Constant') {
    const value = n.attr('value');
    if (value?.type === 'tensor' && value.value.dtype === DataType.FLOAT) set('value', { type: 'tensor', value: toFloat16(value.value, result) });
    const one = n.attr('value_float');
    const many = n.attr('value_floats');
    if (one?.type === 'float') {
      n.attributes.delete('value_float');
      set('value', { type: 'tensor', value: toFloat16(Tensor.from('value', DataType.FLOAT, [], [one.value]), result) });
    } else if (many?.type === 'floats') {
      n.attributes.delete('value_floats');
      set('value', { type: 'tensor', value: toFloat16(Tensor.from('value', DataType.FLOAT, [many.value.length], many.value), result) });
    }
  } else if (n.opType === 'ConstantOfShape') {
    const value = n.attr('value');
    if (!value) set('value', { type: 'tensor', value: Tensor.from('value', DataType.FLOAT16, [1], [0]) });
    else if (value.type === 'tensor' && value.value.dtype === DataType.FLOAT) set('value', { type: 'tensor', value: toFloat16(value.value, result) });
  } else if (n.opType === 'Cast') {
    if (n.intAttr('to') === DataType.FLOAT) set('to', { type: 'int', value: DataType.FLOAT16 });
  } else if (['EyeLike', 'RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Bernoulli'].includes(n.opType)) {
    if (n.intAttr('dtype') === DataType.FLOAT) set('dtype', { type: 'int', value: DataType.FLOAT16 });
  }
}

/** A float32 tensor as float16 (round to nearest even), clamped to ±65504; counts what was clamped or flushed to 0. */
export function toFloat16(t: Tensor, result: Pick<Float16Result, 'tensors' | 'elements' | 'clamped' | 'flushed'>): Tensor {
  const src = t.toFloat32();
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    let x = src[i]!;
    if (x > FLOAT16_MAX && x !== Infinity) {
      x = FLOAT16_MAX;
      result.clamped++;
    } else if (x < -FLOAT16_MAX && x !== -Infinity) {
      x = -FLOAT16_MAX;
      result.clamped++;
    }
    const h = floatToFloat16Bits(x);
    if ((h & 0x7fff) === 0 && x !== 0) result.flushed++;
    out[i] = h;
  }
  result.tensors++;
  result.elements += src.length;
  const converted = Tensor.fromBytes(t.name, DataType.FLOAT16, t.dims, new Uint8Array(out.buffer));
  converted.docString = t.docString;
  return converted;
}
