import { UserError } from '../errors.js';
import type { Attribute } from '../ir/attribute.js';
import type { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Node } from '../ir/node.js';
import { Value, type Dim, type ValueType } from '../ir/value.js';
import {
  type IAttributeProto,
  type IGraphProto,
  type ITypeProto,
  type ModelProto,
  longToNumber,
  onnx,
} from './proto.js';
import { decodeTensor, type TensorDecodeContext } from './tensor-proto.js';

const A = onnx.AttributeProto.AttributeType;

/** ModelProto → Model. Every reference is resolved; a dangling name is a corrupt model. */
export function modelFromProto(p: ModelProto, ctx: TensorDecodeContext): Model {
  if (!p.graph) throw new UserError(`${ctx.file} is not an ONNX model (it has no graph)`);
  const m = new Model(graphFromProto(p.graph, undefined, ctx));
  m.irVersion = longToNumber(p.irVersion);
  m.opsetImports = new Map((p.opsetImport ?? []).map((o) => [o.domain ?? '', longToNumber(o.version)]));
  m.producerName = p.producerName ?? '';
  m.producerVersion = p.producerVersion ?? '';
  m.domain = p.domain ?? '';
  m.modelVersion = longToNumber(p.modelVersion);
  m.docString = p.docString ?? '';
  m.metadata = new Map((p.metadataProps ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  m.functions = (p.functions ?? []).map((f) => ({
    domain: f.domain ?? '',
    name: f.name ?? '',
    bytes: onnx.FunctionProto.encode(f).finish(),
  }));
  m.trainingInfo = (p.trainingInfo ?? []).map((t) => onnx.TrainingInfoProto.encode(t).finish());
  return m;
}

function graphFromProto(p: IGraphProto, parent: Graph | undefined, ctx: TensorDecodeContext): Graph {
  const g = new Graph(p.name ?? '');
  g.parent = parent;
  g.docString = p.docString ?? '';
  g.quantizationAnnotations = (p.quantizationAnnotation ?? []).map((a) => onnx.TensorAnnotation.encode(a).finish());
  const where = (what: string): string => `${what} in graph '${g.name}' of ${ctx.file}`;

  for (const vi of p.input ?? []) {
    const name = vi.name ?? '';
    if (g.hasOwnValue(name)) throw new UserError(where(`graph input '${name}' is listed twice`));
    const v = g.addInput(name, vi.type ? typeFromProto(vi.type) : undefined);
    v.docString = vi.docString ?? '';
  }
  for (const tp of p.initializer ?? []) {
    const t = decodeTensor(tp, ctx);
    // before IR 4, initializers were also listed as graph inputs: attach the data to that input
    const existing = g.hasOwnValue(t.name) ? g.value(t.name) : undefined;
    const v = existing ?? new Value(t.name);
    v.initializer = t;
    g.registerInitializer(v);
  }
  for (const sp of p.sparseInitializer ?? []) {
    const name = sp.values?.name ?? '';
    const v = g.hasOwnValue(name) ? g.value(name)! : new Value(name);
    v.sparseInitializer = onnx.SparseTensorProto.encode(sp).finish();
    g.registerInitializer(v);
  }
  // create all nodes and their outputs first: graphs need not be sorted
  const nodes: Node[] = [];
  for (const np of p.node ?? []) {
    const n = new Node(np.opType ?? '', { domain: np.domain ?? '', name: np.name ?? '' });
    n.docString = np.docString ?? '';
    for (const o of np.output ?? []) {
      if (o !== '' && g.hasOwnValue(o)) throw new UserError(where(`value '${o}' is defined twice (again by node '${n.name}')`));
      n.appendOutput(new Value(o));
    }
    g.insertNode(n);
    nodes.push(n);
  }
  const protoNodes = p.node ?? [];
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!;
    const np = protoNodes[i]!;
    for (const a of np.attribute ?? []) n.attributes.set(a.name ?? '', attributeFromProto(a, g, ctx, `the tensor of attribute '${a.name ?? ''}' of node '${n.name}' (${n.opType})`));
    for (const name of np.input ?? []) {
      if (name === '') {
        n.appendInput(undefined);
        continue;
      }
      const v = g.value(name);
      if (!v) throw new UserError(where(`node '${n.name}' (${n.opType}) reads '${name}', which no node, input or initializer defines`));
      n.appendInput(v);
    }
  }
  for (const vi of p.output ?? []) {
    const v = g.value(vi.name ?? '');
    if (!v) throw new UserError(where(`graph output '${vi.name}' is not produced by any node`));
    if (vi.type) v.type = typeFromProto(vi.type);
    g.outputs.push(v);
  }
  for (const vi of p.valueInfo ?? []) {
    const v = g.hasOwnValue(vi.name ?? '') ? g.value(vi.name ?? '') : undefined;
    if (v && vi.type) v.type = typeFromProto(vi.type);
  }
  return g;
}

export function typeFromProto(t: ITypeProto): ValueType {
  if (t.tensorType) {
    const shape = t.tensorType.shape
      ? (t.tensorType.shape.dim ?? []).map((d): Dim => {
          // decoded messages own only the fields present on the wire
          if (d.dimParam) return d.dimParam;
          if (Object.prototype.hasOwnProperty.call(d, 'dimValue')) return longToNumber(d.dimValue);
          return null;
        })
      : undefined;
    return { kind: 'tensor', dtype: (t.tensorType.elemType ?? 0) as DataType, shape };
  }
  return { kind: 'opaque', bytes: onnx.TypeProto.encode(t).finish() };
}

function attributeFromProto(a: IAttributeProto, g: Graph, ctx: TensorDecodeContext, label: string): Attribute {
  const extra: Pick<Attribute, 'refAttrName' | 'docString'> = {};
  if (a.refAttrName) extra.refAttrName = a.refAttrName;
  if (a.docString) extra.docString = a.docString;
  const type = a.type || inferAttributeType(a);
  switch (type) {
    case A.FLOAT:
      return { type: 'float', value: a.f ?? 0, ...extra };
    case A.INT:
      return { type: 'int', value: longToNumber(a.i), ...extra };
    case A.STRING:
      return { type: 'string', value: a.s ?? new Uint8Array(), ...extra };
    case A.TENSOR:
      return { type: 'tensor', value: decodeTensor(a.t ?? {}, ctx, label), ...extra };
    case A.GRAPH:
      return { type: 'graph', value: graphFromProto(a.g ?? {}, g, ctx), ...extra };
    case A.FLOATS:
      return { type: 'floats', value: [...(a.floats ?? [])], ...extra };
    case A.INTS:
      return { type: 'ints', value: (a.ints ?? []).map((x) => longToNumber(x)), ...extra };
    case A.STRINGS:
      return { type: 'strings', value: [...(a.strings ?? [])], ...extra };
    case A.TENSORS:
      return { type: 'tensors', value: (a.tensors ?? []).map((t, i) => decodeTensor(t, ctx, `${label.replace('the tensor', `tensor ${i}`)}`)), ...extra };
    case A.GRAPHS:
      return { type: 'graphs', value: (a.graphs ?? []).map((x) => graphFromProto(x, g, ctx)), ...extra };
    default:
      return { type: 'opaque', value: onnx.AttributeProto.encode(a).finish(), ...extra };
  }
}

/** Files written before IR 2 may leave `type` unset; the filled field tells. */
function inferAttributeType(a: IAttributeProto): number {
  if (a.floats?.length) return A.FLOATS;
  if (a.ints?.length) return A.INTS;
  if (a.strings?.length) return A.STRINGS;
  if (a.tensors?.length) return A.TENSORS;
  if (a.graphs?.length) return A.GRAPHS;
  if (a.t) return A.TENSOR;
  if (a.g) return A.GRAPH;
  if (a.s?.length) return A.STRING;
  if (a.i !== undefined && a.i !== null && longToNumber(a.i) !== 0) return A.INT;
  return A.FLOAT;
}
