// Multi-node patterns differentiated as one op. Exporters write GELU as five elementwise ops;
// differentiating them one by one costs ten passes over the MLP's widest tensor plus a sum of
// two contributions, where the derivative of the whole needs seven, reusing the forward's own
// values. A pattern only applies when its inner values feed nothing but the next op of it.
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import type { TensorInfo } from './infer.js';
import type { RuleContext } from './rules/types.js';

export interface Composite {
  /** The pattern's last node: its output is the pattern's output. */
  head: Node;
  /** Every node of the pattern, the head included. */
  nodes: Node[];
  /** The one input the gradient goes to. */
  input: Value;
  /** The gradient of the input, from ctx.dy() (the head's output gradient). */
  backward(ctx: RuleContext): Value;
}

function scalarOf(v: Value | undefined, info: Map<Value, TensorInfo>): number | undefined {
  const t = v ? info.get(v)?.constant : undefined;
  if (!t || t.size !== 1) return undefined;
  try {
    return t.toNumbers()[0];
  } catch {
    return undefined;
  }
}

const near = (x: number | undefined, y: number): boolean => x !== undefined && Math.abs(x - y) <= 1e-4 * Math.abs(y);

/** The other input of a two-input node, when one input is `v`. */
function other(node: Node, v: Value): Value | undefined {
  if (node.inputs.length !== 2) return undefined;
  if (node.inputs[0] === v) return node.inputs[1];
  if (node.inputs[1] === v) return node.inputs[0];
  return undefined;
}

/** The single node reading `v`, when exactly one does (and `v` is not otherwise needed). */
function soleReader(v: Value, keep: ReadonlySet<Value>): Node | undefined {
  if (keep.has(v) || v.uses().length !== 1) return undefined;
  return v.uses()[0]!.node;
}

const isOp = (n: Node | undefined, op: string): n is Node => n !== undefined && n.opType === op && (n.domain === '' || n.domain === 'ai.onnx');

/**
 * erf GELU as torch exports it, h -> y: u = h / sqrt(2) (or h * (1/sqrt 2)), e = Erf(u),
 * a = e + 1, then y = (h * a) * 0.5 or y = (h * 0.5) * a.
 * d y / d h = 0.5 a + h phi(h), phi(h) = exp(-u^2) / sqrt(2 pi).
 */
function matchErfGelu(erf: Node, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>): Composite | undefined {
  const u = erf.input(0);
  const scale = u?.producer();
  if (!u || !scale || keep.has(u) || u.uses().length !== 1) return undefined;
  let h: Value | undefined;
  if (isOp(scale, 'Div') && near(scalarOf(scale.input(1), info), Math.SQRT2)) h = scale.input(0);
  else if (isOp(scale, 'Mul')) {
    for (const [x, k] of [[scale.input(0), scale.input(1)], [scale.input(1), scale.input(0)]] as const) if (near(scalarOf(k, info), Math.SQRT1_2)) h = x;
  }
  if (!h) return undefined;
  const e = erf.output(0);
  const plus = soleReader(e, keep);
  if (!isOp(plus, 'Add') || !near(scalarOf(other(plus, e), info), 1)) return undefined;
  const a = plus.output(0);
  const times = soleReader(a, keep);
  if (!isOp(times, 'Mul')) return undefined;
  const x = other(times, a)!;
  let nodes: Node[];
  let head: Node;
  if (x === h) {
    // (h * a) * 0.5
    const half = soleReader(times.output(0), keep);
    if (!isOp(half, 'Mul') || !near(scalarOf(other(half, times.output(0)), info), 0.5)) return undefined;
    nodes = [scale, erf, plus, times, half];
    head = half;
  } else {
    // (h * 0.5) * a
    const halved = x.producer();
    if (!isOp(halved, 'Mul') || other(halved, h) === undefined || !near(scalarOf(other(halved, h), info), 0.5) || keep.has(x) || x.uses().length !== 1) return undefined;
    nodes = [scale, erf, plus, halved, times];
    head = times;
  }
  const input = h;
  return {
    head,
    nodes,
    input,
    backward(ctx) {
      const phi = ctx.emit('Exp', [ctx.emit('Sub', [ctx.scalar(Math.log(1 / Math.sqrt(2 * Math.PI)), input), ctx.emit('Mul', [u, u])])]);
      const d = ctx.emit('Add', [ctx.emit('Mul', [a, ctx.scalar(0.5, input)]), ctx.emit('Mul', [input, phi])]);
      return ctx.emit('Mul', [ctx.dy()!, d]);
    },
  };
}

/**
 * The patterns among `nodes` (the nodes the backward pass visits). `keep` holds values that
 * must keep their own gradient (the tensors differentiated against, the loss, graph outputs).
 */
export function findComposites(nodes: Iterable<Node>, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>): Composite[] {
  const found: Composite[] = [];
  const taken = new Set<Node>();
  const pool = new Set(nodes);
  for (const n of pool) {
    if (!isOp(n, 'Erf')) continue;
    const c = matchErfGelu(n, info, keep);
    if (c && c.nodes.every((m) => pool.has(m) && !taken.has(m))) {
      found.push(c);
      for (const m of c.nodes) taken.add(m);
    }
  }
  return found;
}
