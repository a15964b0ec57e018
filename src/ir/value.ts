import type { DataType } from './dtype.js';
import type { Graph } from './graph.js';
import type { Node } from './node.js';
import type { Tensor } from './tensor.js';

/** One dimension: a size, a symbolic name ("batch"), or unknown. */
export type Dim = number | string | null;

export type ValueType =
  | { kind: 'tensor'; dtype: DataType; shape: Dim[] | undefined }
  /** Sequence, map, optional and sparse types: kept as encoded TypeProto bytes. */
  | { kind: 'opaque'; bytes: Uint8Array };

export interface Use {
  node: Node;
  /** Input slot of `node` that reads the value. */
  index: number;
}

/**
 * A named value in a graph: a graph input, an initializer, or a node output. Def-use links
 * (producer, uses) are maintained by Node and Graph methods; do not edit them directly.
 */
export class Value {
  name: string;
  type: ValueType | undefined;
  docString = '';
  /** The graph that owns the value (where its producer, initializer or input lives). */
  graph: Graph | undefined;
  /** Constant data when the value is an initializer. */
  initializer: Tensor | undefined;
  /** Encoded SparseTensorProto when the value is a sparse initializer. */
  sparseInitializer: Uint8Array | undefined;
  /** Free-form data for passes; never serialized. */
  readonly meta = new Map<string, unknown>();
  /** @internal */ producerNode: Node | undefined;
  /** @internal */ producerIndex = -1;
  /** @internal */ readonly useList: Use[] = [];

  constructor(name: string, type?: ValueType) {
    this.name = name;
    this.type = type;
  }

  producer(): Node | undefined {
    return this.producerNode;
  }

  /** Index of this value among its producer's outputs (-1 when not produced by a node). */
  outputIndex(): number {
    return this.producerIndex;
  }

  uses(): readonly Use[] {
    return this.useList;
  }

  /** Nodes that read the value, each once. */
  consumers(): Node[] {
    return [...new Set(this.useList.map((u) => u.node))];
  }

  isConstant(): boolean {
    return this.initializer !== undefined || this.sparseInitializer !== undefined;
  }

  isGraphInput(): boolean {
    return this.graph?.inputs.includes(this) ?? false;
  }

  isGraphOutput(): boolean {
    return this.graph?.outputs.includes(this) ?? false;
  }

  /** Tensor element type, when known. */
  get dtype(): DataType | undefined {
    if (this.initializer) return this.initializer.dtype;
    return this.type?.kind === 'tensor' ? this.type.dtype : undefined;
  }

  /** Shape, when known (initializers always know theirs). */
  get shape(): Dim[] | undefined {
    if (this.initializer) return [...this.initializer.dims];
    return this.type?.kind === 'tensor' ? this.type.shape : undefined;
  }

  /**
   * Makes every reader of this value read `other` instead: node inputs, and graph outputs
   * (a graph output keeps its name and declared type, so `other` takes this value's name, and
   * its type when it has none, when it replaces one).
   */
  replaceAllUsesWith(other: Value): void {
    if (other === this) return;
    for (const use of [...this.useList]) use.node.setInput(use.index, other);
    const g = this.graph;
    if (g && g.outputs.includes(this)) {
      const outputName = this.name;
      g.outputs = g.outputs.map((v) => (v === this ? other : v));
      // the model's declared output type stays (a rewritten lm_head's new node declares none)
      if (!other.type && this.type) other.type = this.type;
      g.renameValue(this, g.uniqueName(`${outputName}_replaced`));
      g.renameValue(other, outputName);
    }
  }

  toString(): string {
    return `%${this.name}`;
  }
}
