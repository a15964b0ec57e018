// Backward rules of data-movement operators: reshapes, transposes, concatenation, splitting,
import type { Attribute } from '../../ir/attribute.js';
// slicing, gathering and expanding.
import { DataType } from '../../ir/dtype.js';
import type { Value } from '../../ir/value.js';
import { sliceRange } from '../infer.js';
import type { OpRule, RuleContext } from './types.js';
import { int, ints, normalizeAxis, str } from './types.js';

// "to the end" for Slice ends: large enough, and exact as a JS number (2^63 - 1 is not)
const TO_END = Number.MAX_SAFE_INTEGER;

/** Reshape-like ops: the gradient is dy given back the input's shape. */
export const reshapeLike: OpRule = {
  inputs: () => [0],
  backward: (ctx) => [ctx.emit('Reshape', [ctx.dy()!, ctx.shapeOf(ctx.input(0))])],
};

export const transpose: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    const perm = ctx.node.intsAttr('perm');
    if (!perm) return [ctx.emit('Transpose', [ctx.dy()!])]; // reversed axes: its own inverse
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => (inverse[p] = i));
    return [ctx.emit('Transpose', [ctx.dy()!], { perm: ints(inverse) })];
  },
};

export const expand: OpRule = {
  inputs: () => [0],
  backward: (ctx) => [ctx.reduceTo(ctx.dy()!, ctx.input(0))],
};

export const concat: OpRule = {
  backward(ctx: RuleContext) {
    const node = ctx.node;
    const axis = node.intAttr('axis', 0);
    const parts = node.inputs.map((v) => v!);
    const sizes = parts.map((v) => {
      const dims = ctx.dims(v);
      return dims ? dims[normalizeAxis(axis, dims.length)] : undefined;
    });
    const split = sizes.every((d) => typeof d === 'number')
      ? ctx.ints(sizes as number[])
      : ctx.emit(
          'Concat',
          parts.map((v) => ctx.emit('Gather', [ctx.shapeOf(v), ctx.ints([axis])], { axis: int(0) })),
          { axis: int(0) },
        );
    if (parts.length === 1) return [ctx.dy()!];
    const grads = ctx.emitMany('Split', [ctx.dy()!, split], parts.length, { axis: int(axis) });
    return grads.map((g, i) => (ctx.wants(i) ? g : undefined));
  },
};

export const split: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    const axis = ctx.node.intAttr('axis', 0);
    const parts = ctx.node.outputs.map((_, i) => ctx.dyOrZeros(i));
    return [parts.length === 1 ? parts[0]! : ctx.emit('Concat', parts, { axis: int(axis) })];
  },
};

/** Slice: the gradient is dy padded back with zeros (steps of 1) or scattered (other steps). */
export const slice: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    const x = ctx.input(0);
    const dy = ctx.dy()!;
    const node = ctx.node;
    const rank = ctx.rank(x);
    if (rank === undefined) ctx.fail('the rank of its input cannot be told');
    const startsV = ctx.input(1);
    const endsV = ctx.input(2);
    const starts = ctx.constInts(startsV);
    const ends = ctx.constInts(endsV);
    const count = starts?.length ?? ends?.length ?? lengthOf(ctx, startsV);
    if (count === undefined) ctx.fail('the number of sliced axes cannot be told');
    const axesIn = node.input(3);
    const axes = axesIn ? ctx.constInts(axesIn) : Array.from({ length: count }, (_, i) => i);
    if (!axes) ctx.fail('its axes are not constant');
    const stepsIn = node.input(4);
    const steps = stepsIn ? ctx.constInts(stepsIn) : axes.map(() => 1);
    if (!steps) ctx.fail('its steps are not constant');
    const norm = axes.map((a) => normalizeAxis(a, rank));
    if (steps.some((s) => s !== 1)) {
      if (axes.length !== 1) ctx.fail('slices with steps other than 1 on several axes are not supported');
      return [scatterSlice(ctx, x, dy, norm[0]!, startsV, endsV, steps[0]!, rank)];
    }
    const dims = ctx.dims(x);
    const known = starts && ends && dims && norm.every((a) => typeof dims[a] === 'number');
    let pads: Value;
    if (known) {
      const p = new Array<number>(2 * rank).fill(0);
      norm.forEach((a, i) => {
        const d = dims[a] as number;
        const [s, e] = sliceRange(starts[i]!, Math.min(ends[i]!, TO_END), 1, d);
        p[a] = s;
        p[a + rank] = d - Math.max(e, s);
      });
      pads = ctx.ints(p);
    } else {
      pads = dynamicPads(ctx, x, startsV, endsV, norm, rank);
    }
    return [ctx.emit('Pad', [dy, pads], { mode: str('constant') })];
  },
};

function lengthOf(ctx: RuleContext, v: Value): number | undefined {
  const d = ctx.dims(v)?.[0];
  return typeof d === 'number' ? d : undefined;
}

