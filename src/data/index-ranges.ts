import type { Model } from '../ir/model.js';
import type { Value } from '../ir/value.js';

/** A table a graph input indexes (token ids into an embedding): ids must be in [-rows, rows). */
export interface IndexedTable {
  input: string;
  table: string;
  node: string;
  rows: number;
}

/** Ops that pass ids through unchanged in value (only their first input is followed). */
const PASS_THROUGH = new Set(['Cast', 'Identity', 'Reshape', 'Squeeze', 'Unsqueeze', 'Flatten']);

/**
 * The constant tables each graph input indexes through Gather (an embedding lookup), directly
 * or through a reshape or cast. onnxruntime stops a run on an index outside the table; checking
 * the data first lets the user see which file holds it.
 */
export function indexedTables(model: Model): IndexedTable[] {
  const out: IndexedTable[] = [];
  for (const input of model.graph.inputs) {
    if (input.initializer) continue;
    const seen = new Set<Value>();
    const visit = (v: Value): void => {
      if (seen.has(v)) return;
      seen.add(v);
      for (const use of v.uses()) {
        const n = use.node;
        if (PASS_THROUGH.has(n.opType) && use.index === 0 && n.domain === '') {
          for (const o of n.outputs) if (o) visit(o);
        } else if (n.opType === 'Gather' && n.domain === '' && use.index === 1) {
          const data = n.inputs[0]?.initializer;
          if (!data || data.dims.length === 0) continue;
          const axis = n.intAttr('axis', 0);
          const rows = data.dims[axis < 0 ? axis + data.dims.length : axis];
          if (rows !== undefined) out.push({ input: input.name, table: n.inputs[0]!.name, node: n.name, rows });
        }
      }
    };
    visit(input);
  }
  return out;
}

/** The first value of `data` outside [-rows, rows), with its position, or undefined. */
export function firstOutOfRange(data: ArrayLike<number | bigint>, rows: number): { value: number; at: number } | undefined {
  for (let i = 0; i < data.length; i++) {
    const v = Number(data[i]!);
    if (v < -rows || v >= rows) return { value: v, at: i };
  }
  return undefined;
}
