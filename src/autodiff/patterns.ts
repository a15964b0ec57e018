// Multi-node patterns differentiated as one op. Exporters write GELU as five elementwise ops
// (erf form) or eight (tanh form); differentiating them one by one costs a pass over the MLP's
// widest tensor per op and input plus sums of contributions, where the derivative of the whole
// needs seven (erf) or nine (tanh), reusing the forward's own values. A pattern only applies
// when its inner values feed nothing but the next op of it.
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

/** A pattern: matched from each node of its anchor op among the nodes the backward pass visits. */
export interface Pattern {
  /** The op every match contains once. */
  anchor: string;
  match(anchor: Node, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>): Composite | undefined;
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
 * a = e + 1, then y = (h * a) * 0.5, 0.5 * (h * a) or y = (h * 0.5) * a.
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
  const tail = geluTail(erf.output(0), h, info, keep);
  if (!tail) return undefined;
  const input = h;
  const { a, half } = tail;
  return {
    head: tail.head,
    nodes: [scale, erf, ...tail.nodes],
    input,
    backward(ctx) {
      // 2 half phi(h) = exp(ln(2 half / sqrt(2 pi)) - u^2)
      const phi = ctx.emit('Exp', [ctx.emit('Sub', [ctx.scalar(Math.log((2 * half) / Math.sqrt(2 * Math.PI)), input), ctx.emit('Mul', [u, u])])]);
      const d = ctx.emit('Add', [ctx.emit('Mul', [a, ctx.scalar(half, input)]), ctx.emit('Mul', [input, phi])]);
      return ctx.emit('Mul', [ctx.dy()!, d]);
    },
  };
}

/**
 * tanh GELU as exporters write it (torch's approximate='tanh', HF gelu_new), h -> y:
 * c3 = h*(h*h), h*h*h or Pow(h, 3); z = k * (h + c * c3) with k = sqrt(2/pi), c = 0.044715;
 * t = Tanh(z), a = 1 + t; then y = (h * a) * 0.5, 0.5 * (h * a) or (h * 0.5) * a (any operand order).
 * d y / d h = 0.5 a + 0.5 h (1 - t^2) k (1 + 3 c h^2), with the graph's own k, c and 0.5.
 */
function matchTanhGelu(tanh: Node, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>): Composite | undefined {
  const inner = (v: Value | undefined): Node | undefined => {
    const p = v?.producer();
    return p && !keep.has(v!) && v!.uses().length === 1 ? p : undefined;
  };
  // z = k * sum
  const zNode = inner(tanh.input(0));
  if (!isOp(zNode, 'Mul')) return undefined;
  const [k, sum] = scaledOperand(zNode, info, Math.sqrt(2 / Math.PI));
  const sumNode = inner(sum);
  if (k === undefined || !isOp(sumNode, 'Add')) return undefined;
  // sum = h + c * cube, either order
  for (const [h, m] of [[sumNode.input(0), sumNode.input(1)], [sumNode.input(1), sumNode.input(0)]] as const) {
    const mNode = inner(m);
    if (!h || !isOp(mNode, 'Mul')) continue;
    const [c, cube] = scaledOperand(mNode, info, 0.044715);
    const cubeNode = inner(cube);
    if (c === undefined || !cubeNode) continue;
    const powered = cubeOf(cubeNode, h, info, keep);
    if (!powered) continue;
    const tail = geluTail(tanh.output(0), h, info, keep);
    if (!tail) continue;
    const nodes = [...powered.nodes, mNode, sumNode, zNode, tanh, ...tail.nodes];
    const { a, half, head } = tail;
    const t = tanh.output(0);
    return {
      head,
      nodes,
      input: h,
      backward(ctx) {
        const sq = powered.square ?? ctx.emit('Mul', [h, h]);
        // half * dz/dh = half k + 3 half k c h^2
        const slope = ctx.emit('Add', [ctx.emit('Mul', [sq, ctx.scalar(3 * half * k * c, h)]), ctx.scalar(half * k, h)]);
        const sech2 = ctx.emit('Sub', [ctx.scalar(1, h), ctx.emit('Mul', [t, t])]);
        const d = ctx.emit('Add', [ctx.emit('Mul', [a, ctx.scalar(half, h)]), ctx.emit('Mul', [h, ctx.emit('Mul', [sech2, slope])])]);
        return ctx.emit('Mul', [ctx.dy()!, d]);
      },
    };
  }
  return undefined;
}

