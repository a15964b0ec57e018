import type { ArrayTensor } from '../../src/ir/array-tensor.js';

/** Largest absolute difference of two float tensors, relative to the largest magnitude of the first. */
export function maxRelDiff(a: ArrayTensor, b: ArrayTensor): number {
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  let scale = 1e-6;
  for (const v of x) scale = Math.max(scale, Math.abs(v));
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  return d / scale;
}
