import type { Graph } from './graph.js';
import type { Tensor } from './tensor.js';

/**
 * A node attribute. Integers are JS numbers; int64 values beyond 2^53 (exporters use
 * INT64_MAX as "to the end" in Slice) keep their magnitude and are clamped to the int64 range
 * when saved, which maps them back to the same sentinel.
 */
export type AttributeValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number }
  | { type: 'string'; value: Uint8Array }
  | { type: 'tensor'; value: Tensor }
  | { type: 'graph'; value: Graph }
  | { type: 'floats'; value: number[] }
  | { type: 'ints'; value: number[] }
  | { type: 'strings'; value: Uint8Array[] }
  | { type: 'tensors'; value: Tensor[] }
  | { type: 'graphs'; value: Graph[] }
  /** Kinds the IR does not interpret (sparse tensors, type protos): kept as encoded bytes. */
  | { type: 'opaque'; value: Uint8Array };

export type Attribute = AttributeValue & {
  /** Set inside function bodies: the attribute refers to the function's attribute of this name. */
  refAttrName?: string;
  docString?: string;
};

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export function attrString(attr: Attribute | undefined): string | undefined {
  return attr?.type === 'string' ? decoder.decode(attr.value) : undefined;
}

export function stringAttr(value: string): Attribute {
  return { type: 'string', value: encoder.encode(value) };
}
