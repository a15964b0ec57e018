import type { Value } from '../ir/value.js';
import { constantDims, constantNumbers, constantScalar } from './constants.js';

/**
 * Reads a 1-D shape tensor such as a Reshape's target: numbers where they are known (the
 * constant pieces, and dims copied from a statically known shape), null where the entry is
 * computed at run time. torch writes a dynamic batch as Shape -> Gather -> Unsqueeze -> Concat
 * with constant pieces; the constant pieces (heads, head size) are what discovery needs.
 * Returns undefined when not even the length can be told.
 */
export function readShapeVector(v: Value | undefined, depth = 0): (number | null)[] | undefined {
  if (!v || depth > 12) return undefined;
  const c = constantNumbers(v);
  if (c) return c;
  const p = v.producer();
  if (!p) return undefined;
  switch (p.opType) {
    case 'Cast':
    case 'Identity':
      return readShapeVector(p.input(0), depth + 1);
    case 'Concat': {
      const out: (number | null)[] = [];
      for (const part of p.inputs) {
        const r = readShapeVector(part, depth + 1);
        if (!r) return undefined;
        out.push(...r);
      }
      return out;
    }
    case 'Unsqueeze': {
      // a scalar made 1-D: one entry whatever it is
      const x = p.input(0);
      const rank = x?.shape?.length;
      if (rank !== undefined && rank !== 0) return readShapeVector(x, depth + 1);
      return [readScalarDim(x, depth + 1)];
    }
    case 'Shape': {
      const dims = staticDims(p.input(0));
      if (!dims) return undefined;
      const start = p.intAttr('start', 0);
      const end = p.intAttr('end');
      return dims.slice(start, end);
    }
    case 'Slice': {
      const starts = constantNumbers(p.input(1));
      const ends = constantNumbers(p.input(2));
      const src = readShapeVector(p.input(0), depth + 1) ?? lengthOnly(p.input(0), ends);
      if (!src || !starts || !ends || starts.length !== 1 || ends.length !== 1) return undefined;
      const steps = constantNumbers(p.input(4));
      if (steps && steps[0] !== 1) return undefined;
      return src.slice(clampIndex(starts[0]!, src.length), clampIndex(ends[0]!, src.length));
    }
    case 'Gather': {
      const idx = constantNumbers(p.input(1));
      const src = readShapeVector(p.input(0), depth + 1);
      if (!idx || !src || constantDims(p.input(1))?.length === 0) return undefined;
      return idx.map((i) => src[i < 0 ? i + src.length : i] ?? null);
    }
    default:
      return undefined;
  }
}

/** A scalar dimension: a constant, a dim of a statically known shape, or null. */
function readScalarDim(v: Value | undefined, depth: number): number | null {
  const c = constantScalar(v);
  if (c !== undefined) return c;
  const p = v?.producer();
  if (!p || depth > 12) return null;
  if (p.opType === 'Cast' || p.opType === 'Identity' || p.opType === 'Squeeze') return readScalarDim(p.input(0), depth + 1);
  if (p.opType === 'Gather') {
    const i = constantScalar(p.input(1));
    const src = readShapeVector(p.input(0), depth + 1);
    if (i === undefined || !src) return null;
    return src[i < 0 ? i + src.length : i] ?? null;
  }
  return null;
}

/** A value's shape with symbolic dims as null; undefined when its rank is unknown. */
function staticDims(v: Value | undefined): (number | null)[] | undefined {
  return v?.shape?.map((d) => (typeof d === 'number' ? d : null));
}

/** When the rank behind a Shape is unknown, a slice [start, end) with end >= 0 still has a length. */
function lengthOnly(v: Value | undefined, ends: number[] | undefined): (number | null)[] | undefined {
  if (v?.producer()?.opType !== 'Shape' || !ends || ends.length !== 1 || ends[0]! < 0 || ends[0]! > 64) return undefined;
  return new Array<number | null>(ends[0]!).fill(null);
}

function clampIndex(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  return Math.max(0, Math.min(n, j));
}
