import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { constantTensor } from './constants.js';
import { divExact, isNumber, mul, named, num, product, symEqual, type Sym } from './symbolic.js';

/** A dim or an entry that may be unknown. */
export type MaybeSym = Sym | null;

const MAX_VALUE_SIZE = 64;
const FLOAT_TYPES = new Set([1, 10, 11, 16]);
const UNARY = new Set(['Identity', 'Cast', 'CastLike', 'Neg', 'Sqrt', 'Relu', 'Erf', 'Tanh', 'Sigmoid', 'Exp', 'Log', 'Abs', 'Reciprocal', 'Softmax', 'LogSoftmax', 'Not', 'Floor', 'Ceil', 'Round', 'Sin', 'Cos', 'Gelu', 'FastGelu', 'BiasGelu', 'QuickGelu', 'Dropout', 'Trilu', 'IsNaN', 'IsInf', 'Sign', 'Clip', 'LayerNormalization', 'SimplifiedLayerNormalization', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'RMSNormalization', 'HardSigmoid', 'HardSwish', 'LeakyRelu', 'Elu', 'Selu', 'Softplus', 'QuantizeLinear', 'DequantizeLinear', 'BatchNormalization', 'InstanceNormalization', 'CumSum']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Max', 'Min', 'Mod', 'Where', 'PRelu', 'BitShift']);
const REDUCE = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp', 'ArgMax', 'ArgMin']);

/**
 * Shapes and small integer values of a graph's tensors, with run-time sizes kept as named
 * symbols (a graph input's dim_param, or a fresh name): what torch writes as
 * Shape -> Gather -> Unsqueeze -> Concat becomes [batch, seq, 4, 8] instead of [?, ?, 4, 8].
 * Computed once in topological order; ops it does not know give unknown shapes.
 */
export class SymbolicShapes {
  private readonly shapes = new Map<Value, MaybeSym[]>();
  private readonly values = new Map<Value, MaybeSym[]>();
  /** Values of a floating-point type (integer Div truncates; float Div does not). */
  private readonly floating = new Set<Value>();

  constructor(graph: Graph, order: readonly Node[]) {
    // a subgraph (a merged decoder's branch) reads its enclosing graphs' inputs and constants
    for (let g: Graph | undefined = graph; g; g = g.parent) {
      for (const input of g.inputs) {
        const dims = input.shape;
        if (dims) this.shapes.set(input, dims.map((d, i) => (typeof d === 'number' ? num(d) : named(typeof d === 'string' && d ? d : `${input.name}:${i}`))));
      }
      for (const init of g.initializers) this.setConstant(init);
    }
    for (const node of order) {
      try {
        this.infer(node);
      } catch {
        // a malformed attribute or an op used outside its spec: its outputs stay unknown
      }
      // what inference cannot tell, the file's value_info may (its unnamed dims as fresh names)
      for (const o of node.outputs) {
        if (this.shapes.has(o) || !o.shape) continue;
        this.shapes.set(o, o.shape.map((d, i) => (typeof d === 'number' ? num(d) : named(typeof d === 'string' && d ? d : `${o.name}:${i}`))));
      }
    }
  }

  shape(v: Value | undefined): MaybeSym[] | undefined {
    return v ? this.shapes.get(v) : undefined;
  }

  /** The elements of a small tensor whose values are known (constants, and shapes computed from dims). */
  value(v: Value | undefined): MaybeSym[] | undefined {
    return v ? this.values.get(v) : undefined;
  }

  /** The one number a one-element tensor holds, when it is known (e.g. a scale computed from a dim). */
  scalar(v: Value | undefined): number | undefined {
    const x = this.value(v);
    return x && x.length === 1 && x[0] && isNumber(x[0]) ? x[0].c : undefined;
  }

  private setConstant(v: Value): void {
    const t = constantTensor(v);
    if (!t) return;
    this.shapes.set(v, t.dims.map((d) => num(d)));
    if (FLOAT_TYPES.has(t.dtype)) this.floating.add(v);
    if (t.size <= MAX_VALUE_SIZE) {
      try {
        this.values.set(v, t.toNumbers().map((x) => num(x)));
      } catch {
        // strings or unreadable external data: no value
      }
    }
  }

  private isFloating(n: Node, castTo: number | undefined): boolean {
    const op = n.opType;
    if (op === 'Cast') return castTo !== undefined && FLOAT_TYPES.has(castTo);
    if (['Shape', 'Size', 'Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'Not', 'And', 'Or', 'ArgMax', 'ArgMin'].includes(op)) return false;
    if (['Sqrt', 'Reciprocal', 'Softmax'].includes(op)) return true;
    const data = op === 'Gather' || op === 'Reshape' || op === 'Expand' || op === 'Slice' || op === 'Unsqueeze' || op === 'Squeeze' ? [n.input(0)] : op === 'Where' ? [n.input(1), n.input(2)] : n.inputs;
    return data.some((v) => !!v && this.floating.has(v));
  }

  private infer(n: Node): void {
    const op = n.opType;
    const inShape = (i: number) => this.shape(n.input(i));
    const inValue = (i: number) => this.value(n.input(i));
    const out = n.outputs[0];
    if (!out) return;
    const setShape = (s: MaybeSym[] | undefined, v: Value = out) => s && this.shapes.set(v, s);
    const setValue = (x: MaybeSym[] | undefined) => x && x.length <= MAX_VALUE_SIZE && this.values.set(out, x);

    if (op === 'Constant') return this.setConstant(out);
    const castTo = n.intAttr('to');
    if (this.isFloating(n, castTo)) this.floating.add(out);
    if (UNARY.has(op)) {
      setShape(inShape(0));
      const x = inValue(0);
      if (!x) return;
      if (op === 'Identity' || op === 'Cast' || op === 'CastLike') setValue(x);
      else if (op === 'Neg') setValue(x.map((d) => d && { c: -d.c, s: d.s }));
      else if (op === 'Sqrt') setValue(x.map((d) => (d && isNumber(d) ? num(Math.sqrt(d.c)) : null)));
      else if (op === 'Reciprocal') setValue(x.map((d) => (d && isNumber(d) ? num(1 / d.c) : null)));
      return;
    }
    if (BINARY.has(op)) {
      const operands = op === 'Where' ? [0, 1, 2] : [0, 1];
      let s: MaybeSym[] | undefined = [];
      for (const i of operands) s = s && broadcast(s, inShape(i));
      setShape(s);
      if (op === 'Where') setValue(select(inValue(0), inValue(1), inValue(2)));
      else setValue(elementwise(op === 'Div' && !this.floating.has(out) ? 'IntDiv' : op, inValue(0), inValue(1)));
      return;
    }
    switch (op) {
      case 'MatMul':
      case 'FusedMatMul':
      case 'MatMulInteger':
      case 'MatMulNBits': {
        const a = inShape(0);
        const b = op === 'MatMulNBits' ? undefined : inShape(1);
        if (op === 'MatMulNBits') {
          const N = n.intAttr('N');
          if (a && N !== undefined) setShape([...a.slice(0, -1), num(N)]);
          return;
        }
        if (!a || !b || a.length < 1 || b.length < 1) return;
        const a2 = a.length === 1 ? [num(1), a[0]!] : a;
        const b2 = b.length === 1 ? [b[0]!, num(1)] : b;
        const batch = broadcast(a2.slice(0, -2), b2.slice(0, -2));
        if (!batch) return;
        const res = [...batch, ...(a.length === 1 ? [] : [a2[a2.length - 2]!]), ...(b.length === 1 ? [] : [b2[b2.length - 1]!])];
        return void setShape(res);
      }
      case 'Gemm': {
        const a = inShape(0);
        const b = inShape(1);
        if (!a || !b || a.length !== 2 || b.length !== 2) return;
        return void setShape([n.intAttr('transA', 0) ? a[1]! : a[0]!, n.intAttr('transB', 0) ? b[0]! : b[1]!]);
      }
      case 'Shape': {
        const s = inShape(0);
        if (!s) return;
        const start = n.intAttr('start', 0)!;
        const end = n.intAttr('end');
        const sliced = s.slice(start < 0 ? start + s.length : start, end === undefined ? undefined : end);
        setShape([num(sliced.length)]);
        return void setValue(sliced);
      }
      case 'Size': {
        const s = inShape(0);
        setShape([]);
        if (s && s.every((d) => d)) setValue([product(s as Sym[])]);
        return;
      }
      case 'Reshape': {
        const s = inShape(0);
        const target = inValue(1);
        if (!target) return;
        const x = inValue(0);
        if (x && target.length === 1) setValue(x);
        return void setShape(reshapeTarget(s, target, n.intAttr('allowzero', 0) === 1));
      }
      case 'Transpose': {
        const s = inShape(0);
        if (!s) return;
        const perm = n.intsAttr('perm') ?? s.map((_, i) => s.length - 1 - i);
        return void setShape(perm.map((p) => s[p] ?? null));
      }
      case 'Unsqueeze': {
        const s = inShape(0);
        const axes = n.intsAttr('axes') ?? numbers(inValue(1));
        if (!s || !axes) return;
        const rank = s.length + axes.length;
        const norm = new Set(axes.map((a) => (a < 0 ? a + rank : a)));
        const res: MaybeSym[] = [];
        for (let i = 0, j = 0; i < rank; i++) res.push(norm.has(i) ? num(1) : (s[j++] ?? null));
        setShape(res);
        const x = inValue(0);
        if (x && s.length === 0) setValue(x);
        else if (x && s.length === 1) setValue(x);
        return;
      }
      case 'Squeeze': {
        const s = inShape(0);
        if (!s) return;
        const axes = n.intsAttr('axes') ?? numbers(inValue(1));
        const drop = axes ? new Set(axes.map((a) => (a < 0 ? a + s.length : a))) : new Set(s.flatMap((d, i) => (d && symEqual(d, num(1)) ? [i] : [])));
        setShape(s.filter((_, i) => !drop.has(i)));
        const x = inValue(0);
        if (x) setValue(x);
        return;
      }
      case 'Concat': {
        const shapes = n.inputs.map((v) => this.shape(v));
        const axis = n.intAttr('axis', 0)!;
        const first = shapes[0];
        if (first && shapes.every((s) => s && s.length === first.length)) {
          const a = axis < 0 ? axis + first.length : axis;
          // a sum of different sizes (past + new tokens) is no product: it gets a name of its own
          const res = first.map((d, i) => (i === a ? (sumDims(shapes.map((s) => s![i] ?? null)) ?? named(`${out.name}:${i}`)) : d));
          setShape(res);
        }
        const vals = n.inputs.map((v) => this.value(v));
        if (vals.every((x) => x)) setValue(vals.flatMap((x) => x!));
        return;
      }
      case 'Split': {
        const s = inShape(0);
        if (!s) return;
        const a = normAxis(n.intAttr('axis', 0)!, s.length);
        const sizes = numbers(inValue(1)) ?? n.intsAttr('split');
        n.outputs.forEach((o, i) => {
          let d: MaybeSym = null;
          if (sizes) d = num(sizes[i]!);
          else if (s[a]) d = divExact(s[a]!, num(n.outputs.length)) ?? null;
          setShape(s.map((x, j) => (j === a ? d : x)), o);
        });
        return;
      }
      case 'Slice': {
        const s = inShape(0);
        const starts = inValue(1) ?? n.intsAttr('starts')?.map(num);
        const ends = inValue(2) ?? n.intsAttr('ends')?.map(num);
        if (!s || !starts || !ends) return;
        const axes = (n.input(3) ? numbers(inValue(3)) : n.intsAttr('axes')) ?? starts.map((_, i) => i);
        const steps = (n.input(4) ? numbers(inValue(4)) : undefined) ?? starts.map(() => 1);
        const res = [...s];
        axes.forEach((ax, i) => {
          const a = normAxis(ax, s.length);
          res[a] = slicedDim(s[a] ?? null, starts[i] ?? null, ends[i] ?? null, steps[i]!);
        });
        setShape(res);
        const x = inValue(0);
        const st = starts[0];
        const en = ends[0];
        if (x && s.length === 1 && axes.length === 1 && steps[0] === 1 && st && en && isNumber(st) && isNumber(en)) {
          setValue(x.slice(clamp(st.c, x.length), clamp(en.c, x.length)));
        }
        return;
      }
      case 'Gather': {
        const s = inShape(0);
        const idx = inShape(1);
        if (!s || !idx) return;
        const a = normAxis(n.intAttr('axis', 0)!, s.length);
        setShape([...s.slice(0, a), ...idx, ...s.slice(a + 1)]);
        const x = inValue(0);
        const i = numbers(inValue(1));
        if (x && i && s.length === 1) setValue(i.map((k) => x[k < 0 ? k + x.length : k] ?? null));
        return;
      }
      case 'ConstantOfShape': {
        const shape = inValue(0);
        setShape(shape);
        const a = n.attr('value');
        const fill = a?.type === 'tensor' ? a.value.toNumbers()[0] ?? 0 : 0;
        if (a?.type === 'tensor' && FLOAT_TYPES.has(a.value.dtype)) this.floating.add(out);
        if (shape && shape.every((d) => d && isNumber(d)) && product(shape as Sym[]).c <= MAX_VALUE_SIZE) setValue(new Array(product(shape as Sym[]).c).fill(num(fill)));
        return;
      }
      case 'Conv': {
        const x = inShape(0);
        const w = inShape(1);
        if (!x || !w || x.length < 3) return;
        const pads = n.intsAttr('pads') ?? new Array<number>(2 * (x.length - 2)).fill(0);
        const strides = n.intsAttr('strides') ?? new Array<number>(x.length - 2).fill(1);
        const dil = n.intsAttr('dilations') ?? new Array<number>(x.length - 2).fill(1);
        const autoPad = n.attr('auto_pad');
        if (autoPad?.type === 'string' && new TextDecoder().decode(autoPad.value) !== 'NOTSET') return;
        const spatial = x.slice(2).map((d, i) => {
          const k = w[i + 2];
          if (!d || !isNumber(d) || !k || !isNumber(k)) return null;
          return num(Math.floor((d.c + pads[i]! + pads[i + x.length - 2]! - dil[i]! * (k.c - 1) - 1) / strides[i]!) + 1);
        });
        return void setShape([x[0]!, w[0]!, ...spatial]);
      }
      case 'Expand': {
        const target = inValue(1);
        setShape(target && broadcast(inShape(0) ?? [], target));
        return;
      }
      case 'Tile': {
        const s = inShape(0);
        const reps = inValue(1);
        if (s && reps && reps.length === s.length) setShape(s.map((d, i) => (d && reps[i] ? mul(d, reps[i]!) : null)));
        return;
      }
      case 'Range': {
        const [st, lim, dl] = [0, 1, 2].map((i) => this.scalar(n.input(i)));
        if (st !== undefined && lim !== undefined && dl) return void setShape([num(Math.max(0, Math.ceil((lim - st) / dl)))]);
        if (st === 0 && dl === 1) {
          const limit = inValue(1)?.[0];
          if (limit) return void setShape([limit]);
        }
        return;
      }
      case 'Flatten': {
        const s = inShape(0);
        if (!s || !s.every((d) => d)) return;
        const a = normAxis(n.intAttr('axis', 1)!, s.length);
        return void setShape([product(s.slice(0, a) as Sym[]), product(s.slice(a) as Sym[])]);
      }
      default:
        // an op of a custom domain with one output: most are activations; assume it keeps its input's shape
        if (n.domain && n.domain !== 'ai.onnx' && n.domain !== 'com.microsoft' && n.outputs.length === 1) return void setShape(inShape(0));
        if (REDUCE.has(op)) {
          const s = inShape(0);
          if (!s) return;
          const axes = n.intsAttr('axes') ?? (op.startsWith('Arg') ? [n.intAttr('axis', 0)!] : numbers(inValue(1)));
          const keep = n.intAttr('keepdims', 1) === 1;
          const all = axes ?? s.map((_, i) => i);
          const drop = new Set(all.map((a) => normAxis(a, s.length)));
          setShape(keep ? s.map((d, i) => (drop.has(i) ? num(1) : d)) : s.filter((_, i) => !drop.has(i)));
        }
    }
  }
}

function normAxis(a: number, rank: number): number {
  return a < 0 ? a + rank : a;
}

function clamp(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  return Math.max(0, Math.min(n, j));
}

function numbers(x: MaybeSym[] | undefined): number[] | undefined {
  if (!x || !x.every((d) => d && isNumber(d))) return undefined;
  return x.map((d) => d!.c);
}

/** Numpy broadcasting of two shapes; unknown where a dim cannot be told. */
export function broadcast(a: MaybeSym[] | undefined, b: MaybeSym[] | undefined): MaybeSym[] | undefined {
  if (!a || !b) return undefined;
  const rank = Math.max(a.length, b.length);
  const out: MaybeSym[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? num(1);
    const y = b[b.length - rank + i] ?? num(1);
    if (x && symEqual(x, num(1))) out.push(y);
    else if (y && symEqual(y, num(1))) out.push(x);
    else if (x && y && symEqual(x, y)) out.push(x);
    else out.push(x ?? y);
  }
  return out;
}

function elementwise(op: string, a: MaybeSym[] | undefined, b: MaybeSym[] | undefined): MaybeSym[] | undefined {
  if (!a || !b || (a.length !== b.length && a.length !== 1 && b.length !== 1)) return undefined;
  const len = Math.max(a.length, b.length);
  const out: MaybeSym[] = [];
  for (let i = 0; i < len; i++) {
    const x = a[a.length === 1 ? 0 : i] ?? null;
    const y = b[b.length === 1 ? 0 : i] ?? null;
    if (!x || !y) {
      out.push(null);
      continue;
    }
    switch (op) {
      case 'Mul':
        out.push(mul(x, y));
        break;
      case 'Div':
        out.push(isNumber(x) && isNumber(y) && y.c !== 0 ? num(x.c / y.c) : (divExact(x, y) ?? null));
        break;
      case 'Add':
      case 'Sub': {
        const sameNames = x.s.length === y.s.length && x.s.every((n, k) => n === y.s[k]);
        out.push(sameNames ? { c: op === 'Add' ? x.c + y.c : x.c - y.c, s: x.s } : null);
        break;
      }
      case 'Pow':
        out.push(isNumber(x) && isNumber(y) ? num(x.c ** y.c) : null);
        break;
      case 'Equal':
        // dims are positive: a symbolic dim never equals a constant such as -1
        out.push(isNumber(x) && isNumber(y) ? num(x.c === y.c ? 1 : 0) : symEqual(x, y) ? num(1) : isNumber(x) !== isNumber(y) && (x.c < 0 || y.c < 0) ? num(0) : null);
        break;
      case 'IntDiv':
        out.push(isNumber(x) && isNumber(y) && y.c !== 0 ? num(Math.trunc(x.c / y.c)) : (divExact(x, y) ?? null));
        break;
      default:
        out.push(null);
    }
  }
  return out;
}

function select(cond: MaybeSym[] | undefined, a: MaybeSym[] | undefined, b: MaybeSym[] | undefined): MaybeSym[] | undefined {
  if (!cond || !a || !b) return undefined;
  const len = Math.max(cond.length, a.length, b.length);
  const at = (x: MaybeSym[], i: number) => x[x.length === 1 ? 0 : i] ?? null;
  const out: MaybeSym[] = [];
  for (let i = 0; i < len; i++) {
    const c = at(cond, i);
    out.push(c && isNumber(c) ? (c.c !== 0 ? at(a, i) : at(b, i)) : null);
  }
  return out;
}

function sumDims(dims: MaybeSym[]): MaybeSym {
  if (dims.some((d) => !d)) return null;
  const first = dims[0]!;
  if (!dims.every((d) => d!.s.length === first.s.length && d!.s.every((n, k) => n === first.s[k]))) return null;
  return { c: dims.reduce((t, d) => t + d!.c, 0), s: first.s };
}

function slicedDim(d: MaybeSym, start: MaybeSym, end: MaybeSym, step: number): MaybeSym {
  const BIG = 2 ** 31 - 1;
  if (!start || !end || !isNumber(start)) return null;
  if (d && isNumber(d) && isNumber(end)) {
    const n = d.c;
    const st = clamp(start.c, n);
    const en = clamp(end.c, n);
    return num(step > 0 ? Math.max(0, Math.ceil((en - st) / step)) : Math.max(0, Math.ceil((st - en) / -step)));
  }
  if (step !== 1 || start.c < 0) return null;
  if (start.c === 0 && isNumber(end) && end.c >= BIG) return d;
  // x[:T] with a symbolic T (torch's causal-mask slices): T, assuming it fits
  if (start.c === 0 && !isNumber(end)) return end;
  return null;
}

/** The output shape of a Reshape: 0 copies the input's dim (unless allowzero), -1 takes what is left. */
export function reshapeTarget(input: MaybeSym[] | undefined, target: MaybeSym[], allowZero: boolean): MaybeSym[] | undefined {
  const out: MaybeSym[] = target.map((t, i) => {
    if (t && isNumber(t) && t.c === 0 && !allowZero) return input?.[i] ?? null;
    if (t && isNumber(t) && t.c === -1) return null;
    return t;
  });
  const inferAt = target.findIndex((t) => t && isNumber(t) && t.c === -1);
  if (inferAt >= 0 && input && input.every((d) => d) && out.every((d, i) => i === inferAt || d)) {
    const known = product(out.filter((_, i) => i !== inferAt) as Sym[]);
    out[inferAt] = divExact(product(input as Sym[]), known) ?? null;
  }
  return out;
}
