// Reverse-mode differentiation of an ONNX graph into an ONNX graph: the result computes the
// loss and the gradients of the loss as extra outputs, and runs in onnxruntime like any model.
import { UserError } from '../errors.js';
import type { Attribute } from '../ir/attribute.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import { type Dim, Value } from '../ir/value.js';
import { inferNode, inferTypes, isFloat, isIntType, type TensorInfo } from './infer.js';
import { type Composite, findComposites, type Pattern } from './patterns.js';
import { defaultRules } from './rules/index.js';
import { type OpRule, type RuleContext, type RuleTable, int, ruleKey } from './rules/types.js';

const MS_DOMAIN = 'com.microsoft';

export interface GradientOptions {
  /** The value to differentiate: the gradient is that of the sum of its elements. */
  loss: string;
  /**
   * Values to differentiate against: graph inputs, initializers (they become graph inputs of
   * the same name, which the caller feeds) or intermediate values (the gradient at that point).
   */
  wrt: readonly string[];
  /** Backward rules (default: the built-in table). */
  rules?: RuleTable;
  /** Keep the model's own outputs besides the loss and gradients (default false). */
  keepOutputs?: boolean;
  /**
   * Differentiate known multi-node patterns (the erf and tanh GELUs exporters write) as one op,
   * with fewer passes over memory (default: on with the built-in rules, off with custom ones),
   * or the patterns given.
   */
  patterns?: boolean | readonly Pattern[];
}

export interface GradientGraph {
  model: Model;
  /** Output holding the loss. */
  loss: string;
  /** Output holding each gradient, by the name of the value differentiated against. */
  gradients: Record<string, string>;
  /** Initializers of the source model that became graph inputs. */
  promoted: string[];
}

/**
 * Builds a model computing `loss` and d loss / d `wrt`. The source model is not changed. Every
 * op between `wrt` and `loss` must have a rule; one that has none ends in a UserError naming the
 * node. Shape arithmetic (Shape, Gather on shapes, comparisons, ...) carries no gradient.
 */
export function buildGradientGraph(model: Model, options: GradientOptions): GradientGraph {
  const m = model.clone();
  const g = m.graph;
  const where = model.sourcePath ?? 'the model';
  if (m.opset < 13) throw new UserError(`gradients need ONNX opset 13 or later; ${where} uses opset ${m.opset}`);
  const rules = options.rules ?? defaultRules;
  const lossValue = g.value(options.loss);
  if (!lossValue) throw new UserError(`${where} has no tensor named '${options.loss}' to use as the loss`);

  const promoted: string[] = [];
  const wrt = options.wrt.map((name) => {
    let v = g.value(name);
    if (!v) throw new UserError(`${where} has no tensor named '${name}' to differentiate against`);
    if (v.initializer && !v.isGraphInput()) {
      v = promoteInitializer(g, v);
      promoted.push(name);
    }
    return v;
  });

  const info = inferTypes(g);
  for (const v of wrt) {
    const dt = info.get(v)?.dtype;
    if (dt !== undefined && !isFloat(dt)) throw new UserError(`cannot differentiate against '${v.name}': it is ${dtypeName(dt)}, not a floating-point tensor`);
  }

  const order = g.topologicalOrder();
  const { active, taint } = propagateActivity(order, wrt, rules, info);
  const culprit = taint.get(lossValue);
  if (culprit) throw new UserError(`cannot differentiate node '${culprit.name}' (${ruleKey(culprit)}): there is no gradient rule for ${ruleKey(culprit)}`);

  const builder = new GradientBuilder(g, m.opset, info);
  const relevant = relevantNodes(lossValue, active, rules);
  const composites = new Map<Node, Composite>();
  const patterns = options.patterns ?? options.rules === undefined;
  if (patterns !== false) {
    const keep = new Set<Value>([...wrt, lossValue, ...g.outputs]);
    for (const c of findComposites(relevant, info, keep, patterns === true ? undefined : patterns)) composites.set(c.head, c);
  }
  const inner = new Set([...composites.values()].flatMap((c) => c.nodes.filter((n) => n !== c.head)));
  if (active.has(lossValue)) {
    builder.seed(lossValue);
    for (const node of [...order].reverse()) {
      if (!relevant.has(node) || inner.has(node)) continue;
      const composite = composites.get(node);
      if (composite) builder.backwardComposite(composite);
      else builder.backward(node, rules.get(ruleKey(node))!, active);
    }
  }

  const outputs: Value[] = options.keepOutputs ? [...g.outputs] : [];
  if (!outputs.includes(lossValue)) outputs.push(lossValue);
  const gradients: Record<string, string> = {};
  const claimed = new Set<Value>();
  for (const v of wrt) {
    let grad = builder.gradient(v) ?? builder.zerosLike(v);
    const name = g.uniqueName(`${v.name}_grad`);
    if (builder.isOwn(grad) && !claimed.has(grad) && !outputs.includes(grad)) g.renameValue(grad, name);
    else grad = g.addNode('Identity', [grad], [name], { name: builder.nodeName('grad_output') }).output(0);
    claimed.add(grad);
    gradients[v.name] = grad.name;
    outputs.push(grad);
  }
  g.outputs = outputs;
  // rules may use onnxruntime's com.microsoft ops (FusedMatMul)
  if (g.nodes.some((n) => n.domain === MS_DOMAIN) && !m.opsetImports.has(MS_DOMAIN)) m.opsetImports.set(MS_DOMAIN, 1);
  g.removeDeadNodes();
  g.removeUnusedInitializers();
  g.toposort();
  return { model: m, loss: lossValue.name, gradients, promoted };
}

