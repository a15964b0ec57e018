// Cuts a piece of a model out as a model of its own: everything between some values (a block's
// input, say) and others (its output). Tensors the piece reads from before its inputs become
// extra inputs ("side inputs": an attention mask, the model input a shape is read from).
import { UserError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Node } from '../ir/node.js';
import { type Dim, Value } from '../ir/value.js';
import { inferTypes, isFloat, type TensorInfo } from './infer.js';

export interface SubgraphSpec {
  /** Values the piece starts from (they become its first inputs, in this order). */
  inputs: readonly string[];
  /** Values it computes (its outputs, in this order). */
  outputs: readonly string[];
}

export interface Subgraph {
  model: Model;
  /** All inputs of the piece: the given ones, then the side inputs. */
  inputs: string[];
  /** Values computed before the given inputs (or model inputs) that the piece also reads. */
  sideInputs: string[];
}

/**
 * Extracts the nodes that lie between `inputs` and `outputs`. A float value computed upstream
 * of the inputs and read by the piece becomes a side input; an integer one (shape arithmetic)
 * is recomputed inside the piece instead, back to model inputs or float values, so the piece
 * stays valid for any batch size. Constants are shared, not copied. The source is not changed.
 */
export function extractSubgraph(model: Model, spec: SubgraphSpec, types?: Map<Value, TensorInfo>): Subgraph {
  const g = model.graph;
  const find = (name: string): Value => {
    const v = g.value(name);
    if (!v) throw new UserError(`${model.sourcePath ?? 'the model'} has no tensor named '${name}'`);
    return v;
  };
  const inputs = spec.inputs.map(find);
  const outputs = spec.outputs.map(find);
  const info = types ?? inferTypes(g);
  const boundary = new Set(inputs);
  const upstream = ancestorNodes(inputs);
  // values computed from constants alone (Constant nodes, an Identity of a shared initializer
  // as torch writes them) are copied into the piece rather than fed to it
  const constants = new Map<Value, boolean>();
  const constantExpression = (v: Value): boolean => {
    const known = constants.get(v);
    if (known !== undefined) return known;
    constants.set(v, false);
    const p = v.producer();
    const result = v.initializer !== undefined || (p !== undefined && p.owner === g && p.subgraphs().length === 0 && p.inputs.every((x) => !x || constantExpression(x)) && !boundary.has(v));
    constants.set(v, result);
    return result;
  };

  const nodes = new Set<Node>();
  const side = new Set<Value>();
  const stack = [...outputs];
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (boundary.has(v) || v.initializer || side.has(v)) continue;
    const p = v.producer();
    if (!p || p.owner !== g) {
      side.add(v); // a model input
      continue;
    }
    if (nodes.has(p)) continue;
    const dt = info.get(v)?.dtype;
    if (upstream.has(p) && !constantExpression(v) && (dt === undefined || isFloat(dt))) {
      side.add(v);
      continue;
    }
    if (p.subgraphs().length > 0) throw new UserError(`cannot extract node '${p.name}' (${p.opType}): nodes with subgraphs are not supported`);
    nodes.add(p);
    for (const x of p.inputs) if (x) stack.push(x);
  }
  for (const v of outputs) if (boundary.has(v)) throw new UserError(`'${v.name}' is both an input and an output of the piece to extract`);

  const sub = new Graph(`${g.name}_piece`);
  const map = new Map<Value, Value>();
  const sideList = [...side].sort((a, b) => a.name.localeCompare(b.name));
  for (const v of [...inputs, ...sideList]) {
    const i = info.get(v) ?? {};
    map.set(v, sub.addInput(v.name, { kind: 'tensor', dtype: i.dtype ?? v.dtype ?? DataType.FLOAT, shape: declaredShape(i.shape ?? v.shape) }));
  }
  const lookup = (v: Value | undefined): Value | undefined => {
    if (!v) return undefined;
    const known = map.get(v);
    if (known) return known;
    if (v.initializer) {
      const c = sub.addInitializer(v.initializer);
      map.set(v, c);
      return c;
    }
    throw new Error(`extract: '${v.name}' is read before it is defined`);
  };
  for (const p of g.topologicalOrder()) {
    if (!nodes.has(p)) continue;
    const n = new Node(p.opType, { domain: p.domain, name: p.name });
    n.overload = p.overload;
    for (const [k, a] of p.attributes) n.attributes.set(k, a);
    for (const o of p.outputs) {
      const c = new Value(o.name, o.type);
      n.appendOutput(c);
      map.set(o, c);
    }
    sub.insertNode(n);
    for (const x of p.inputs) n.appendInput(lookup(x));
  }
  sub.outputs = outputs.map((v) => {
    const c = map.get(v)!;
    const i = info.get(v);
    if (!c.type && i?.dtype !== undefined) c.type = { kind: 'tensor', dtype: i.dtype, shape: declaredShape(i.shape) };
    return c;
  });
  const m = new Model(sub);
  m.irVersion = model.irVersion;
  m.opsetImports = new Map(model.opsetImports);
  m.functions = [...model.functions];
  m.producerName = model.producerName;
  m.producerVersion = model.producerVersion;
  m.sourcePath = model.sourcePath;
  return { model: m, inputs: [...inputs, ...sideList].map((v) => v.name), sideInputs: sideList.map((v) => v.name) };
}

/** Nodes upstream of the values (their producers and everything those read). */
function ancestorNodes(values: Value[]): Set<Node> {
  const out = new Set<Node>();
  const stack = [...values];
  while (stack.length > 0) {
    const p = stack.pop()!.producer();
    if (!p || out.has(p)) continue;
    out.add(p);
    for (const x of p.inputs) if (x) stack.push(x);
  }
  return out;
}

/** Dims as declared on an extracted input: the batch axis left symbolic, unknown dims unnamed. */
function declaredShape(shape: Dim[] | undefined): Dim[] | undefined {
  if (!shape) return undefined;
  return shape.map((d, i) => (i === 0 && typeof d === 'number' && shape.length > 1 ? 'batch' : d));
}

/**
 * Declares the dims of graph inputs whose shape is not known (or only partly) from example
 * tensors: the first axis stays symbolic (a batch) unless `batched` is false, the others take
 * the example's sizes.
 */
export function declareInputShapes(model: Model, dims: Readonly<Record<string, readonly number[]>>, batched = true): void {
  for (const v of model.graph.inputs) {
    const d = dims[v.name];
    if (!d || v.type?.kind !== 'tensor') continue;
    const known = v.type.shape;
    if (known && known.length === d.length && known.every((x) => x !== null)) continue;
    const shape: Dim[] = d.map((n, i) => (known && known.length === d.length && known[i] !== null ? known[i]! : batched && i === 0 && d.length > 1 ? 'batch' : n));
    v.type = { ...v.type, shape };
  }
}
