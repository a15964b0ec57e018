import type { Attribute } from '../../ir/attribute.js';
import { stringAttr } from '../../ir/attribute.js';
import type { DataType } from '../../ir/dtype.js';
import type { Node } from '../../ir/node.js';
import type { Dim, Value } from '../../ir/value.js';
import type { TensorInfo } from '../infer.js';

/**
 * What a backward rule sees and the nodes it may add. Values passed to the builder methods
 * are values of the gradient graph (the forward node's inputs and outputs are readable there).
 */
export interface RuleContext {
  /** The forward node being differentiated (its inputs and outputs live in the gradient graph). */
  readonly node: Node;
  /** Default-domain operator set of the gradient graph. */
  readonly opset: number;
  /** Gradient of the loss with respect to output `i` (default 0), or undefined when none reaches it. */
  dy(i?: number): Value | undefined;
  /** dy(i), or zeros shaped like output i when no gradient reaches it. */
  dyOrZeros(i: number): Value;
  /** Whether input `i` needs a gradient. */
  wants(i: number): boolean;
  /** Input `i` of the forward node; a rule error when the slot is empty. */
  input(i: number): Value;
  output(i: number): Value;
  /**
   * Output `i` of the forward node, added to the node when it did not compute it (an optional
   * output such as LayerNormalization's Mean): the backward then reads what the forward made.
   */
  forwardOutput(i: number): Value;
  info(v: Value): TensorInfo;
  /** Element type of a forward value; a rule error when it cannot be told. */
  dtype(v: Value): DataType;
  rank(v: Value): number | undefined;
  /** The static dims of a forward value (entries null where unknown). */
  dims(v: Value): Dim[] | undefined;
  /** Integer constant data of a forward value (axes, perms, indices), when it is constant. */
  constInts(v: Value | undefined): number[] | undefined;
  /** Adds a node with one output and returns the output. */
  emit(op: string, inputs: (Value | undefined)[], attributes?: Record<string, Attribute>, domain?: string): Value;
  /** Adds a node with `count` outputs. */
  emitMany(op: string, inputs: (Value | undefined)[], count: number, attributes?: Record<string, Attribute>): Value[];
  /** A scalar constant of the given type (or of `like`'s type). */
  scalar(x: number, like: Value | DataType): Value;
  /** A 1-D int64 constant. */
  ints(values: readonly number[]): Value;
  /** Shape(v), computed once per value. */
  shapeOf(v: Value): Value;
  /** Zeros with v's shape and type. */
  zerosLike(v: Value, dtype?: DataType): Value;
  /**
   * Sums `g` (a broadcast result, shaped like `gShape`: by default the node's output 0) down
   * to the shape of `like`, the way a broadcast input's gradient is formed. `likeShape`
   * overrides what is known of `like`'s dims.
   */
  reduceTo(g: Value, like: Value, gShape?: Dim[] | undefined, likeShape?: Dim[] | undefined): Value;
  /** A Reduce* over constant axes at this opset (attribute or input form); [] reduces all. */
  reduce(op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax', x: Value, axes: readonly number[], keepdims: boolean): Value;
  /** Ends with a UserError naming the node and op. */
  fail(reason: string): never;
}

/** The backward of one operator. */
export interface OpRule {
  /** Input slots a gradient flows to (default: every slot). */
  inputs?: (node: Node) => number[];
  /** Output slots that carry a gradient (default: floating-point outputs). */
  outputs?: (node: Node) => number[];
  /** Gradients for the node's input slots (undefined where none, or where not wanted). */
  backward(ctx: RuleContext): (Value | undefined)[];
}

/** Backward rules by op: `OpType` for the ONNX domain, `domain::OpType` otherwise. */
export type RuleTable = ReadonlyMap<string, OpRule>;

export function ruleKey(node: Node): string {
  return node.domain === '' || node.domain === 'ai.onnx' ? node.opType : `${node.domain}::${node.opType}`;
}

export const int = (value: number): Attribute => ({ type: 'int', value });
export const float = (value: number): Attribute => ({ type: 'float', value });
export const ints = (value: number[]): Attribute => ({ type: 'ints', value });
export const str = (value: string): Attribute => stringAttr(value);

/** Axis in [0, rank). */
export function normalizeAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}
