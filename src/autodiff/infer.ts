// Element types, shapes and small constant values of a graph's tensors, as far as they can be
// told without running it. The gradient builder uses them to pick static forms (the axes a
// broadcast gradient must be summed over, the rank of a transpose) and falls back to shape
// arithmetic at run time where they cannot be told.
import type { Attribute } from '../ir/attribute.js';
import { DataType, isFloatType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';
import type { Tensor } from '../ir/tensor.js';
import type { Dim, Value } from '../ir/value.js';

export interface TensorInfo {
  dtype?: DataType;
  /** Dims: a number, a symbolic name (same name = same size), or null (unknown). */
  shape?: Dim[];
  /** The elements of a small integer tensor (a shape vector, axes, an index), when known. */
  value?: Dim[];
  /** The whole constant, for initializers and Constant outputs. */
  constant?: Tensor;
}

const SMALL = 64;

/** Infers what it can for every value of `graph` (not its subgraphs), in topological order. */
export function inferTypes(graph: Graph, seed?: ReadonlyMap<Value, TensorInfo>): Map<Value, TensorInfo> {
  const info = new Map<Value, TensorInfo>();
  const get = (v: Value | undefined): TensorInfo => {
    if (!v) return {};
    const known = info.get(v) ?? seed?.get(v);
    if (known) return known;
    const t = v.initializer;
    if (t) {
      const i: TensorInfo = { dtype: t.dtype, shape: [...t.dims], constant: t };
      if (t.size <= SMALL && isIntType(t.dtype) && !t.isExternal) i.value = t.toNumbers();
      info.set(v, i);
      return i;
    }
    if (v.type?.kind === 'tensor') return { dtype: v.type.dtype, shape: v.type.shape ? [...v.type.shape] : undefined };
    return {};
  };
  for (const v of graph.inputs) info.set(v, seed?.get(v) ?? get(v));
  for (const node of graph.topologicalOrder()) {
    let outs: TensorInfo[];
    try {
      outs = inferNode(node, node.inputs.map(get));
    } catch {
      outs = [];
    }
    node.outputs.forEach((o, i) => {
      const inferred = outs[i] ?? {};
      const declared = o.type?.kind === 'tensor' ? o.type : undefined;
      const merged: TensorInfo = { ...inferred };
      if (merged.dtype === undefined && declared) merged.dtype = declared.dtype;
      if (declared?.shape && (!merged.shape || merged.shape.length !== declared.shape.length)) merged.shape = [...declared.shape];
      else if (declared?.shape && merged.shape) merged.shape = merged.shape.map((d, k) => (d === null ? declared.shape![k]! : d));
      info.set(o, merged);
    });
  }
  return info;
}

export function isIntType(d: DataType | undefined): boolean {
  return d === DataType.INT64 || d === DataType.INT32 || d === DataType.INT16 || d === DataType.INT8 || d === DataType.UINT8 || d === DataType.UINT16 || d === DataType.UINT32 || d === DataType.UINT64;
}

export function isFloat(d: DataType | undefined): boolean {
  return d !== undefined && isFloatType(d);
}

function attrInts(node: Node, name: string): number[] | undefined {
  return node.intsAttr(name);
}

function tensorAttr(node: Node, name: string): Tensor | undefined {
  const a: Attribute | undefined = node.attr(name);
  return a?.type === 'tensor' ? a.value : undefined;
}

/** Broadcast of dims (numpy rules) as far as it can be told. */
export function broadcastShapes(shapes: (Dim[] | undefined)[]): Dim[] | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(0, ...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const dims = shapes.map((s) => s![s!.length - rank + i]).filter((d): d is Dim => d !== undefined);
    const notOne = dims.filter((d) => d !== 1);
    if (notOne.length === 0) out.push(1);
    else if (notOne.some((d) => typeof d === 'number')) out.push(notOne.find((d) => typeof d === 'number')!);
    else if (notOne.every((d) => d === notOne[0] && d !== null) && notOne.length === dims.length) out.push(notOne[0]!);
    else out.push(null);
  }
  return out;
}

