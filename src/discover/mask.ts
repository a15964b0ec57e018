import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { constantTensor } from './constants.js';
import type { AttentionMask } from './structure.js';

/** Where a mask meets the scores: an Add of `value`, or a Where on condition `value`. */
export interface MaskPart {
  node: Node;
  value: Value;
  /** For Where: the scores are kept where the condition is true. */
  keepWhenTrue: boolean;
}

const MAX_ORIGIN_NODES = 40;
const MAX_MASK_ELEMENTS = 1 << 22;

/**
 * Describes the masks applied to the scores: where they come from (a graph input such as
 * attention_mask, or constants) and whether a constant is a causal (lower-triangular) mask.
 */
export function analyzeMask(parts: readonly MaskPart[]): { mask?: AttentionMask; causal: boolean } {
  if (parts.length === 0) return { causal: false };
  const nodes: Node[] = [];
  let causal = false;
  let source: string | undefined;
  let kind: AttentionMask['kind'] | undefined;
  for (const part of parts) {
    const partKind = part.node.opType === 'Where' ? 'where' : 'additive';
    nodes.push(part.node);
    const origin = traceOrigin(part.value);
    for (const n of origin.nodes) if (!nodes.includes(n)) nodes.push(n);
    if (!source && origin.inputs.length > 0) {
      source = origin.inputs[0];
      kind = partKind;
    }
    const mode = partKind === 'additive' ? 'additive' : part.keepWhenTrue ? 'keep' : 'drop';
    if (origin.constants.some((c) => isCausal(c, mode))) causal = true;
    // a triangle made at run time, e.g. full((t, t), -inf).triu(1) for a dynamic length
    if (origin.nodes.some((n) => n.opType === 'Trilu')) causal = true;
  }
  const first = parts[0]!.node.opType === 'Where' ? 'where' : 'additive';
  return { mask: { kind: kind ?? first, nodes, source }, causal };
}

/** The nodes computing `v`, the graph inputs it depends on, and the constants it starts from. */
function traceOrigin(v: Value): { nodes: Node[]; inputs: string[]; constants: Value[] } {
  const nodes: Node[] = [];
  const inputs: string[] = [];
  const constants: Value[] = [];
  const seen = new Set<Value>();
  const queue = [v];
  while (queue.length > 0 && nodes.length < MAX_ORIGIN_NODES) {
    const x = queue.shift()!;
    if (seen.has(x)) continue;
    seen.add(x);
    if (constantTensor(x)) {
      constants.push(x);
      continue;
    }
    if (x.isGraphInput()) {
      inputs.push(x.name);
      continue;
    }
    const p = x.producer();
    // a Shape reads only its input's dims: the mask does not depend on that input's data
    if (!p || p.opType === 'Shape') continue;
    nodes.push(p);
    for (const i of p.inputs) if (i) queue.push(i);
  }
  return { nodes, inputs, constants };
}

/**
 * Whether a constant is a causal mask for the last two axes [q, k] (rows aligned to the end
 * when k > q): 'keep' is true on and below the diagonal, 'drop' true above it, 'additive'
 * zero on and below and a large negative number above.
 */
function isCausal(v: Value, mode: 'keep' | 'drop' | 'additive'): boolean {
  const t = constantTensor(v);
  if (!t || t.dims.length < 2) return false;
  const rows = t.dims[t.dims.length - 2]!;
  const cols = t.dims[t.dims.length - 1]!;
  if (rows < 2 || cols < rows || t.size > MAX_MASK_ELEMENTS) return false;
  let values: number[];
  try {
    values = t.toNumbers();
  } catch {
    return false;
  }
  const offset = cols - rows;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const x = values[i * cols + j]!;
      const visible = j <= i + offset;
      const ok = mode === 'keep' ? (x !== 0) === visible : mode === 'drop' ? (x !== 0) !== visible : visible ? Math.abs(x) < 1e-6 : x <= -1e3;
      if (!ok) return false;
    }
  }
  return true;
}
