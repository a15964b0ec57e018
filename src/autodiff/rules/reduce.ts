// Backward rules of reductions and of Softmax / LogSoftmax.
import type { Value } from '../../ir/value.js';
import type { OpRule, RuleContext } from './types.js';
import { int } from './types.js';

/** Reduction axes: constant numbers, a run-time tensor, or 'all'. */
type Axes = { kind: 'const'; axes: number[] } | { kind: 'dynamic'; value: Value } | { kind: 'all' };

function reductionAxes(ctx: RuleContext, inputForm: boolean): Axes {
  const node = ctx.node;
  if (inputForm) {
    const v = node.input(1);
    if (!v) return { kind: 'all' };
    const c = ctx.constInts(v);
    if (c) return c.length === 0 ? { kind: 'all' } : { kind: 'const', axes: c };
    return { kind: 'dynamic', value: v };
  }
  const a = node.intsAttr('axes');
  return a && a.length > 0 ? { kind: 'const', axes: a } : { kind: 'all' };
}

/** True when this Reduce* takes its axes as an input at the graph's opset. */
function axesAsInput(op: string, opset: number): boolean {
  return op === 'ReduceSum' ? opset >= 13 : opset >= 18;
}

/** dy with the reduced axes put back as size-1 axes (so it broadcasts against the input). */
function keptDims(ctx: RuleContext, dy: Value, axes: Axes): Value {
  if (ctx.node.intAttr('keepdims', 1) === 1 || axes.kind === 'all') return dy;
  return ctx.emit('Unsqueeze', [dy, axes.kind === 'const' ? ctx.ints(axes.axes) : axes.value]);
}

/** Sum over the axes keeping them (for counting ties of a max). */
function sumKept(ctx: RuleContext, x: Value, axes: Axes): Value {
  if (axes.kind === 'all') return ctx.emit('ReduceSum', [x], { keepdims: int(1) });
  return ctx.emit('ReduceSum', [x, axes.kind === 'const' ? ctx.ints(axes.axes) : axes.value], { keepdims: int(1) });
}

function isNoop(ctx: RuleContext, axes: Axes): boolean {
  return axes.kind === 'all' && ctx.node.intAttr('noop_with_empty_axes', 0) === 1;
}

function reduceSumOrMean(mean: boolean): OpRule {
  return {
    inputs: () => [0],
    backward(ctx: RuleContext) {
      const x = ctx.input(0);
      const axes = reductionAxes(ctx, axesAsInput(ctx.node.opType, ctx.opset));
      let g = ctx.dy()!;
      if (isNoop(ctx, axes)) return [g];
      g = keptDims(ctx, g, axes);
      if (mean) {
        const count = staticCount(ctx, x, axes);
        const scale =
          count !== undefined
            ? ctx.scalar(1 / count, x)
            : ctx.emit('Div', [
                ctx.emit('Cast', [ctx.emit('Size', [ctx.output(0)])], { to: int(ctx.dtype(x)) }),
                ctx.emit('Cast', [ctx.emit('Size', [x])], { to: int(ctx.dtype(x)) }),
              ]);
        g = ctx.emit('Mul', [g, scale]);
      }
      return [ctx.emit('Expand', [g, ctx.shapeOf(x)])];
    },
  };
}

/** Number of elements averaged over, when the reduced dims are known. */
function staticCount(ctx: RuleContext, x: Value, axes: Axes): number | undefined {
  const dims = ctx.dims(x);
  if (!dims || axes.kind === 'dynamic') return undefined;
  const picked = axes.kind === 'all' ? dims : axes.axes.map((a) => dims[a < 0 ? a + dims.length : a]);
  let n = 1;
  for (const d of picked) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

export const reduceSum = reduceSumOrMean(false);
export const reduceMean = reduceSumOrMean(true);

/** Max/min: the gradient goes to the elements equal to the result, shared evenly between ties. */
export const reduceExtreme: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    const x = ctx.input(0);
    const axes = reductionAxes(ctx, axesAsInput(ctx.node.opType, ctx.opset));
    const dy = ctx.dy()!;
    if (isNoop(ctx, axes)) return [dy];
    const y = keptDims(ctx, ctx.output(0), axes);
    const mask = ctx.emit('Cast', [ctx.emit('Equal', [x, y])], { to: int(ctx.dtype(x)) });
    const share = ctx.emit('Div', [keptDims(ctx, dy, axes), sumKept(ctx, mask, axes)]);
    return [ctx.emit('Mul', [mask, share])];
  },
};

/** Softmax (opset 13 and later: along one axis). */
export const softmax: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    if (ctx.opset < 13) ctx.fail('Softmax before opset 13 (coerced to 2-D) is not supported');
    const y = ctx.output(0);
    const dy = ctx.dy()!;
    const axis = ctx.node.intAttr('axis', -1);
    const dot = ctx.reduce('ReduceSum', ctx.emit('Mul', [dy, y]), [axis], true);
    return [ctx.emit('Mul', [y, ctx.emit('Sub', [dy, dot])])];
  },
};

export const logSoftmax: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    if (ctx.opset < 13) ctx.fail('LogSoftmax before opset 13 (coerced to 2-D) is not supported');
    const y = ctx.output(0);
    const dy = ctx.dy()!;
    const axis = ctx.node.intAttr('axis', -1);
    const total = ctx.reduce('ReduceSum', dy, [axis], true);
    return [ctx.emit('Sub', [dy, ctx.emit('Mul', [ctx.emit('Exp', [y]), total])])];
  },
};
