import { constantTensor } from '../discover/constants.js';
import type { LinearLayer } from '../discover/structure.js';

/**
 * The weight of a linear layer as [out, in] (row = output channel), whatever its stored
 * layout (MatMul keeps [in, out]; Gemm with transB=1 keeps [out, in]).
 */
export function weightOutIn(l: LinearLayer): Float32Array {
  const t = constantTensor(l.weight);
  if (!t) throw new Error(`linear '${l.name}' has no constant weight`);
  const w = t.toFloat32();
  if (l.transB) return w;
  return transpose(w, l.inFeatures, l.outFeatures);
}

/** Row-major [rows, cols] → [cols, rows]. */
export function transpose<T extends Float32Array | Int8Array | Uint8Array | Int32Array>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]!;
  return out;
}
