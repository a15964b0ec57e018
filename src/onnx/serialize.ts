import type { Attribute } from '../ir/attribute.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import type { Value, ValueType } from '../ir/value.js';
import { type IAttributeProto, type IModelProto, type IGraphProto, type INodeProto, type ITypeProto, type IValueInfoProto, onnx, toLong } from './proto.js';
import { encodeTensorInline } from './tensor-proto.js';

const A = onnx.AttributeProto.AttributeType;

/** Model → ModelProto fields other than `graph` (the writer streams the graph itself). */
export function modelHeaderToProto(m: Model): IModelProto {
  return {
    irVersion: toLong(m.irVersion) as number,
    opsetImport: [...m.opsetImports].map(([domain, version]) => ({ domain, version: toLong(version) as number })),
    producerName: m.producerName,
    producerVersion: m.producerVersion,
    domain: m.domain,
    modelVersion: toLong(m.modelVersion) as number,
    docString: m.docString,
    metadataProps: [...m.metadata].map(([key, value]) => ({ key, value })),
    trainingInfo: m.trainingInfo.map((b) => onnx.TrainingInfoProto.decode(b)),
    functions: m.functions.map((f) => onnx.FunctionProto.decode(f.bytes)),
  };
}

/**
 * Graph → GraphProto. With `withInitializers` false the top-level initializers are left out so
 * the writer can stream their bytes; subgraphs always carry theirs inline.
 */
export function graphToProto(g: Graph, withInitializers: boolean): IGraphProto {
  const declared = new Set<Value>([...g.inputs, ...g.outputs]);
  const valueInfo: IValueInfoProto[] = [];
  for (const n of g.nodes) {
    for (const v of n.outputs) if (v.type && v.name && !declared.has(v)) valueInfo.push(valueInfoToProto(v));
  }
  const p: IGraphProto = {
    name: g.name,
    docString: g.docString,
    node: g.nodes.map(nodeToProto),
    input: g.inputs.map(valueInfoToProto),
    output: g.outputs.map(valueInfoToProto),
    valueInfo,
    quantizationAnnotation: g.quantizationAnnotations.map((b) => onnx.TensorAnnotation.decode(b)),
    sparseInitializer: g.initializers.filter((v) => v.sparseInitializer).map((v) => onnx.SparseTensorProto.decode(v.sparseInitializer!)),
  };
  if (withInitializers) {
    p.initializer = g.initializers.filter((v) => v.initializer).map((v) => encodeTensorInline(v.initializer!));
  }
  return p;
}

function valueInfoToProto(v: Value): IValueInfoProto {
  const p: IValueInfoProto = { name: v.name };
  if (v.docString) p.docString = v.docString;
  if (v.type) p.type = typeToProto(v.type);
  else if (v.initializer) p.type = typeToProto({ kind: 'tensor', dtype: v.initializer.dtype, shape: [...v.initializer.dims] });
  return p;
}

function typeToProto(t: ValueType): ITypeProto {
  if (t.kind === 'opaque') return onnx.TypeProto.decode(t.bytes);
  const tensorType: ITypeProto['tensorType'] = { elemType: t.dtype };
  if (t.shape) {
    tensorType.shape = {
      dim: t.shape.map((d) => (typeof d === 'number' ? { dimValue: toLong(d) as number } : typeof d === 'string' ? { dimParam: d } : {})),
    };
  }
  return { tensorType };
}

function nodeToProto(n: Node): INodeProto {
  const p: INodeProto = {
    opType: n.opType,
    name: n.name,
    input: n.inputs.map((v) => v?.name ?? ''),
    output: n.outputs.map((v) => v.name),
    attribute: [...n.attributes].map(([name, a]) => attributeToProto(name, a)),
  };
  if (n.domain) p.domain = n.domain;
  if (n.docString) p.docString = n.docString;
  return p;
}

function attributeToProto(name: string, a: Attribute): IAttributeProto {
  if (a.type === 'opaque') return { ...onnx.AttributeProto.decode(a.value), name };
  const p: IAttributeProto = { name };
  if (a.refAttrName) p.refAttrName = a.refAttrName;
  if (a.docString) p.docString = a.docString;
  switch (a.type) {
    case 'float':
      return { ...p, type: A.FLOAT, f: a.value };
    case 'int':
      return { ...p, type: A.INT, i: toLong(a.value) as number };
    case 'string':
      return { ...p, type: A.STRING, s: a.value };
    case 'tensor':
      return { ...p, type: A.TENSOR, t: encodeTensorInline(a.value) };
    case 'graph':
      return { ...p, type: A.GRAPH, g: graphToProto(a.value, true) };
    case 'floats':
      return { ...p, type: A.FLOATS, floats: a.value };
    case 'ints':
      return { ...p, type: A.INTS, ints: a.value.map((x) => toLong(x) as number) };
    case 'strings':
      return { ...p, type: A.STRINGS, strings: a.value };
    case 'tensors':
      return { ...p, type: A.TENSORS, tensors: a.value.map(encodeTensorInline) };
    case 'graphs':
      return { ...p, type: A.GRAPHS, graphs: a.value.map((g) => graphToProto(g, true)) };
  }
}
