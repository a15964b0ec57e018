import { Graph } from './graph.js';
import { Node } from './node.js';
import type { Attribute } from './attribute.js';
import { Value } from './value.js';

/** A function defined in the model (FunctionProto), kept encoded: passes do not edit them. */
export interface OpaqueFunction {
  domain: string;
  name: string;
  bytes: Uint8Array;
}

/** A whole ONNX model: the main graph plus what the file says about it. */
export class Model {
  graph: Graph;
  irVersion = 8;
  /** Operator set version per domain ('' is the default ONNX domain). */
  opsetImports = new Map<string, number>([['', 17]]);
  producerName = '';
  producerVersion = '';
  domain = '';
  modelVersion = 0;
  docString = '';
  /** metadata_props, in file order. */
  metadata = new Map<string, string>();
  functions: OpaqueFunction[] = [];
  /** Encoded TrainingInfoProto messages, kept as they were. */
  trainingInfo: Uint8Array[] = [];
  /** The file the model was loaded from, for messages and for resolving external data. */
  sourcePath: string | undefined;
  /** True when the file kept weights in external data; saving then does the same by default. */
  loadedWithExternalData = false;

  constructor(graph: Graph = new Graph()) {
    this.graph = graph;
  }

  /** Version of the default ONNX operator set. */
  get opset(): number {
    return this.opsetImports.get('') ?? this.opsetImports.get('ai.onnx') ?? 0;
  }

  /**
   * A deep copy of the structure. Tensor data is shared, not copied: tensors are immutable
   * and passes replace an initializer's tensor rather than writing into it.
   */
  clone(): Model {
    const m = new Model(cloneGraph(this.graph, undefined));
    m.irVersion = this.irVersion;
    m.opsetImports = new Map(this.opsetImports);
    m.producerName = this.producerName;
    m.producerVersion = this.producerVersion;
    m.domain = this.domain;
    m.modelVersion = this.modelVersion;
    m.docString = this.docString;
    m.metadata = new Map(this.metadata);
    m.functions = [...this.functions];
    m.trainingInfo = [...this.trainingInfo];
    m.sourcePath = this.sourcePath;
    m.loadedWithExternalData = this.loadedWithExternalData;
    return m;
  }

  /** Number of parameters: elements of all floating-point and integer initializers. */
  parameterCount(): number {
    let n = 0;
    for (const v of this.graph.initializers) if (v.initializer) n += v.initializer.size;
    return n;
  }
}

function cloneGraph(src: Graph, parent: Graph | undefined): Graph {
  const g = new Graph(src.name);
  g.parent = parent;
  g.docString = src.docString;
  g.quantizationAnnotations = [...src.quantizationAnnotations];
  const map = new Map<Value, Value>();
  const copyValue = (v: Value): Value => {
    const c = new Value(v.name, v.type);
    c.docString = v.docString;
    c.initializer = v.initializer;
    c.sparseInitializer = v.sparseInitializer;
    map.set(v, c);
    return c;
  };
  for (const v of src.inputs) {
    const c = copyValue(v);
    g.adoptValue(c);
    g.inputs.push(c);
  }
  for (const v of src.initializers) {
    const c = map.get(v) ?? copyValue(v);
    g.registerInitializer(c);
  }
  const lookup = (v: Value | undefined): Value | undefined => {
    if (!v) return undefined;
    const c = map.get(v);
    if (c) return c;
    // a value from an enclosing graph: the enclosing clone registered it under the same name
    const outer = parent?.value(v.name);
    if (!outer) throw new Error(`clone: value '${v.name}' is read before it is defined`);
    return outer;
  };
  // values produced later in the list may be read earlier (graphs need not be sorted), so
  // create every output first, then link inputs
  for (const n of src.nodes) for (const o of n.outputs) copyValue(o);
  for (const n of src.nodes) {
    const attrs: Record<string, Attribute> = {};
    const c = new Node(n.opType, { domain: n.domain, name: n.name, outputs: n.outputs.map((o) => map.get(o)!) });
    c.docString = n.docString;
    c.overload = n.overload;
    g.insertNode(c);
    for (const [k, a] of n.attributes) {
      if (a.type === 'graph') attrs[k] = { ...a, value: cloneGraph(a.value, g) };
      else if (a.type === 'graphs') attrs[k] = { ...a, value: a.value.map((x) => cloneGraph(x, g)) };
      else attrs[k] = a;
      c.attributes.set(k, attrs[k]!);
    }
  }
  for (let i = 0; i < src.nodes.length; i++) {
    const n = src.nodes[i]!;
    const c = g.nodes[i]!;
    for (const v of n.inputs) c.appendInput(lookup(v));
  }
  g.outputs = src.outputs.map((v) => lookup(v)!);
  return g;
}