function normAxis(a: number, rank: number): number {
  return a < 0 ? a + rank : a;
}

function numbers(v: Dim[] | undefined): number[] | undefined {
  if (!v || v.some((d) => typeof d !== 'number')) return undefined;
  return v as number[];
}

function product(dims: Dim[]): Dim {
  let p = 1;
  for (const d of dims) {
    if (typeof d !== 'number') return null;
    p *= d;
  }
  return p;
}

function elementwiseValue(op: string, a: Dim[] | undefined, b: Dim[] | undefined): Dim[] | undefined {
  if (!a || !b) return undefined;
  const n = Math.max(a.length, b.length);
  if ((a.length !== n && a.length !== 1) || (b.length !== n && b.length !== 1)) return undefined;
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length === 1 ? 0 : i]!;
    const y = b[b.length === 1 ? 0 : i]!;
    if (typeof x !== 'number' || typeof y !== 'number') {
      if (op === 'Mul' && (x === 1 || y === 1)) out.push(x === 1 ? y : x);
      else out.push(null);
      continue;
    }
    switch (op) {
      case 'Add':
        out.push(x + y);
        break;
      case 'Sub':
        out.push(x - y);
        break;
      case 'Mul':
        out.push(x * y);
        break;
      case 'Div':
        out.push(y === 0 ? null : Math.trunc(x / y));
        break;
      default:
        return undefined;
    }
  }
  return out;
}

