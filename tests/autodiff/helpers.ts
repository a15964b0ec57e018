import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import type { Attribute } from '../../src/ir/attribute.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Value } from '../../src/ir/value.js';
import { Rng } from '../helpers/transformer-builder.js';

/** Builds small graphs: inputs with fixed dims and seeded random feeds, initializers, ops. */
export class TinyGraph {
  readonly g = new Graph('tiny');
  readonly feeds: Record<string, ArrayTensor> = {};
  private readonly rng: Rng;

  constructor(
    readonly opset = 17,
    seed = 3,
  ) {
    this.rng = new Rng(seed);
  }

  /** A float input fed with N(0,1) values passed through `map`. */
  input(name: string, dims: number[], map: (x: number, i: number) => number = (x) => x): Value {
    const v = this.g.addInput(name, { kind: 'tensor', dtype: DataType.FLOAT, shape: dims });
    const n = dims.reduce((a, b) => a * b, 1);
    this.feeds[name] = { dtype: DataType.FLOAT, dims, data: Float32Array.from({ length: n }, (_, i) => map(this.rng.normal(), i)) };
    return v;
  }

  /** A float initializer (random when no values are given). */
  weight(name: string, dims: number[], values?: number[], map: (x: number) => number = (x) => x): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    return this.g.addInitializer(Tensor.from(name, DataType.FLOAT, dims, values ?? Array.from({ length: n }, () => map(this.rng.normal()))));
  }

  ints(name: string, values: number[], dims = [values.length]): Value {
    return this.g.addInitializer(Tensor.from(name, DataType.INT64, dims, values));
  }

  constant(name: string, dtype: DataType, dims: number[], values: number[]): Value {
    return this.g.addInitializer(Tensor.from(name, dtype, dims, values));
  }

  op(type: string, inputs: (Value | undefined)[], attributes: Record<string, Attribute> = {}, outputs = 1, domain = ''): Value {
    return this.g.addNode(type, inputs, outputs, { attributes, domain }).output(0);
  }

  ops(type: string, inputs: (Value | undefined)[], attributes: Record<string, Attribute>, outputs: number): Value[] {
    return [...this.g.addNode(type, inputs, outputs, { attributes }).outputs];
  }

  model(...outputs: Value[]): Model {
    this.g.outputs.push(...outputs);
    const m = new Model(this.g);
    m.opsetImports = new Map([['', this.opset]]);
    if (this.g.nodes.some((n) => n.domain === 'com.microsoft')) m.opsetImports.set('com.microsoft', 1);
    return m;
  }
}

export const a = {
  int: (value: number): Attribute => ({ type: 'int', value }),
  float: (value: number): Attribute => ({ type: 'float', value }),
  ints: (value: number[]): Attribute => ({ type: 'ints', value }),
  str: (value: string): Attribute => ({ type: 'string', value: new TextEncoder().encode(value) }),
};

/** Values kept away from 0 (for kinks such as Relu's), and positive values (for Log, Sqrt). */
export const awayFromZero = (x: number): number => Math.sign(x || 1) * (0.2 + Math.abs(x));
export const positive = (x: number): number => 0.5 + Math.abs(x);
