import { DataType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/**
 * The value that holds `v`'s constant data: an initializer or a Constant node's output, looked
 * up through Identity nodes (torch writes one per reader of a deduplicated initializer).
 */
export function constantSource(v: Value | undefined): Value | undefined {
  for (let depth = 0; v && depth < 8; depth++) {
    if (v.initializer) return v;
    const p = v.producer();
    if (!p) return undefined;
    if (p.opType === 'Constant' && p.domain === '') return v;
    if (p.opType !== 'Identity') return undefined;
    v = p.input(0);
  }
  return undefined;
}

export function isConstant(v: Value | undefined): boolean {
  return constantTensor(v) !== undefined;
}

/** The constant data of `v` (see constantSource), or undefined when it is not constant. */
export function constantTensor(v: Value | undefined): Tensor | undefined {
  const src = constantSource(v);
  if (!src) return undefined;
  if (src.initializer) return src.initializer;
  const node = src.producer()!;
  for (const a of node.attributes.values()) {
    if (a.type === 'tensor') return a.value;
    if (a.type === 'float') return Tensor.from(src.name, DataType.FLOAT, [], [a.value]);
    if (a.type === 'floats') return Tensor.from(src.name, DataType.FLOAT, [a.value.length], a.value);
    if (a.type === 'int') return Tensor.from(src.name, DataType.INT64, [], [a.value]);
    if (a.type === 'ints') return Tensor.from(src.name, DataType.INT64, [a.value.length], a.value);
  }
  return undefined;
}

/** Constant data as numbers, also through a Cast (bool stays 0/1). Strings give undefined. */
export function constantNumbers(v: Value | undefined): number[] | undefined {
  const t = constantTensor(v) ?? constantTensor(castInput(v));
  if (!t || t.dtype === DataType.STRING) return undefined;
  try {
    return t.toNumbers();
  } catch {
    return undefined; // external data that cannot be read: treat as not constant
  }
}

/** The single number a constant holds (any shape with one element). */
export function constantScalar(v: Value | undefined): number | undefined {
  const t = constantTensor(v) ?? constantTensor(castInput(v));
  if (!t || t.size !== 1) return undefined;
  return constantNumbers(v)?.[0];
}

function castInput(v: Value | undefined): Value | undefined {
  const p = v?.producer();
  return p?.opType === 'Cast' ? p.input(0) : undefined;
}

/** Dims of a constant without reading its data. */
export function constantDims(v: Value | undefined): readonly number[] | undefined {
  return constantTensor(v)?.dims;
}
