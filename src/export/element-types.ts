// Element types of every tensor of a graph (and of its subgraphs), from the types the file
// declares and the operators' type rules. A precision rewrite (float32 -> float16) needs to know
// which values are float tensors even where the exporter wrote no value_info.
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';

const INT64_OUT = new Set(['Shape', 'Size', 'NonZero', 'ArgMax', 'ArgMin']);
const BOOL_OUT = new Set(['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);
const INT32_OUT = new Set(['MatMulInteger', 'ConvInteger']);

/**
 * The element type of each value of `graph` and its subgraphs whose type is declared or follows
 * from a rule; values missing from the map are of unknown type. Nodes are visited in topological
 * order; an operator without a rule of its own gives every output the type of its first typed
 * input (elementwise ops, reductions and data movement all do).
 */
export function inferElementTypes(graph: Graph, into = new Map<Value, DataType>()): Map<Value, DataType> {
  const declared = (v: Value): void => {
    const t = v.dtype;
    if (t !== undefined && t !== DataType.UNDEFINED) into.set(v, t);
  };
  graph.inputs.forEach(declared);
  graph.initializers.forEach(declared);
  for (const node of graph.topologicalOrder()) {
    for (const sg of node.subgraphs()) inferElementTypes(sg, into);
    const rule = outputTypes(node, (v) => (v ? into.get(v) : undefined));
    node.outputs.forEach((o, i) => {
      const t = o.dtype ?? rule[i];
      if (t !== undefined && t !== DataType.UNDEFINED) into.set(o, t);
    });
  }
  return into;
}

function outputTypes(node: Node, type: (v: Value | undefined) => DataType | undefined): (DataType | undefined)[] {
  const op = node.opType;
  const n = node.outputs.length;
  const all = (t: DataType | undefined): (DataType | undefined)[] => new Array(n).fill(t);
  const attrTensorType = (name: string): DataType | undefined => {
    const a = node.attr(name);
    return a?.type === 'tensor' ? a.value.dtype : undefined;
  };
  switch (op) {
    case 'Constant': {
      const t = attrTensorType('value');
      if (t !== undefined) return [t];
      if (node.attr('value_float') || node.attr('value_floats')) return [DataType.FLOAT];
      if (node.attr('value_int') || node.attr('value_ints')) return [DataType.INT64];
      if (node.attr('value_string') || node.attr('value_strings')) return [DataType.STRING];
      return [undefined];
    }
    case 'Cast':
      return [node.intAttr('to') as DataType | undefined];
    case 'CastLike':
      return [type(node.input(1))];
    case 'ConstantOfShape':
      return [attrTensorType('value') ?? DataType.FLOAT];
    case 'EyeLike':
    case 'RandomNormalLike':
    case 'RandomUniformLike':
    case 'Bernoulli':
      return [(node.intAttr('dtype') as DataType | undefined) ?? type(node.input(0))];
    case 'RandomNormal':
    case 'RandomUniform':
      return [(node.intAttr('dtype') as DataType | undefined) ?? DataType.FLOAT];
    case 'Where':
      return [type(node.input(1)) ?? type(node.input(2))];
    case 'TopK':
      return [type(node.input(0)), DataType.INT64];
    case 'Dropout':
      return [type(node.input(0)), DataType.BOOL];
    case 'LayerNormalization':
      // mean and inverse standard deviation are of the stash type (float32 unless set)
      return [type(node.input(0)), (node.intAttr('stash_type') as DataType | undefined) ?? DataType.FLOAT, (node.intAttr('stash_type') as DataType | undefined) ?? DataType.FLOAT];
    case 'QuantizeLinear':
      return [type(node.input(2)) ?? DataType.UINT8];
    case 'DequantizeLinear':
      return [type(node.input(1))];
    case 'DynamicQuantizeLinear':
      return [DataType.UINT8, DataType.FLOAT, DataType.UINT8];
    case 'GatherBlockQuantized':
      return [type(node.input(2))];
    case 'OneHot':
      return [type(node.input(2))];
    case 'If': {
      const g = node.attr('then_branch');
      return g?.type === 'graph' ? g.value.outputs.map((o) => o.dtype ?? type(o)) : all(undefined);
    }
    case 'Loop': {
      const g = node.attr('body');
      // body outputs: condition, then carried values and scan outputs, as the node's outputs
      return g?.type === 'graph' ? g.value.outputs.slice(1).map((o) => o.dtype ?? type(o)) : all(undefined);
    }
    case 'Scan': {
      const g = node.attr('body');
      return g?.type === 'graph' ? g.value.outputs.map((o) => o.dtype ?? type(o)) : all(undefined);
    }
  }
  if (INT64_OUT.has(op)) return all(DataType.INT64);
  if (BOOL_OUT.has(op)) return all(DataType.BOOL);
  if (INT32_OUT.has(op)) return all(DataType.INT32);
  return all(node.inputs.map(type).find((t) => t !== undefined));
}
