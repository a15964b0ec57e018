import type { ArrayTensor } from '../../src/ir/array-tensor.js';

/** max |a - b| / max |a| over every float output. */
export function relativeError(a: Record<string, ArrayTensor>, b: Record<string, ArrayTensor>): number {
  let worst = 0;
  for (const k of Object.keys(a)) {
    const x = a[k]!.data as Float32Array;
    const y = b[k]!.data as Float32Array;
    let d = 0;
    let m = 0;
    for (let i = 0; i < x.length; i++) {
      d = Math.max(d, Math.abs(x[i]! - y[i]!));
      m = Math.max(m, Math.abs(x[i]!));
    }
    worst = Math.max(worst, d / m);
  }
  return worst;
}
