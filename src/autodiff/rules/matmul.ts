// Backward rules of MatMul and Gemm. A weight gradient of a batched activation times a 2-D
// weight is one GEMM over the flattened rows (Gemm with transA), not a batched product summed
// afterwards.
import { DataType } from '../../ir/dtype.js';
import type { Dim, Value } from '../../ir/value.js';
import type { OpRule, RuleContext } from './types.js';
import { float, int, ints } from './types.js';

function swapLast(ctx: RuleContext, v: Value, rank: number): Value {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return ctx.emit('Transpose', [v], { perm: ints(perm) });
}

interface Operand {
  value: Value;
  rank: number;
  dims: Dim[] | undefined;
}

/** Gradients of a @ b for operands of rank >= 2. */
function matmulGrads(ctx: RuleContext, a: Operand, b: Operand, dy: Value, yDims: Dim[] | undefined, want: [boolean, boolean]): [Value | undefined, Value | undefined] {
  const yBatch = yDims ? yDims.slice(0, -2) : undefined;
  const m = a.dims ? a.dims[a.rank - 2]! : null;
  const k = a.dims ? a.dims[a.rank - 1]! : null;
  const n = b.dims ? b.dims[b.rank - 1]! : null;
  let da: Value | undefined;
  let db: Value | undefined;
  if (b.rank === 2) {
    // y[..., m, n] = a[..., m, k] @ b[k, n]: a carries every batch axis of y
    const rows = (v: Value): Value => (a.rank === 2 ? v : ctx.emit('Flatten', [v], { axis: int(-1) }));
    if (want[0]) {
      // Gemm with transB reads b as stored: no per-step Transpose copy of the weight
      const flat = ctx.emit('Gemm', [rows(dy), b.value], { transB: int(1) });
      da = a.rank === 2 ? flat : ctx.emit('Reshape', [flat, ctx.shapeOf(a.value)]);
    }
    if (want[1]) {
      db = ctx.emit('Gemm', [rows(a.value), rows(dy)], { transA: int(1) });
    }
    return [da, db];
  }
  // batched operands (attention): in float32, onnxruntime's FusedMatMul reads the transposed
  // operand as stored, where MatMul would need a Transpose copy of it first
  const fused = ctx.dtype(ctx.output(0)) === DataType.FLOAT;
  const product = (x: Value, y: Value, transA: boolean, transB: boolean): Value =>
    fused
      ? ctx.emit('FusedMatMul', [x, y], { alpha: float(1), transA: int(transA ? 1 : 0), transB: int(transB ? 1 : 0) }, 'com.microsoft')
      : ctx.emit('MatMul', [transA ? swapLast(ctx, x, a.rank) : x, transB ? swapLast(ctx, y, b.rank) : y]);
  if (want[0]) {
    da = product(dy, b.value, false, true);
    da = ctx.reduceTo(da, a.value, yBatch ? [...yBatch, m, k] : undefined, a.dims);
  }
  if (want[1]) {
    db = product(a.value, dy, true, false);
    db = ctx.reduceTo(db, b.value, yBatch ? [...yBatch, k, n] : undefined, b.dims);
  }
  return [da, db];
}

export const matmul: OpRule = {
  backward(ctx: RuleContext) {
    const a = ctx.input(0);
    const b = ctx.input(1);
    const dy = ctx.dy()!;
    const ra = ctx.rank(a);
    const rb = ctx.rank(b);
    if (ra === undefined || rb === undefined) ctx.fail('the ranks of its inputs cannot be told');
    const want: [boolean, boolean] = [ctx.wants(0), ctx.wants(1)];
    if (ra === 1 && rb === 1) return [want[0] ? ctx.emit('Mul', [dy, b]) : undefined, want[1] ? ctx.emit('Mul', [dy, a]) : undefined];
    const ad = ctx.dims(a);
    const bd = ctx.dims(b);
    const yd = ctx.dims(ctx.output(0));
    if (ra === 1) {
      // [k] @ [..., k, n]: a is a row [1, k]
      const a2 = ctx.emit('Unsqueeze', [a, ctx.ints([0])]);
      const dy2 = ctx.emit('Unsqueeze', [dy, ctx.ints([-2])]);
      const y2 = yd ? [...yd.slice(0, -1), 1, yd[yd.length - 1]!] : undefined;
      const [da, db] = matmulGrads(ctx, { value: a2, rank: 2, dims: ad ? [1, ad[0]!] : undefined }, { value: b, rank: rb, dims: bd }, dy2, y2, want);
      return [da ? ctx.emit('Reshape', [da, ctx.shapeOf(a)]) : undefined, db];
    }
    if (rb === 1) {
      // [..., m, k] @ [k]: b is a column [k, 1]
      const b2 = ctx.emit('Unsqueeze', [b, ctx.ints([1])]);
      const dy2 = ctx.emit('Unsqueeze', [dy, ctx.ints([-1])]);
      const y2 = yd ? [...yd, 1] : undefined;
      const [da, db] = matmulGrads(ctx, { value: a, rank: ra, dims: ad }, { value: b2, rank: 2, dims: bd ? [bd[0]!, 1] : undefined }, dy2, y2, want);
      return [da, db ? ctx.emit('Reshape', [db, ctx.shapeOf(b)]) : undefined];
    }
    return matmulGrads(ctx, { value: a, rank: ra, dims: ad }, { value: b, rank: rb, dims: bd }, dy, yd, want);
  },
};

/** Y = alpha * op(A) @ op(B) + beta * C. */
export const gemm: OpRule = {
  backward(ctx: RuleContext) {
    const a = ctx.input(0);
    const b = ctx.input(1);
    const c = ctx.node.input(2);
    const dy = ctx.dy()!;
    const alpha = ctx.node.floatAttr('alpha', 1);
    const beta = ctx.node.floatAttr('beta', 1);
    const ta = ctx.node.intAttr('transA', 0);
    const tb = ctx.node.intAttr('transB', 0);
    const attrs = (transA: number, transB: number) => ({ alpha: float(alpha), transA: int(transA), transB: int(transB) });
    let da: Value | undefined;
    let db: Value | undefined;
    let dc: Value | undefined;
    if (ctx.wants(0)) da = ta ? ctx.emit('Gemm', [b, dy], attrs(tb, 1)) : ctx.emit('Gemm', [dy, b], attrs(0, 1 - tb));
    if (ctx.wants(1)) db = tb ? ctx.emit('Gemm', [dy, a], attrs(1, ta)) : ctx.emit('Gemm', [a, dy], attrs(1 - ta, 0));
    if (c && ctx.wants(2)) dc = ctx.reduceTo(beta === 1 ? dy : ctx.emit('Mul', [dy, ctx.scalar(beta, ctx.output(0))]), c);
    return [da, db, dc];
  },
};
