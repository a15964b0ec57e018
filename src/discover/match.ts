import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import type { Unmatched } from './structure.js';

/** Bound on chains of Casts walked over (a broken graph may even loop). */
const MAX_CASTS = 8;

/** Why a node did not match a structure (onnxscript's MatchResult.fail, as a value). */
export class NoMatch {
  constructor(
    readonly node: Node,
    readonly reason: string,
  ) {}

  toUnmatched(): Unmatched {
    return { node: nodeLabel(this.node), opType: this.node.opType, reason: this.reason };
  }
}

export function fail(node: Node, reason: string): NoMatch {
  return new NoMatch(node, reason);
}

/** A node's name, or its first output's name when the node has none. */
export function nodeLabel(node: Node): string {
  return node.name || (node.outputs[0]?.name ?? '') || node.opType;
}

/** The producer of `v` when it has the given op type (default domain or com.microsoft). */
export function producerOf(v: Value | undefined, ...opTypes: string[]): Node | undefined {
  const p = v?.producer();
  return p && opTypes.includes(p.opType) ? p : undefined;
}

/** `v` with Cast (and Identity) producers above it skipped; `nodes` collects them. */
export function skipCastsUp(v: Value, nodes?: Node[]): Value {
  for (let i = 0, p = v.producer(); i < MAX_CASTS && p && (p.opType === 'Cast' || p.opType === 'Identity') && p.input(0); i++, p = v.producer()) {
    nodes?.push(p);
    v = p.input(0)!;
  }
  return v;
}

/** `v` with layout-only producers above it skipped (Cast, Identity, Transpose, Reshape). */
export function skipLayoutUp(v: Value): Value {
  for (let i = 0, p = v.producer(); i < MAX_CASTS && p && ['Cast', 'Identity', 'Transpose', 'Reshape'].includes(p.opType) && p.input(0); i++, p = v.producer()) {
    v = p.input(0)!;
  }
  return v;
}

/** The only node that reads `v`'s data, when exactly one does (Shape readers read only dims). */
export function soleConsumer(v: Value): Node | undefined {
  const c = v.consumers().filter((n) => n.opType !== 'Shape');
  return c.length === 1 && !v.isGraphOutput() ? c[0] : undefined;
}

/** `v` with single-reader Casts below it skipped (the value the next real op reads). */
export function skipCastsDown(v: Value, nodes?: Node[]): Value {
  for (let i = 0, c = soleConsumer(v); i < MAX_CASTS && c && c.opType === 'Cast'; i++, c = soleConsumer(v)) {
    nodes?.push(c);
    v = c.output(0);
  }
  return v;
}

/** The other input of a two-input node, given one of them. */
export function otherInput(node: Node, v: Value): Value | undefined {
  if (node.input(0) === v) return node.input(1);
  if (node.input(1) === v) return node.input(0);
  return undefined;
}

/** Short description of a value for reasons: its producer op, or what it is. */
export function describeValue(v: Value | undefined): string {
  if (!v) return 'nothing';
  const p = v.producer();
  if (p) return `${p.opType} '${nodeLabel(p)}'`;
  if (v.isGraphInput()) return `graph input '${v.name}'`;
  if (v.isConstant()) return `constant '${v.name}'`;
  return `'${v.name}'`;
}

/** The op types that read `v`, for reasons ("Shape, Reshape", or "nothing"). */
export function describeReaders(v: Value): string {
  return v.consumers().map((n) => n.opType).join(', ') || 'nothing';
}