/** Turns an initializer into a graph input of the same name (its readers follow). */
export function promoteInitializer(g: Graph, v: Value): Value {
  const t = v.initializer!;
  const name = v.name;
  const input = g.addInput(g.uniqueName(`${name}__param`), { kind: 'tensor', dtype: t.dtype, shape: [...t.dims] });
  for (const use of [...v.uses()]) use.node.setInput(use.index, input);
  if (g.outputs.includes(v)) g.outputs = g.outputs.map((o) => (o === v ? input : o));
  g.removeInitializer(v);
  g.renameValue(input, name);
  return input;
}

function diffInputs(rule: OpRule, node: Node): number[] {
  return rule.inputs ? rule.inputs(node) : node.inputs.map((_, i) => i);
}

function diffOutputs(rule: OpRule, node: Node, info: Map<Value, TensorInfo>): number[] {
  if (rule.outputs) return rule.outputs(node);
  return node.outputs.flatMap((o, i) => {
    const dt = info.get(o)?.dtype;
    return dt === undefined || isFloat(dt) ? [i] : [];
  });
}

/**
 * Values that depend on `wrt` through differentiable slots (active), and float values that
 * depend on them through an op with no rule (tainted, with that node).
 */
function propagateActivity(order: Node[], wrt: Value[], rules: RuleTable, info: Map<Value, TensorInfo>): { active: Set<Value>; taint: Map<Value, Node> } {
  const active = new Set<Value>(wrt);
  const taint = new Map<Value, Node>();
  for (const node of order) {
    const rule = rules.get(ruleKey(node));
    if (rule) {
      const slots = diffInputs(rule, node);
      const hot = slots.some((i) => node.inputs[i] && active.has(node.inputs[i]!));
      const bad = slots.map((i) => node.inputs[i] && taint.get(node.inputs[i]!)).find((n) => n);
      if (!hot && !bad) continue;
      for (const i of diffOutputs(rule, node, info)) {
        const o = node.outputs[i];
        if (!o) continue;
        if (hot) active.add(o);
        if (bad) taint.set(o, bad);
      }
      continue;
    }
    const reads = [...node.inputs, ...(node.subgraphs().length > 0 ? implicitInputs(node) : [])];
    const hot = reads.some((v) => v && (active.has(v) || taint.has(v)));
    if (!hot) continue;
    const bad = reads.map((v) => v && taint.get(v)).find((n) => n) ?? node;
    for (const o of node.outputs) {
      const dt = info.get(o)?.dtype;
      if (dt === undefined || isFloat(dt)) taint.set(o, bad);
    }
  }
  return { active, taint };
}

