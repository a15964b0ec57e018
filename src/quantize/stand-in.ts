// A layer's decided weight standing in for its float one in a working copy of the model, so
// that the layers after it are fitted on the inputs it gives once quantized (sequential GPTQ,
// and FlexRound's layer-wise units after the blocks).
import type { LinearLayer } from '../discover/structure.js';
import { transpose } from '../export/linear-weight.js';
import { DataType } from '../ir/dtype.js';
import { Tensor } from '../ir/tensor.js';
import { dequantizeWeight, type QuantizedWeight } from './weight-quantizer.js';

/**
 * Replaces the float weight of `l` by the one decision `q` stands for. A weight read by other
 * nodes too (tied tables) or not stored as a float initializer stays float. Returns the float
 * tensor it replaced (undefined when it replaced none).
 */
export function standInQuantized(l: LinearLayer, q: QuantizedWeight): Tensor | undefined {
  const v = l.weight;
  if (!v.initializer || v.initializer.dtype !== DataType.FLOAT || v.uses().length !== 1) return undefined;
  const original = v.initializer;
  const deq = dequantizeWeight(q);
  const stored = l.transB ? deq : transpose(deq, q.n, q.k);
  v.graph!.setInitializer(v, Tensor.fromBytes(v.name, DataType.FLOAT, [...v.initializer.dims], new Uint8Array(stored.buffer)));
  return original;
}