/** The output infos of one node from its input infos (empty objects where unknown). */
export function inferNode(node: Node, ins: TensorInfo[]): TensorInfo[] {
  const x = ins[0] ?? {};
  const same = (): TensorInfo[] => [{ dtype: x.dtype, shape: x.shape }];
  const op = node.domain === '' || node.domain === 'ai.onnx' ? node.opType : `${node.domain}::${node.opType}`;
  switch (op) {
    case 'Identity':
      return [{ ...x, constant: undefined }];
    case 'Neg':
    case 'Abs':
    case 'Exp':
    case 'Log':
    case 'Sqrt':
    case 'Reciprocal':
    case 'Erf':
    case 'Tanh':
    case 'Sigmoid':
    case 'Relu':
    case 'Gelu':
    case 'com.microsoft::Gelu':
    case 'com.microsoft::FastGelu':
    case 'Round':
    case 'Floor':
    case 'Ceil':
    case 'Sign':
    case 'Softmax':
    case 'LogSoftmax':
    case 'Clip':
    case 'LeakyRelu':
    case 'Elu':
    case 'Softplus':
    case 'HardSigmoid':
    case 'Sin':
    case 'Cos':
    case 'Trilu':
      return same();
    case 'Dropout':
      return [{ dtype: x.dtype, shape: x.shape }, { dtype: DataType.BOOL, shape: x.shape }];
    case 'Not':
      return [{ dtype: DataType.BOOL, shape: x.shape }];
    case 'IsNaN':
    case 'IsInf':
      return [{ dtype: DataType.BOOL, shape: x.shape }];
    case 'Cast': {
      const to = node.intAttr('to') as DataType | undefined;
      return [{ dtype: to, shape: x.shape, value: x.value && isIntType(to) ? x.value : undefined }];
    }
    case 'CastLike':
      return [{ dtype: ins[1]?.dtype, shape: x.shape, value: x.value }];
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div':
    case 'Pow':
    case 'Max':
    case 'Min':
    case 'Mod':
    case 'Sum':
    case 'Mean': {
      const shape = broadcastShapes(ins.map((i) => i.shape));
      const value = ins.length === 2 && isIntType(x.dtype) ? elementwiseValue(op, x.value, ins[1]?.value) : undefined;
      return [{ dtype: x.dtype, shape, value }];
    }
    case 'Equal':
    case 'Less':
    case 'LessOrEqual':
    case 'Greater':
    case 'GreaterOrEqual':
    case 'And':
    case 'Or':
    case 'Xor':
      return [{ dtype: DataType.BOOL, shape: broadcastShapes(ins.map((i) => i.shape)) }];
    case 'Where':
      return [{ dtype: ins[1]?.dtype ?? ins[2]?.dtype, shape: broadcastShapes(ins.map((i) => i.shape)) }];
    case 'MatMul':
      return [{ dtype: x.dtype, shape: matmulShape(x.shape, ins[1]?.shape) }];
    case 'com.microsoft::FusedMatMul': {
      const swap = (d: Dim[] | undefined, on: number): Dim[] | undefined => (d && on && d.length >= 2 ? [...d.slice(0, -2), d[d.length - 1]!, d[d.length - 2]!] : d);
      return [{ dtype: x.dtype, shape: matmulShape(swap(x.shape, node.intAttr('transA', 0)), swap(ins[1]?.shape, node.intAttr('transB', 0))) }];
    }
    case 'Gemm': {
      const a = x.shape;
      const b = ins[1]?.shape;
      const m = a ? (node.intAttr('transA', 0) ? a[1] : a[0]) : null;
      const n = b ? (node.intAttr('transB', 0) ? b[0] : b[1]) : null;
      return [{ dtype: x.dtype, shape: [m ?? null, n ?? null] }];
    }
    case 'Shape': {
      if (!x.shape) return [{ dtype: DataType.INT64 }];
      const r = x.shape.length;
      let start = node.intAttr('start', 0);
      let end = node.intAttr('end', r);
      start = Math.max(0, Math.min(r, normAxis(start, r)));
      end = Math.max(0, Math.min(r, normAxis(end, r)));
      const value = x.shape.slice(start, end);
      return [{ dtype: DataType.INT64, shape: [value.length], value }];
    }
    case 'Size':
      return [{ dtype: DataType.INT64, shape: [], value: x.shape ? [product(x.shape)] : undefined }];
    case 'Constant': {
      const t = tensorAttr(node, 'value');
      if (t) return [{ dtype: t.dtype, shape: [...t.dims], constant: t, value: t.size <= SMALL && isIntType(t.dtype) ? t.toNumbers() : undefined }];
      const f = node.floatAttr('value_float');
      if (f !== undefined) return [{ dtype: DataType.FLOAT, shape: [] }];
      const i = node.intAttr('value_int');
      if (i !== undefined) return [{ dtype: DataType.INT64, shape: [], value: [i] }];
      const fs = node.attr('value_floats');
      if (fs?.type === 'floats') return [{ dtype: DataType.FLOAT, shape: [fs.value.length] }];
      const is = node.intsAttr('value_ints');
      if (is) return [{ dtype: DataType.INT64, shape: [is.length], value: is }];
      return [{}];
    }
    case 'ConstantOfShape': {
      const t = tensorAttr(node, 'value');
      return [{ dtype: t?.dtype ?? DataType.FLOAT, shape: x.value ? [...x.value] : x.shape?.[0] !== undefined && typeof x.shape[0] === 'number' ? new Array<Dim>(x.shape[0]).fill(null) : undefined }];
    }
    case 'Range':
      return [{ dtype: x.dtype, shape: [null] }];
    case 'NonZero':
      return [{ dtype: DataType.INT64, shape: [x.shape?.length ?? null, null] }];
    case 'ArgMax':
    case 'ArgMin': {
      if (!x.shape) return [{ dtype: DataType.INT64 }];
      const r = x.shape.length;
      const axis = normAxis(node.intAttr('axis', 0), r);
      const keep = node.intAttr('keepdims', 1);
      const shape = x.shape.flatMap((d, i) => (i === axis ? (keep ? [1] : []) : [d]));
      return [{ dtype: DataType.INT64, shape }];
    }
    case 'Transpose': {
      if (!x.shape) return [{ dtype: x.dtype }];
      const perm = attrInts(node, 'perm') ?? x.shape.map((_, i) => x.shape!.length - 1 - i);
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape![p] ?? null) }];
    }
    case 'Reshape': {
      const target = ins[1]?.value;
      if (!target) {
        const len = ins[1]?.shape?.[0];
        return [{ dtype: x.dtype, shape: typeof len === 'number' ? new Array<Dim>(len).fill(null) : undefined }];
      }
      const allowZero = node.intAttr('allowzero', 0) === 1;
      const dims: Dim[] = target.map((d, i) => (d === 0 && !allowZero ? (x.shape?.[i] ?? null) : d));
      const k = dims.indexOf(-1);
      if (k >= 0) {
        const total = x.shape ? product(x.shape) : null;
        const rest = product(dims.filter((_, i) => i !== k));
        dims[k] = typeof total === 'number' && typeof rest === 'number' && rest !== 0 ? total / rest : inferMinusOne(x.shape, dims, k);
      }
      return [{ dtype: x.dtype, shape: dims, value: x.value && dims.length === 1 ? x.value : undefined }];
    }
    case 'Flatten': {
      if (!x.shape) return [{ dtype: x.dtype, shape: [null, null] }];
      const axis = normAxis(node.intAttr('axis', 1), x.shape.length);
      return [{ dtype: x.dtype, shape: [product(x.shape.slice(0, axis)), product(x.shape.slice(axis))] }];
    }
    case 'Squeeze': {
      const axes = ins[1]?.value ?? attrInts(node, 'axes');
      if (!x.shape) return [{ dtype: x.dtype }];
      const r = x.shape.length;
      let shape: Dim[];
      if (!axes) {
        if (x.shape.some((d) => typeof d !== 'number')) return [{ dtype: x.dtype }];
        shape = x.shape.filter((d) => d !== 1);
      } else {
        const set = new Set((axes as number[]).map((a) => normAxis(Number(a), r)));
        shape = x.shape.filter((_, i) => !set.has(i));
      }
      return [{ dtype: x.dtype, shape, value: x.value }];
    }
    case 'Unsqueeze': {
      const axes = ins[1]?.value ?? attrInts(node, 'axes');
      if (!x.shape || !axes || axes.some((a) => typeof a !== 'number')) return [{ dtype: x.dtype, value: x.value }];
      const r = x.shape.length + axes.length;
      const set = new Set((axes as number[]).map((a) => normAxis(a, r)));
      const shape: Dim[] = [];
      let k = 0;
      for (let i = 0; i < r; i++) shape.push(set.has(i) ? 1 : (x.shape[k++] ?? null));
      return [{ dtype: x.dtype, shape, value: x.value }];
    }
    case 'Concat': {
      const shapes = ins.map((i) => i.shape);
      const first = shapes.find((s) => s !== undefined);
      let shape: Dim[] | undefined;
      if (first && shapes.every((s) => s !== undefined && s.length === first.length)) {
        const axis = normAxis(node.intAttr('axis', 0), first.length);
        shape = first.map((d, i) => (i === axis ? sumDims(shapes.map((s) => s![i]!)) : d));
      }
      const value = ins.every((i) => i.value) ? ins.flatMap((i) => i.value!) : undefined;
      return [{ dtype: x.dtype ?? ins.find((i) => i.dtype !== undefined)?.dtype, shape, value }];
    }
    case 'Split': {
      const n = node.outputs.length;
      if (!x.shape) return node.outputs.map(() => ({ dtype: x.dtype }));
      const axis = normAxis(node.intAttr('axis', 0), x.shape.length);
      const sizes = numbers(ins[1]?.value) ?? attrInts(node, 'split');
      const dim = x.shape[axis];
      return node.outputs.map((_, i) => {
        let d: Dim = null;
        if (sizes) d = sizes[i] ?? null;
        else if (typeof dim === 'number') {
          const chunk = Math.ceil(dim / n);
          d = i < n - 1 ? chunk : dim - chunk * (n - 1);
        }
        return { dtype: x.dtype, shape: x.shape!.map((e, k) => (k === axis ? d : e)) };
      });
    }
    case 'Slice': {
      const starts = numbers(ins[1]?.value);
      const ends = numbers(ins[2]?.value);
      const axesIn = ins[3]?.value;
      const steps = numbers(ins[4]?.value);
      if (!x.shape) return [{ dtype: x.dtype }];
      const r = x.shape.length;
      const shape = [...x.shape];
      if (!starts || !ends) {
        const axes = numbers(axesIn);
        if (axes) for (const a of axes) shape[normAxis(a, r)] = null;
        else return [{ dtype: x.dtype, shape: shape.map(() => null) }];
        return [{ dtype: x.dtype, shape }];
      }
      const axes = numbers(axesIn) ?? starts.map((_, i) => i);
      let value = x.value;
      axes.forEach((a0, i) => {
        const a = normAxis(a0, r);
        const step = steps?.[i] ?? 1;
        const d = r === 1 && x.value ? x.value.length : shape[a];
        if (typeof d !== 'number') {
          shape[a] = null;
          value = undefined;
          return;
        }
        const [s, e] = sliceRange(starts[i]!, ends[i]!, step, d);
        const count = step > 0 ? Math.max(0, Math.ceil((e - s) / step)) : Math.max(0, Math.ceil((s - e) / -step));
        shape[a] = count;
        if (value && r === 1) {
          const picked: Dim[] = [];
          for (let k = 0, j = s; k < count; k++, j += step) picked.push(value[j]!);
          value = picked;
        }
      });
      return [{ dtype: x.dtype, shape, value }];
    }
    case 'Gather': {
      const idx = ins[1] ?? {};
      if (!x.shape || !idx.shape) return [{ dtype: x.dtype }];
      const axis = normAxis(node.intAttr('axis', 0), x.shape.length);
      const shape = [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)];
      let value: Dim[] | undefined;
      const iv = numbers(idx.value);
      if (x.value && iv && x.shape.length === 1) value = iv.map((i) => x.value![i < 0 ? i + x.value!.length : i] ?? null);
      return [{ dtype: x.dtype, shape, value }];
    }
    case 'Expand': {
      const target = ins[1]?.value;
      if (target) return [{ dtype: x.dtype, shape: broadcastShapes([x.shape, target]) }];
      const len = ins[1]?.shape?.[0];
      if (x.shape && typeof len === 'number') return [{ dtype: x.dtype, shape: new Array<Dim>(Math.max(len, x.shape.length)).fill(null) }];
      return [{ dtype: x.dtype }];
    }
    case 'Tile': {
      const reps = numbers(ins[1]?.value);
      if (!x.shape) return [{ dtype: x.dtype }];
      return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (reps && typeof d === 'number' ? d * reps[i]! : null)) }];
    }
    case 'Pad': {
      if (!x.shape) return [{ dtype: x.dtype }];
      const pads = numbers(ins[1]?.value) ?? attrInts(node, 'pads');
      const r = x.shape.length;
      return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (pads && typeof d === 'number' ? d + pads[i]! + pads[i + r]! : null)) }];
    }
    case 'ReduceSum':
    case 'ReduceMean':
    case 'ReduceMax':
    case 'ReduceMin':
    case 'ReduceProd':
    case 'ReduceL2':
    case 'ReduceSumSquare': {
      if (!x.shape) return [{ dtype: x.dtype }];
      const r = x.shape.length;
      const axesIn = node.input(1) ? ins[1]?.value : attrInts(node, 'axes');
      if (node.input(1) && !axesIn) return [{ dtype: x.dtype }];
      const keep = node.intAttr('keepdims', 1) === 1;
      const noop = node.intAttr('noop_with_empty_axes', 0) === 1;
      const axes = numbers(axesIn) ?? [];
      if (axes.length === 0 && noop) return same();
      const set = new Set(axes.length === 0 ? x.shape.map((_, i) => i) : axes.map((a) => normAxis(a, r)));
      return [{ dtype: x.dtype, shape: x.shape.flatMap((d, i) => (set.has(i) ? (keep ? [1] : []) : [d])) }];
    }
    case 'LayerNormalization':
    case 'SimplifiedLayerNormalization':
    case 'RMSNormalization':
    case 'com.microsoft::SimplifiedLayerNormalization': {
      const stats: TensorInfo = { dtype: DataType.FLOAT };
      if (x.shape) {
        const axis = normAxis(node.intAttr('axis', -1), x.shape.length);
        stats.shape = x.shape.map((d, i) => (i >= axis ? 1 : d));
      }
      return [{ dtype: x.dtype, shape: x.shape }, stats, stats];
    }
    case 'QuantizeLinear': {
      const dtype = ins[2]?.dtype ?? (node.intAttr('output_dtype') as DataType | undefined) ?? DataType.UINT8;
      return [{ dtype: dtype || DataType.UINT8, shape: x.shape }];
    }
    case 'DequantizeLinear':
      return [{ dtype: ins[1]?.dtype ?? DataType.FLOAT, shape: x.shape }];
    case 'ScatterElements':
    case 'ScatterND':
      return same();
    case 'Conv':
      return [{ dtype: x.dtype, shape: convShape(node, x.shape, ins[1]?.shape) }];
    case 'OneHot':
      return [{ dtype: ins[2]?.dtype }];
    default:
      return [];
  }
}