function implicitInputs(node: Node): Value[] {
  const out: Value[] = [];
  const visit = (g: Graph): void => {
    for (const n of g.nodes) {
      for (const v of n.inputs) if (v && v.graph !== g) out.push(v);
      for (const s of n.subgraphs()) visit(s);
    }
  };
  for (const s of node.subgraphs()) visit(s);
  return out;
}

/** Active nodes the loss depends on through differentiable slots. */
function relevantNodes(loss: Value, active: Set<Value>, rules: RuleTable): Set<Node> {
  const relevant = new Set<Node>();
  const seen = new Set<Value>();
  const stack = [loss];
  while (stack.length > 0) {
    const v = stack.pop()!;
    if (seen.has(v) || !active.has(v)) continue;
    seen.add(v);
    const p = v.producer();
    if (!p || relevant.has(p)) continue;
    const rule = rules.get(ruleKey(p));
    if (!rule) continue;
    relevant.add(p);
    for (const i of diffInputs(rule, p)) {
      const x = p.inputs[i];
      if (x && active.has(x)) stack.push(x);
    }
  }
  return relevant;
}

/** Holds the gradients found so far and adds the backward nodes. */
class GradientBuilder {
  private readonly grads = new Map<Value, Value[]>();
  private readonly own = new Set<Value>();
  private readonly shapes = new Map<Value, Value>();
  private readonly constants = new Map<string, Value>();
  private counter = 0;

  constructor(
    readonly graph: Graph,
    readonly opset: number,
    readonly info: Map<Value, TensorInfo>,
  ) {}

  isOwn(v: Value): boolean {
    return this.own.has(v);
  }

  nodeName(base: string): string {
    return `${base}_${this.counter++}`;
  }

  /** d loss / d loss: ones shaped like the loss. */
  seed(loss: Value): void {
    const dt = this.info.get(loss)?.dtype ?? DataType.FLOAT;
    const shape = this.info.get(loss)?.shape;
    const one =
      shape && shape.length === 0
        ? this.scalar(1, dt)
        : this.emit('grad_seed', 'ConstantOfShape', [this.shapeOf(loss)], 1, { value: { type: 'tensor', value: Tensor.from('value', dt, [1], [1]) } })[0]!;
    this.grads.set(loss, [one]);
  }

  /** The summed gradient of `v`, or undefined when nothing reached it. */
  gradient(v: Value): Value | undefined {
    const parts = this.grads.get(v);
    if (!parts || parts.length === 0) return undefined;
    if (parts.length === 1) return parts[0];
    const total = this.emit(`${v.name}_grad_sum`, 'Sum', parts, 1)[0]!;
    this.grads.set(v, [total]);
    return total;
  }

  backward(node: Node, rule: OpRule, active: Set<Value>): void {
    const dys = node.outputs.map((o) => this.gradient(o));
    if (dys.every((d) => d === undefined)) return;
    const slots = new Set(diffInputs(rule, node));
    const wants = (i: number): boolean => slots.has(i) && node.inputs[i] !== undefined && active.has(node.inputs[i]!);
    const ctx = this.context(node, dys, wants);
    const result = rule.backward(ctx);
    node.inputs.forEach((x, i) => {
      const gx = result[i];
      if (!x || !gx || !wants(i)) return;
      const list = this.grads.get(x) ?? [];
      list.push(gx);
      this.grads.set(x, list);
    });
  }

  /** A pattern's backward: the gradient of its output, to its one input. */
  backwardComposite(c: Composite): void {
    const dys = c.head.outputs.map((o) => this.gradient(o));
    if (dys[0] === undefined) return;
    const ctx = this.context(c.head, dys, () => false);
    const list = this.grads.get(c.input) ?? [];
    list.push(c.backward(ctx));
    this.grads.set(c.input, list);
  }

