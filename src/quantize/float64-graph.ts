// Small float64 graphs of matrix products for the dense linear algebra of GPTQ (Cholesky blocks,
// lazy-batch weight updates): the O(k³) work runs in onnxruntime, not in JavaScript loops.
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import type { Value } from '../ir/value.js';
import { Session } from '../runtime/session.js';

/** A session over a graph whose inputs are the named float64 matrices and whose outputs `build` returns. */
export function float64Session(name: string, inputs: string[], build: (g: Graph, x: Value[]) => Value[]): Promise<Session> {
  const g = new Graph(name);
  const xs = inputs.map((n) => g.addInput(n, { kind: 'tensor', dtype: DataType.DOUBLE, shape: [`${n}_rows`, `${n}_cols`] }));
  g.outputs.push(...build(g, xs));
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  // no arena: it would keep the largest temporaries for the whole run (k x k float64 matrices,
  // 254 MB each for a 5632-wide layer); these products are large, so allocating is cheap beside them
  return Session.create(m, { memoryArena: false });
}

/** vᵀ of a matrix, as a node of `g`. */
export const transposed = (g: Graph, v: Value): Value => g.addNode('Transpose', [v], 1, { attributes: { perm: { type: 'ints', value: [1, 0] } } }).output(0);

/** A row-major float64 matrix as a feed. */
export const f64 = (data: Float64Array, rows: number, cols: number): ArrayTensor => ({ dtype: DataType.DOUBLE, dims: [rows, cols], data });