function sumDims(dims: Dim[]): Dim {
  let s = 0;
  for (const d of dims) {
    if (typeof d !== 'number') return null;
    s += d;
  }
  return s;
}

/** A -1 in a reshape target whose other entries copy the input's symbolic dims. */
function inferMinusOne(input: Dim[] | undefined, dims: Dim[], k: number): Dim {
  if (!input) return null;
  // the unknown entry is what is left of the input once the target's other entries are taken out
  const rest = [...input];
  for (let i = 0; i < dims.length; i++) {
    if (i === k) continue;
    const at = rest.indexOf(dims[i]!);
    if (at < 0) return null;
    rest.splice(at, 1);
  }
  return rest.length === 1 ? rest[0]! : product(rest);
}

/** Start and end of a slice along an axis of size `dim`, clamped as ONNX Slice does. */
export function sliceRange(start: number, end: number, step: number, dim: number): [number, number] {
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = Math.max(0, Math.min(dim, s));
    e = Math.max(0, Math.min(dim, e));
  } else {
    s = Math.max(-1, Math.min(dim - 1, s));
    e = Math.max(-1, Math.min(dim - 1, e));
  }
  return [s, e];
}

function matmulShape(a: Dim[] | undefined, b: Dim[] | undefined): Dim[] | undefined {
  if (!a || !b) return undefined;
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)]) ?? [];
  const out = [...batch, a2[a2.length - 2]!, b2[b2.length - 1]!];
  if (a.length === 1) out.splice(out.length - 2, 1);
  if (b.length === 1) out.splice(out.length - 1, 1);
  return out;
}

