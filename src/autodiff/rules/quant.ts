// QuantizeLinear / DequantizeLinear with a straight-through estimator: rounding counts as the
// identity in the derivative, saturation does not (no gradient where the code was clamped).
// Through Q then DQ this gives LSQ's step-size gradient round(x/s) - x/s inside the range.
import { DataType, dtypeName } from '../../ir/dtype.js';
import type { Value } from '../../ir/value.js';
import type { OpRule, RuleContext } from './types.js';
import { int, normalizeAxis } from './types.js';

/** Range of the integer codes of a quantized type. */
export function codeRange(dtype: DataType): [number, number] | undefined {
  switch (dtype) {
    case DataType.INT8:
      return [-128, 127];
    case DataType.UINT8:
      return [0, 255];
    case DataType.INT16:
      return [-32768, 32767];
    case DataType.UINT16:
      return [0, 65535];
    case DataType.INT4:
      return [-8, 7];
    case DataType.UINT4:
      return [0, 15];
    default:
      return undefined;
  }
}

interface ScaleForm {
  /** The scale shaped to broadcast against x. */
  broadcast: Value;
  /** Any tensor laid out like the scale (the zero point), shaped to broadcast against x. */
  broadcastOf(v: Value): Value;
  /** Sums a gradient shaped like x down to the scale's shape. */
  reduce(g: Value): Value;
}

/** Per-tensor (one element) or per-axis (1-D along `axis`) scale or zero point. */
function scaleForm(ctx: RuleContext, x: Value, s: Value): ScaleForm {
  if ((ctx.node.intAttr('block_size', 0) ?? 0) > 0) ctx.fail('blocked quantization (block_size) is not supported');
  const sDims = ctx.dims(s);
  if (!sDims) ctx.fail('the shape of its scale cannot be told');
  const perTensor = sDims.length === 0 || (sDims.length === 1 && sDims[0] === 1);
  if (perTensor) {
    return {
      broadcast: s,
      broadcastOf: (v) => v,
      reduce: (g) => ctx.emit('Reshape', [ctx.reduce('ReduceSum', g, [], false), ctx.shapeOf(s)]),
    };
  }
  const rank = ctx.rank(x);
  if (rank === undefined) ctx.fail('the rank of its input cannot be told');
  const axis = normalizeAxis(ctx.node.intAttr('axis', 1), rank);
  const shape = new Array<number>(rank).fill(1);
  shape[axis] = -1;
  const others = Array.from({ length: rank }, (_, i) => i).filter((i) => i !== axis);
  const broadcastOf = (v: Value): Value => ctx.emit('Reshape', [v, ctx.ints(shape)]);
  return {
    broadcast: broadcastOf(s),
    broadcastOf,
    reduce: (g) => (others.length === 0 ? g : ctx.reduce('ReduceSum', g, others, false)),
  };
}

/** The zero point as a float tensor broadcasting against x (0 when absent). */
function zeroPoint(ctx: RuleContext, sf: ScaleForm, zp: Value | undefined, dtype: DataType): Value {
  if (!zp) return ctx.scalar(0, dtype);
  return sf.broadcastOf(ctx.emit('Cast', [zp], { to: int(dtype) }));
}

export const quantizeLinear: OpRule = {
  inputs: () => [0, 1],
  outputs: () => [0],
  backward(ctx: RuleContext) {
    const x = ctx.input(0);
    const s = ctx.input(1);
    const zp = ctx.node.input(2);
    const dy = ctx.dy()!;
    const ft = ctx.dtype(s);
    const codeType = zp ? ctx.dtype(zp) : ((ctx.node.intAttr('output_dtype', 0) || DataType.UINT8) as DataType);
    const range = codeRange(codeType);
    if (!range) ctx.fail(`quantizing to ${dtypeName(codeType)} is not supported`);
    const sf = scaleForm(ctx, x, s);
    const zpf = zeroPoint(ctx, sf, zp, ft);
    const xf = ctx.dtype(x) === ft ? x : ctx.emit('Cast', [x], { to: int(ft) });
    const u = ctx.emit('Div', [xf, sf.broadcast]);
    const q = ctx.emit('Add', [ctx.emit('Round', [u]), zpf]);
    const inRange = ctx.emit('And', [ctx.emit('GreaterOrEqual', [q, ctx.scalar(range[0], ft)]), ctx.emit('LessOrEqual', [q, ctx.scalar(range[1], ft)])]);
    const zero = ctx.scalar(0, ft);
    const passed = ctx.emit('Where', [inRange, dy, zero]);
    const out: (Value | undefined)[] = [undefined, undefined, undefined];
    if (ctx.wants(0)) {
      const dx = ctx.emit('Div', [passed, sf.broadcast]);
      out[0] = ctx.dtype(x) === ft ? dx : ctx.emit('Cast', [dx], { to: int(ctx.dtype(x)) });
    }
    // d(x/s)/ds = -(x/s)/s
    if (ctx.wants(1)) out[1] = sf.reduce(ctx.emit('Neg', [ctx.emit('Div', [ctx.emit('Mul', [passed, u]), sf.broadcast])]));
    return out;
  },
};

export const dequantizeLinear: OpRule = {
  inputs: () => [0, 1],
  backward(ctx: RuleContext) {
    const x = ctx.input(0);
    const s = ctx.input(1);
    const zp = ctx.node.input(2);
    const dy = ctx.dy()!;
    const ft = ctx.dtype(s);
    const sf = scaleForm(ctx, x, s);
    const out: (Value | undefined)[] = [undefined, undefined, undefined];
    if (ctx.wants(0)) out[0] = ctx.emit('Mul', [dy, sf.broadcast]);
    if (ctx.wants(1)) {
      let centered = ctx.emit('Cast', [x], { to: int(ft) });
      if (zp) centered = ctx.emit('Sub', [centered, zeroPoint(ctx, sf, zp, ft)]);
      out[1] = sf.reduce(ctx.emit('Mul', [dy, centered]));
    }
    return out;
  },
};
