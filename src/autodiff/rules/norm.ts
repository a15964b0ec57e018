// Backward rules of fused normalizations. The statistics are recomputed in the backward graph
// (in the input's precision) rather than read from the optional Mean/InvStdDev outputs.
import type { Value } from '../../ir/value.js';
import type { OpRule, RuleContext } from './types.js';
import { int } from './types.js';

/** Axes [axis, rank) as negative numbers when the rank is unknown and the axis is negative. */
function normalizedAxes(ctx: RuleContext, x: Value): number[] {
  const axis = ctx.node.intAttr('axis', -1);
  if (axis < 0) return Array.from({ length: -axis }, (_, i) => axis + i);
  const rank = ctx.rank(x);
  if (rank === undefined) ctx.fail('the rank of its input cannot be told and its axis is positive');
  return Array.from({ length: rank - axis }, (_, i) => axis + i);
}

function statsOutputsUnused(ctx: RuleContext): void {
  if (ctx.dy(1) || ctx.dy(2)) ctx.fail('a gradient through its Mean/InvStdDev outputs is not supported');
}

/** LayerNormalization (opset 17): y = (x - mean) / sqrt(var + eps) * scale + bias. */
export const layerNorm: OpRule = {
  outputs: () => [0, 1, 2],
  backward(ctx: RuleContext) {
    statsOutputsUnused(ctx);
    const x = ctx.input(0);
    const scale = ctx.node.input(1);
    const bias = ctx.node.input(2);
    const dy = ctx.dy(0)!;
    const eps = ctx.node.floatAttr('epsilon', 1e-5);
    const axes = normalizedAxes(ctx, x);
    const mean = (v: Value): Value => ctx.reduce('ReduceMean', v, axes, true);
    let xhat: Value;
    let inv: Value;
    const stash = ctx.node.intAttr('stash_type', 1);
    if (stash === 1) {
      // the forward's own statistics (float32, shaped to broadcast); cast to x's type, which
      // is a no-op onnxruntime removes for float32 x
      const to = { to: int(ctx.dtype(x)) };
      inv = ctx.emit('Cast', [ctx.forwardOutput(2)], to);
      xhat = ctx.emit('Mul', [ctx.emit('Sub', [x, ctx.emit('Cast', [ctx.forwardOutput(1)], to)]), inv]);
    } else {
      const d = ctx.emit('Sub', [x, mean(x)]);
      inv = ctx.emit('Reciprocal', [ctx.emit('Sqrt', [ctx.emit('Add', [mean(ctx.emit('Mul', [d, d])), ctx.scalar(eps, x)])])]);
      xhat = ctx.emit('Mul', [d, inv]);
    }
    const out: (Value | undefined)[] = [undefined, undefined, undefined];
    if (scale && ctx.wants(1)) out[1] = ctx.reduceTo(ctx.emit('Mul', [dy, xhat]), scale);
    if (bias && ctx.wants(2)) out[2] = ctx.reduceTo(dy, bias);
    if (ctx.wants(0)) {
      const dxhat = scale ? ctx.emit('Mul', [dy, scale]) : dy;
      const centered = ctx.emit('Sub', [dxhat, mean(dxhat)]);
      const along = ctx.emit('Mul', [xhat, mean(ctx.emit('Mul', [dxhat, xhat]))]);
      out[0] = ctx.emit('Mul', [inv, ctx.emit('Sub', [centered, along])]);
    }
    return out;
  },
};

/** RMS normalization: y = x / sqrt(mean(x^2) + eps) * scale (SimplifiedLayerNormalization, RMSNormalization). */
export const rmsNorm: OpRule = {
  outputs: () => [0, 1],
  backward(ctx: RuleContext) {
    if (ctx.dy(1)) ctx.fail('a gradient through its InvStdDev output is not supported');
    const x = ctx.input(0);
    const scale = ctx.node.input(1);
    const dy = ctx.dy(0)!;
    const eps = ctx.node.floatAttr('epsilon', 1e-5);
    const axes = normalizedAxes(ctx, x);
    const mean = (v: Value): Value => ctx.reduce('ReduceMean', v, axes, true);
    const inv = ctx.emit('Reciprocal', [ctx.emit('Sqrt', [ctx.emit('Add', [mean(ctx.emit('Mul', [x, x])), ctx.scalar(eps, x)])])]);
    const xhat = ctx.emit('Mul', [x, inv]);
    const out: (Value | undefined)[] = [undefined, undefined];
    if (scale && ctx.wants(1)) out[1] = ctx.reduceTo(ctx.emit('Mul', [dy, xhat]), scale);
    if (ctx.wants(0)) {
      const dxhat = scale ? ctx.emit('Mul', [dy, scale]) : dy;
      const along = ctx.emit('Mul', [xhat, mean(ctx.emit('Mul', [dxhat, xhat]))]);
      out[0] = ctx.emit('Mul', [inv, ctx.emit('Sub', [dxhat, along])]);
    }
    return out;
  },
};