  emit(prefix: string, op: string, inputs: (Value | undefined)[], count: number, attributes: Record<string, Attribute> = {}, domain = ''): Value[] {
    const name = `${prefix}/${op}_${this.counter++}`;
    const node = new Node(op, { domain, name, inputs, attributes });
    for (let i = 0; i < count; i++) {
      let out = count === 1 ? name : `${name}:${i}`;
      while (this.graph.value(out)) out = `${out}_`;
      const v = new Value(out);
      node.appendOutput(v);
      this.own.add(v);
    }
    this.graph.insertNode(node);
    return [...node.outputs];
  }

  scalar(x: number, dtype: DataType): Value {
    return this.constant(dtype, [], [x]);
  }

  constant(dtype: DataType, dims: number[], values: number[]): Value {
    const key = `${dtype}|${dims.join(',')}|${values.join(',')}`;
    let v = this.constants.get(key);
    if (!v) {
      let name = `grad_const_${this.constants.size}`;
      while (this.graph.value(name)) name = `${name}_`;
      v = this.graph.addInitializer(Tensor.from(name, dtype, dims, values));
      this.constants.set(key, v);
    }
    return v;
  }

  shapeOf(v: Value): Value {
    let s = this.shapes.get(v);
    if (!s) {
      const dims = this.info.get(v)?.shape;
      s = dims && dims.every((d) => typeof d === 'number') ? this.constant(DataType.INT64, [dims.length], dims as number[]) : this.emit(`${v.name}_shape`, 'Shape', [v], 1)[0]!;
      this.shapes.set(v, s);
    }
    return s;
  }

  zerosLike(v: Value, dtype?: DataType): Value {
    const dt = dtype ?? this.info.get(v)?.dtype ?? DataType.FLOAT;
    return this.emit(`${v.name}_zeros`, 'ConstantOfShape', [this.shapeOf(v)], 1, { value: { type: 'tensor', value: Tensor.from('value', isFloat(dt) ? dt : DataType.FLOAT, [1], [0]) } })[0]!;
  }

  private context(node: Node, dys: (Value | undefined)[], wants: (i: number) => boolean): RuleContext {
    const b = this;
    const prefix = `${node.name || node.opType}_grad`;
    const fail = (reason: string): never => {
      throw new UserError(`cannot differentiate node '${node.name}' (${ruleKey(node)}): ${reason}`);
    };
    const infoOf = (v: Value): TensorInfo => b.info.get(v) ?? {};
    const dtypeOf = (v: Value): DataType => {
      const dt = infoOf(v).dtype;
      if (dt === undefined) return fail(`the element type of '${v.name}' cannot be told`);
      return dt;
    };
    const emit = (op: string, inputs: (Value | undefined)[], attributes?: Record<string, Attribute>, domain?: string): Value =>
      b.emit(prefix, op, inputs, 1, attributes, domain)[0]!;
    const ctx: RuleContext = {
      node,
      opset: b.opset,
      dy: (i = 0) => dys[i],
      dyOrZeros: (i) => dys[i] ?? b.zerosLike(node.output(i)),
      wants,
      input(i) {
        const v = node.input(i);
        if (!v) return fail(`its input ${i} is missing`);
        return v;
      },
      output: (i) => node.output(i),
      forwardOutput(i) {
        while (node.outputs.length <= i) node.appendOutput(new Value(''));
        const v = node.output(i);
        if (v.name === '') {
          let name = `${node.name || node.opType}_output_${i}`;
          while (b.graph.value(name)) name = `${name}_`;
          b.graph.renameValue(v, name);
          b.info.set(v, inferredOutput(node, i, b.info));
        }
        return v;
      },
      info: infoOf,
      dtype: dtypeOf,
      rank: (v) => infoOf(v).shape?.length,
      dims: (v) => infoOf(v).shape,
      constInts(v) {
        if (!v) return undefined;
        const i = infoOf(v);
        if (i.constant && isIntType(i.constant.dtype) && !i.constant.isExternal) return i.constant.toNumbers();
        if (i.value && isIntType(i.dtype) && i.value.every((d) => typeof d === 'number')) return i.value as number[];
        return undefined;
      },
      emit,
      emitMany: (op, inputs, count, attributes) => b.emit(prefix, op, inputs, count, attributes),
      scalar: (x, like) => b.scalar(x, typeof like === 'number' ? like : dtypeOf(like)),
      ints: (values) => b.constant(DataType.INT64, [values.length], [...values]),
      shapeOf: (v) => b.shapeOf(v),
      zerosLike: (v, dtype) => b.zerosLike(v, dtype),
      reduce(op, x, axes, keepdims) {
        const asInput = op === 'ReduceSum' ? b.opset >= 13 : b.opset >= 18;
        const attrs: Record<string, Attribute> = { keepdims: int(keepdims ? 1 : 0) };
        if (axes.length === 0) return emit(op, [x], attrs);
        if (asInput) return emit(op, [x, ctx.ints(axes)], attrs);
        return emit(op, [x], { ...attrs, axes: { type: 'ints', value: [...axes] } });
      },
      reduceTo(grad, like, gShape = infoOf(node.output(0)).shape, likeShape = infoOf(like).shape) {
        return reduceToShape(ctx, grad, like, gShape, likeShape);
      },
      fail,
    };
    return ctx;
  }
}