/** Output dims of a Conv (explicit pads or auto_pad), as far as the input and kernel tell them. */
function convShape(node: Node, x: Dim[] | undefined, w: Dim[] | undefined): Dim[] | undefined {
  if (!x) return undefined;
  const spatial = x.length - 2;
  const kernel = node.intsAttr('kernel_shape') ?? (w ? w.slice(2) : undefined);
  const strides = node.intsAttr('strides') ?? new Array<number>(spatial).fill(1);
  const dilations = node.intsAttr('dilations') ?? new Array<number>(spatial).fill(1);
  const pads = node.intsAttr('pads') ?? new Array<number>(2 * spatial).fill(0);
  const auto = node.attr('auto_pad');
  const autoPad = auto?.type === 'string' ? new TextDecoder().decode(auto.value) : 'NOTSET';
  const out: Dim[] = [x[0] ?? null, w?.[0] ?? null];
  for (let i = 0; i < spatial; i++) {
    const d = x[i + 2];
    const k = kernel?.[i];
    if (typeof d !== 'number' || typeof k !== 'number') {
      out.push(null);
      continue;
    }
    const s = strides[i]!;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') out.push(Math.ceil(d / s));
    else if (autoPad === 'VALID') out.push(Math.floor((d - (k - 1) * dilations[i]! - 1) / s) + 1);
    else out.push(Math.floor((d + pads[i]! + pads[i + spatial]! - (k - 1) * dilations[i]! - 1) / s) + 1);
  }
  return out;
}
