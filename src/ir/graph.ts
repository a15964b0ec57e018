import type { Attribute } from './attribute.js';
import { Node } from './node.js';
import type { Tensor } from './tensor.js';
import { Value, type ValueType } from './value.js';

/**
 * A computation graph. Nodes are kept in a list that is not required to be in topological
 * order while a pass rewires things; call toposort() (or the cleanup pass) afterwards.
 * Values are found by name; a subgraph (If/Loop/Scan body) also sees its parent's values.
 */
export class Graph {
  name: string;
  docString = '';
  inputs: Value[] = [];
  outputs: Value[] = [];
  /** Encoded TensorAnnotation messages (quantization_annotation), kept as they were. */
  quantizationAnnotations: Uint8Array[] = [];
  /** The graph whose node holds this one in an attribute, for subgraphs. */
  parent: Graph | undefined;
  private nodeList: Node[] = [];
  private readonly initializerList: Value[] = [];
  private readonly byName = new Map<string, Value>();
  private nameCounter = 0;

  constructor(name = 'graph') {
    this.name = name;
  }

  get nodes(): readonly Node[] {
    return this.nodeList;
  }

  /** Values that hold constant data (initializers and sparse initializers), in file order. */
  get initializers(): readonly Value[] {
    return this.initializerList;
  }

  /** The value of that name here or, for a subgraph, in an enclosing graph. */
  value(name: string): Value | undefined {
    return this.byName.get(name) ?? this.parent?.value(name);
  }

  /** Values named in this graph itself (inputs, initializers, node outputs). */
  ownValues(): IterableIterator<Value> {
    return this.byName.values();
  }

  hasOwnValue(name: string): boolean {
    return this.byName.has(name);
  }

  /** A name not used in this graph or its enclosing graphs, derived from `base`. */
  uniqueName(base: string): string {
    if (!this.value(base) && !this.takenInChildren(base)) return base;
    for (;;) {
      const candidate = `${base}_${++this.nameCounter}`;
      if (!this.value(candidate) && !this.takenInChildren(candidate)) return candidate;
    }
  }

  private takenInChildren(name: string): boolean {
    for (const n of this.nodeList) for (const g of n.subgraphs()) if (g.hasOwnValue(name) || g.takenInChildren(name)) return true;
    return false;
  }

  /** @internal Registers a value under its name in this graph. */
  adoptValue(value: Value): void {
    if (value.name === '') return; // unnamed optional outputs are not referable
    const existing = this.byName.get(value.name);
    if (existing && existing !== value) throw new Error(`graph '${this.name}' already has a value named '${value.name}'`);
    this.byName.set(value.name, value);
    value.graph = this;
  }

  renameValue(value: Value, newName: string): void {
    if (value.name === newName) return;
    if (this.byName.get(value.name) === value) this.byName.delete(value.name);
    value.name = newName;
    if (value.initializer) value.initializer.name = newName;
    this.adoptValue(value);
  }

  addInput(name: string, type?: ValueType): Value {
    const v = new Value(name, type);
    this.adoptValue(v);
    this.inputs.push(v);
    return v;
  }

  /** Adds a constant; the value takes the tensor's name (made unique if needed). */
  addInitializer(tensor: Tensor): Value {
    const name = this.byName.has(tensor.name) ? this.uniqueName(tensor.name) : tensor.name;
    const t = name === tensor.name ? tensor : tensor.withName(name);
    const v = new Value(name);
    v.initializer = t;
    this.adoptValue(v);
    this.initializerList.push(v);
    return v;
  }

  /** @internal Registers an existing value as a (sparse) initializer, used by the loader. */
  registerInitializer(value: Value): void {
    this.adoptValue(value);
    this.initializerList.push(value);
  }

