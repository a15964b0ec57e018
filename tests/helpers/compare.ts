import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import type { Model } from '../../src/ir/model.js';
import { Session } from '../../src/runtime/session.js';

/** Runs both models on the same feeds with onnxruntime and returns their outputs. */
export async function runBoth(a: Model, b: Model, feeds: Record<string, ArrayTensor>): Promise<[Record<string, ArrayTensor>, Record<string, ArrayTensor>]> {
  const sa = await Session.create(a);
  const sb = await Session.create(b);
  try {
    return [await sa.run(feeds), await sb.run(feeds)];
  } finally {
    await sa.release();
    await sb.release();
  }
}

/** Byte-level equality of two output maps (exact: same names, types, shapes and bits). */
export function sameOutputs(x: Record<string, ArrayTensor>, y: Record<string, ArrayTensor>): boolean {
  const names = Object.keys(x).sort();
  if (names.join() !== Object.keys(y).sort().join()) return false;
  return names.every((n) => {
    const p = x[n]!;
    const q = y[n]!;
    if (p.dtype !== q.dtype || p.dims.join() !== q.dims.join()) return false;
    const pb = new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength);
    const qb = new Uint8Array(q.data.buffer, q.data.byteOffset, q.data.byteLength);
    return pb.length === qb.length && pb.every((v, i) => v === qb[i]);
  });
}