/** Pads [begin..., end...] for a step-1 slice, computed at run time. */
function dynamicPads(ctx: RuleContext, x: Value, startsV: Value, endsV: Value, axes: number[], rank: number): Value {
  const i64 = (v: Value): Value => (ctx.dtype(v) === DataType.INT64 ? v : ctx.emit('Cast', [v], { to: int(DataType.INT64) }));
  const dims = ctx.emit('Gather', [ctx.shapeOf(x), ctx.ints(axes)], { axis: int(0) });
  const zero = ctx.ints([0]);
  const clampIndex = (v: Value): Value => {
    const wrapped = ctx.emit('Where', [ctx.emit('Less', [v, zero]), ctx.emit('Add', [v, dims]), v]);
    return ctx.emit('Max', [ctx.emit('Min', [wrapped, dims]), zero]);
  };
  const begin = clampIndex(i64(startsV));
  const end = ctx.emit('Sub', [dims, ctx.emit('Max', [clampIndex(i64(endsV)), begin])]);
  const positions = ctx.ints([...axes, ...axes.map((a) => a + rank)]);
  return ctx.emit('ScatterElements', [ctx.ints(new Array<number>(2 * rank).fill(0)), positions, ctx.emit('Concat', [begin, end], { axis: int(0) })], { axis: int(0) });
}

/** Shape [1, .., -1, .., 1] with the -1 at `axis`, for a 1-D tensor to broadcast along it. */
function along(ctx: RuleContext, v: Value, axis: number, rank: number): Value {
  const shape = new Array<number>(rank).fill(1);
  shape[axis] = -1;
  return ctx.emit('Reshape', [v, ctx.ints(shape)]);
}

/** One-axis slice with any step: scatter dy into zeros at the positions the slice read. */
function scatterSlice(ctx: RuleContext, x: Value, dy: Value, axis: number, startsV: Value, endsV: Value, step: number, rank: number): Value {
  const dim = ctx.emit('Gather', [ctx.shapeOf(x), ctx.ints([axis])], { axis: int(0) });
  const scalarDim = ctx.emit('Squeeze', [dim, ctx.ints([0])]);
  const positions = ctx.emit('Range', [ctx.scalar(0, DataType.INT64), scalarDim, ctx.scalar(1, DataType.INT64)]);
  const i64 = (v: Value): Value => (ctx.dtype(v) === DataType.INT64 ? v : ctx.emit('Cast', [v], { to: int(DataType.INT64) }));
  const picked = ctx.emit('Slice', [positions, i64(startsV), i64(endsV), ctx.ints([0]), ctx.ints([step])]);
  const index = ctx.emit('Expand', [along(ctx, picked, axis, rank), ctx.shapeOf(ctx.output(0))]);
  return ctx.emit('ScatterElements', [ctx.zerosLike(x), index, dy], { axis: int(axis) });
}

/** Gather along an axis: scatter dy back to the rows it read (adding where indices repeat). */
export const gather: OpRule = {
  inputs: () => [0],
  backward(ctx: RuleContext) {
    const x = ctx.input(0);
    const indices = ctx.input(1);
    const dy = ctx.dy()!;
    const rank = ctx.rank(x);
    if (rank === undefined) ctx.fail('the rank of its data input cannot be told');
    const axis = normalizeAxis(ctx.node.intAttr('axis', 0), rank);
    const q = ctx.rank(indices);
    if (q === undefined) ctx.fail('the rank of its indices cannot be told');
    const constant = ctx.constInts(indices);
    let reduction: string | undefined;
    if (constant) {
      const d = ctx.dims(x)?.[axis];
      const normalized = typeof d === 'number' ? constant.map((i) => (i < 0 ? i + d : i)) : constant;
      const distinct = typeof d === 'number' || constant.every((i) => i >= 0) ? new Set(normalized).size === normalized.length : false;
      if (!distinct) reduction = 'add';
    } else {
      reduction = 'add';
    }
    if (reduction && ctx.opset < 16) ctx.fail('its indices may repeat, and adding gradients at repeated indices needs opset 16 (ScatterElements reduction)');
    // one index axis in dy, where the index dims were
    let g = dy;
    if (q === 0) g = ctx.emit('Unsqueeze', [dy, ctx.ints([axis])]);
    else if (q > 1) {
      const shape = ctx.shapeOf(ctx.output(0));
      const target = ctx.emit(
        'Concat',
        [ctx.emit('Slice', [shape, ctx.ints([0]), ctx.ints([axis])]), ctx.ints([-1]), ctx.emit('Slice', [shape, ctx.ints([axis + q]), ctx.ints([TO_END])])],
        { axis: int(0) },
      );
      g = ctx.emit('Reshape', [dy, target]);
    }
    let flat = ctx.emit('Reshape', [indices, ctx.ints([-1])]);
    if (ctx.dtype(indices) !== DataType.INT64) flat = ctx.emit('Cast', [flat], { to: int(DataType.INT64) });
    const index = ctx.emit('Expand', [along(ctx, flat, axis, rank), ctx.emit('Shape', [g])]);
    const attrs: Record<string, Attribute> = reduction ? { axis: int(axis), reduction: str(reduction) } : { axis: int(axis) };
    return [ctx.emit('ScatterElements', [ctx.zerosLike(x), index, g], attrs)];
  },
};