  /** Replaces the constant data of an initializer value (shape and type may change). */
  setInitializer(value: Value, tensor: Tensor): void {
    if (!this.initializerList.includes(value)) throw new Error(`'${value.name}' is not an initializer of graph '${this.name}'`);
    value.initializer = tensor.name === value.name ? tensor : tensor.withName(value.name);
  }

  removeInitializer(value: Value): void {
    if (value.uses().length > 0) throw new Error(`initializer '${value.name}' is still used by node '${value.uses()[0]!.node.name}'`);
    const i = this.initializerList.indexOf(value);
    if (i >= 0) this.initializerList.splice(i, 1);
    if (!this.inputs.includes(value) && this.byName.get(value.name) === value) this.byName.delete(value.name);
    value.initializer = undefined;
    value.sparseInitializer = undefined;
  }

  /**
   * Creates a node and inserts it (at the end, or before/after a given node). `outputs` gives
   * output names (made unique) or a count of outputs to name after the node.
   */
  addNode(
    opType: string,
    inputs: (Value | undefined)[],
    outputs: string[] | number = 1,
    options: { name?: string; domain?: string; attributes?: Record<string, Attribute>; before?: Node; after?: Node } = {},
  ): Node {
    const name = options.name ?? this.uniqueNodeName(opType);
    const outNames = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`) : outputs;
    const node = new Node(opType, { domain: options.domain, name, inputs, attributes: options.attributes });
    for (const n of outNames) node.appendOutput(new Value(this.uniqueName(n)));
    this.insertNode(node, options);
    return node;
  }

  uniqueNodeName(base: string): string {
    const names = new Set(this.nodeList.map((n) => n.name));
    if (!names.has(base)) return base;
    let i = 1;
    while (names.has(`${base}_${i}`)) i++;
    return `${base}_${i}`;
  }

  /** Inserts a node built elsewhere (its inputs must be visible from this graph). */
  insertNode(node: Node, where: { before?: Node; after?: Node } = {}): void {
    if (node.owner) throw new Error(`node '${node.name}' already belongs to graph '${node.owner.name}'`);
    node.owner = this;
    for (const v of node.outputs) this.adoptValue(v);
    let at = this.nodeList.length;
    if (where.before) at = this.indexOfNode(where.before);
    else if (where.after) at = this.indexOfNode(where.after) + 1;
    this.nodeList.splice(at, 0, node);
  }

  private indexOfNode(node: Node): number {
    const i = this.nodeList.indexOf(node);
    if (i < 0) throw new Error(`node '${node.name}' is not in graph '${this.name}'`);
    return i;
  }

  /**
   * Removes a node. Its outputs must be unused (rewire first), unless `force` is set, in which
   * case readers are left reading a value with no producer.
   */
  removeNode(node: Node, force = false): void {
    const i = this.indexOfNode(node);
    if (!force) {
      for (const v of node.outputs) {
        if (v.uses().length > 0) throw new Error(`cannot remove node '${node.name}': its output '${v.name}' is read by '${v.uses()[0]!.node.name}'`);
        if (this.outputs.includes(v)) throw new Error(`cannot remove node '${node.name}': its output '${v.name}' is a graph output`);
      }
    }
    this.nodeList.splice(i, 1);
    node.clearInputs();
    for (const v of node.outputs) {
      if (this.byName.get(v.name) === v && v.uses().length === 0 && !this.outputs.includes(v)) this.byName.delete(v.name);
    }
    node.owner = undefined;
  }

  /** Values from enclosing graphs that nodes inside `node`'s subgraphs read. */
  static implicitInputs(node: Node): Value[] {
    const out = new Set<Value>();
    const visit = (g: Graph): void => {
      for (const n of g.nodeList) {
        for (const v of n.inputs) if (v && v.graph !== g && !isInside(v.graph, g)) out.add(v);
        for (const sg of n.subgraphs()) visit(sg);
      }
    };
    for (const g of node.subgraphs()) visit(g);
    // keep only values that live outside the node's own subgraphs
    return [...out].filter((v) => !node.subgraphs().some((g) => isInside(v.graph, g)));
  }

  /**
   * Orders nodes so every node comes after the producers of its inputs (stable: the existing
   * order is kept where it is already valid). Throws on a cycle, naming a node in it.
   */
  toposort(): void {
    this.nodeList = this.topologicalOrder();
    for (const n of this.nodeList) for (const g of n.subgraphs()) g.toposort();
  }

  /** The nodes in topological order, without changing the graph. */
  topologicalOrder(): Node[] {
    const nodes = this.nodeList;
    const deps = new Map<Node, Set<Node>>();
    const readers = new Map<Node, Node[]>();
    for (const n of nodes) {
      const d = new Set<Node>();
      for (const v of [...n.inputs, ...Graph.implicitInputs(n)]) {
        const p = v?.producer();
        if (p && p.owner === this && p !== n) d.add(p);
      }
      deps.set(n, d);
      for (const p of d) {
        const r = readers.get(p) ?? [];
        r.push(n);
        readers.set(p, r);
      }
    }
    const pending = new Map<Node, number>();
    for (const n of nodes) pending.set(n, deps.get(n)!.size);
    const order: Node[] = [];
    const position = new Map(nodes.map((n, i) => [n, i]));
    // a min-heap on original position would be O(n log n); a sorted ready list is fine for
    // graphs of a few thousand nodes and keeps the original order where possible
    const ready: Node[] = nodes.filter((n) => pending.get(n) === 0);
    while (ready.length > 0) {
      const n = ready.shift()!;
      order.push(n);
      for (const r of readers.get(n) ?? []) {
        const left = pending.get(r)! - 1;
        pending.set(r, left);
        if (left === 0) insertSorted(ready, r, position);
      }
    }
    if (order.length !== nodes.length) {
      const stuck = nodes.find((n) => pending.get(n)! > 0)!;
      throw new Error(`graph '${this.name}' has a cycle through node '${stuck.name}' (${stuck.opType})`);
    }
    return order;
  }

  /** Removes nodes whose outputs reach no graph output. Returns how many were removed. */
  removeDeadNodes(): number {
    const live = new Set<Node>();
    const stack: Value[] = [...this.outputs];
    while (stack.length > 0) {
      const v = stack.pop()!;
      const p = v.producer();
      if (!p || p.owner !== this || live.has(p)) continue;
      live.add(p);
      for (const i of p.inputs) if (i) stack.push(i);
      for (const i of Graph.implicitInputs(p)) stack.push(i);
    }
    let removed = 0;
    for (const n of [...this.nodeList].reverse()) {
      if (!live.has(n)) {
        this.removeNode(n, true);
        removed++;
      }
    }
    for (const n of this.nodeList) for (const g of n.subgraphs()) removed += g.removeDeadNodes();
    return removed;
  }

  /** Removes initializers no node reads and that are not graph outputs. Returns their names. */
  removeUnusedInitializers(): string[] {
    const removed: string[] = [];
    for (const v of [...this.initializerList]) {
      if (v.uses().length === 0 && !this.outputs.includes(v) && !this.inputs.includes(v)) {
        this.removeInitializer(v);
        removed.push(v.name);
      }
    }
    for (const n of this.nodeList) for (const g of n.subgraphs()) removed.push(...g.removeUnusedInitializers());
    return removed;
  }

  /** All nodes of this graph and its subgraphs, depth first. */
  *allNodes(): Generator<Node> {
    for (const n of this.nodeList) {
      yield n;
      for (const g of n.subgraphs()) yield* g.allNodes();
    }
  }
}

function isInside(g: Graph | undefined, root: Graph): boolean {
  for (let x = g; x; x = x.parent) if (x === root) return true;
  return false;
}

function insertSorted(list: Node[], n: Node, position: Map<Node, number>): void {
  const p = position.get(n)!;
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (position.get(list[mid]!)! < p) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, n);
}