/** [the scalar near `value`, the other operand] of a two-input Mul, when one operand is that scalar. */
function scaledOperand(mul: Node, info: Map<Value, TensorInfo>, value: number): [number | undefined, Value | undefined] {
  for (const [x, y] of [[mul.input(0), mul.input(1)], [mul.input(1), mul.input(0)]] as const) {
    const k = scalarOf(x, info);
    if (near(k, value)) return [k, y];
  }
  return [undefined, undefined];
}

/** h^3 as Pow(h, 3), h * (h * h) or (h * h) * h; `square` is h * h when the graph computes it. */
function cubeOf(node: Node, h: Value, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>): { nodes: Node[]; square?: Value } | undefined {
  const kind = isOp(node, 'Pow') ? 'pow' : isOp(node, 'Mul') ? 'mul' : undefined;
  if (kind === 'pow') return node.input(0) === h && near(scalarOf(node.input(1), info), 3) ? { nodes: [node] } : undefined;
  if (kind !== 'mul') return undefined;
  const sq = other(node, h);
  const sqNode = sq?.producer();
  if (!sq || !isOp(sqNode, 'Mul') || sqNode.input(0) !== h || sqNode.input(1) !== h || keep.has(sq) || sq.uses().length !== 1) return undefined;
  return { nodes: [sqNode, node], square: sq };
}

/**
 * The end of a GELU after its t = Tanh(..) or Erf(..): a = t + 1, then (h * a) * 0.5, 0.5 * (h * a)
 * or (h * 0.5) * a. Returns a, the 0.5 as the graph has it, the last node and the tail's nodes.
 */
function geluTail(t: Value, h: Value, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>): { a: Value; half: number; head: Node; nodes: Node[] } | undefined {
  const plus = soleReader(t, keep);
  if (!isOp(plus, 'Add') || !near(scalarOf(other(plus, t), info), 1)) return undefined;
  const a = plus.output(0);
  const times = soleReader(a, keep);
  if (!isOp(times, 'Mul')) return undefined;
  const x = other(times, a)!;
  if (x === h) {
    const half = soleReader(times.output(0), keep);
    const k = half && isOp(half, 'Mul') ? scalarOf(other(half, times.output(0)), info) : undefined;
    if (!half || !near(k, 0.5)) return undefined;
    return { a, half: k!, head: half, nodes: [plus, times, half] };
  }
  const halved = x.producer();
  if (!isOp(halved, 'Mul') || keep.has(x) || x.uses().length !== 1) return undefined;
  const k = scalarOf(other(halved, h), info);
  if (!near(k, 0.5)) return undefined;
  return { a, half: k!, head: times, nodes: [plus, halved, times] };
}

/** The built-in patterns. */
export const defaultPatterns: readonly Pattern[] = [
  { anchor: 'Erf', match: matchErfGelu },
  { anchor: 'Tanh', match: matchTanhGelu },
];

/**
 * The patterns among `nodes` (the nodes the backward pass visits). `keep` holds values that
 * must keep their own gradient (the tensors differentiated against, the loss, graph outputs).
 */
export function findComposites(nodes: Iterable<Node>, info: Map<Value, TensorInfo>, keep: ReadonlySet<Value>, patterns: readonly Pattern[] = defaultPatterns): Composite[] {
  const found: Composite[] = [];
  const taken = new Set<Node>();
  const pool = new Set(nodes);
  for (const n of pool) {
    for (const p of patterns) {
      if (!isOp(n, p.anchor)) continue;
      const c = p.match(n, info, keep);
      if (c && c.nodes.every((m) => pool.has(m) && !taken.has(m))) {
        found.push(c);
        for (const m of c.nodes) taken.add(m);
      }
    }
  }
  return found;
}