/** What inference tells of output `i` of a node (for outputs added after inference ran). */
function inferredOutput(node: Node, i: number, info: Map<Value, TensorInfo>): TensorInfo {
  try {
    return inferNode(node, node.inputs.map((v) => (v ? (info.get(v) ?? {}) : {})))[i] ?? {};
  } catch {
    return {};
  }
}

/** Sums `g` down to `like`'s shape: static axes where the shapes tell them, else at run time. */
function reduceToShape(ctx: RuleContext, g: Value, like: Value, gShape: Dim[] | undefined, lShape: Dim[] | undefined): Value {
  if (gShape && lShape && gShape.length >= lShape.length) {
    const lead = gShape.length - lShape.length;
    const axes: number[] = Array.from({ length: lead }, (_, i) => i);
    let known = true;
    lShape.forEach((dl, j) => {
      const dg = gShape[lead + j];
      if (dl === 1) {
        if (dg !== 1) axes.push(lead + j);
      } else if (typeof dl === 'number') {
        // equal to the output's dim (broadcasting never grows a dim that is not 1)
      } else if (dl !== null && dl === dg) {
        // the same symbolic dim
      } else if (dg === 1) {
        // then like's dim is 1 too
      } else {
        known = false;
      }
    });
    if (known) {
      if (axes.length === 0) return g;
      if (axes.every((a) => a < lead)) return ctx.reduce('ReduceSum', g, axes, false);
      const summed = ctx.reduce('ReduceSum', g, axes, true);
      if (lead === 0) return summed;
      return ctx.emit('Reshape', [summed, ctx.shapeOf(like)]);
    }
  }
  // run-time form: sum over the axes where g's shape differs from like's (left-padded with 1s)
  const sg = ctx.emit('Shape', [g]);
  const sl = ctx.shapeOf(like);
  let padded: Value;
  if (gShape && lShape) {
    const lead = gShape.length - lShape.length;
    padded = lead > 0 ? ctx.emit('Concat', [ctx.ints(new Array<number>(lead).fill(1)), sl], { axis: int(0) }) : sl;
  } else {
    const lead = ctx.emit('Unsqueeze', [ctx.emit('Sub', [ctx.emit('Size', [sg]), ctx.emit('Size', [sl])]), ctx.ints([0])]);
    const ones = ctx.emit('ConstantOfShape', [lead], { value: { type: 'tensor', value: Tensor.from('value', DataType.INT64, [1], [1]) } });
    padded = ctx.emit('Concat', [ones, sl], { axis: int(0) });
  }
  const differ = ctx.emit('Not', [ctx.emit('Equal', [sg, padded])]);
  const axes = ctx.emit('Reshape', [ctx.emit('NonZero', [differ]), ctx.ints([-1])]);
  const summed = ctx.emit('ReduceSum', [g, axes], { keepdims: int(1), noop_with_empty_axes: int(1) });
  return ctx.emit('Reshape', [summed, sl]);
}
