import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import type { MaybeSym, SymbolicShapes } from './infer-shapes.js';
import { fail, nodeLabel, NoMatch } from './match.js';
import { divExact, isNumber, mul, num, product, symEqual, symText, type Sym } from './symbolic.js';

/**
 * Where the elements of a tensor along one axis come from: run-time token dims (batch, sequence),
 * or a factor of a projection's output features (feature index = offset + Σ index·stride), or a
 * repeat (grouped-query attention's repeat_kv, index ignored).
 */
export type Factor =
  | { kind: 'tok'; size: Sym; from?: Factor }
  | { kind: 'feat'; size: number; stride: number; from?: Factor }
  | { kind: 'rep'; size: number; from?: Factor };

/** A tensor described axis by axis (each axis a list of factors, outermost first; [] is size 1). */
export interface Layout {
  axes: Factor[][];
  /** The first feature of the projection this tensor was cut from. */
  offset: number;
}

/** An entry of a shape-like constant that holds a head count (times other sizes): pruning heads rewrites it. */
export interface HeadSite {
  node: Node;
  /** The input of `node` that holds the shape, split sizes or slice bounds. */
  slot: number;
  entry: number;
}

/** One step of a path from a projection to the scores: the node and the input the data enters by. */
export interface PathStep {
  node: Node;
  slot: number;
  /** Which output the path leaves by (Split has several). */
  out: number;
  /** Concat of a cached past with the new tokens along a token axis. */
  cacheConcat?: boolean;
}

export function axisSize(axis: readonly Factor[]): Sym {
  return product(axis.map((f) => (f.kind === 'tok' ? f.size : num(f.size))));
}

/** The layout of a linear layer's output: token axes, then all output features. */
export function projectionLayout(shape: MaybeSym[] | undefined, features: number): Layout | undefined {
  if (!shape || shape.length < 2 || shape.slice(0, -1).some((d) => !d)) return undefined;
  const axes: Factor[][] = shape.slice(0, -1).map((d) => (symEqual(d, num(1)) ? [] : [{ kind: 'tok', size: d! }]));
  axes.push([{ kind: 'feat', size: features, stride: 1 }]);
  return { axes, offset: 0 };
}

/**
 * Replays a path of layout ops (Reshape, Transpose, Split, Slice, Gather, Unsqueeze, Squeeze,
 * Expand, Concat with a cache) on a layout, and collects the shape entries that hold factors.
 * Element-preserving steps (Cast, scale, bias, rotary) leave the layout as it is.
 */
export class LayoutReplay {
  /** Per visited node and input slot: the factors behind each entry of the shape it reads. */
  readonly entries: { node: Node; slot: number; entry: number; factors: Factor[] }[] = [];

  constructor(
    private readonly shapes: SymbolicShapes,
    private readonly anchor: Node,
  ) {}

  run(layout: Layout, path: readonly PathStep[]): Layout | NoMatch {
    let cur = layout;
    for (const step of path) {
      const r = this.step(cur, step);
      if (r instanceof NoMatch) return r;
      cur = r;
    }
    return cur;
  }

  private fail(n: Node, why: string): NoMatch {
    return fail(this.anchor, `${why} at ${n.opType} '${nodeLabel(n)}'`);
  }

  step(layout: Layout, { node: n, out, cacheConcat }: PathStep): Layout | NoMatch {
    const axes = layout.axes;
    const rank = axes.length;
    const norm = (a: number, r = rank) => (a < 0 ? a + r : a);
    switch (n.opType) {
      case 'Transpose': {
        const perm = n.intsAttr('perm') ?? axes.map((_, i) => rank - 1 - i);
        if (perm.length !== rank) return this.fail(n, `a rank-${perm.length} permutation of a rank-${rank} tensor`);
        return { ...layout, axes: perm.map((p) => axes[p]!) };
      }
      case 'Reshape': {
        const target = this.shapes.shape(n.output(0));
        if (!target || target.some((d) => !d)) return this.fail(n, 'a reshape whose target cannot be told');
        const res = regroup(axes, target as Sym[]);
        if (typeof res === 'string') return this.fail(n, `a reshape of [${axes.map((a) => symText(axisSize(a))).join(',')}] into [${target.map(symText).join(',')}] (${res})`);
        res.forEach((factors, entry) => this.entries.push({ node: n, slot: 1, entry, factors }));
        return { ...layout, axes: res };
      }
      case 'Unsqueeze': {
        const list = n.intsAttr('axes') ?? numbersOf(this.shapes.value(n.input(1)));
        if (!list) return this.fail(n, 'unsqueeze axes that are not constant');
        const r = rank + list.length;
        const at = new Set(list.map((a) => norm(a, r)));
        const res: Factor[][] = [];
        for (let i = 0, j = 0; i < r; i++) res.push(at.has(i) ? [] : axes[j++]!);
        return { ...layout, axes: res };
      }
      case 'Squeeze': {
        const list = n.intsAttr('axes') ?? numbersOf(this.shapes.value(n.input(1))) ?? axes.flatMap((a, i) => (a.length === 0 ? [i] : []));
        const at = new Set(list.map((a) => norm(a)));
        if ([...at].some((a) => axes[a]?.length !== 0)) return this.fail(n, 'a squeeze of an axis that is not of size 1');
        return { ...layout, axes: axes.filter((_, i) => !at.has(i)) };
      }
      case 'Split': {
        const a = norm(n.intAttr('axis', 0)!);
        const sizes = numbersOf(this.shapes.value(n.input(1))) ?? n.intsAttr('split') ?? equalParts(axisSize(axes[a] ?? []), n.outputs.length);
        if (!sizes) return this.fail(n, 'split sizes that are not constant');
        const start = sizes.slice(0, out).reduce((s, x) => s + x, 0);
        const r = this.cut(layout, a, start, sizes[out]!, n);
        if (!(r instanceof NoMatch) && n.input(1)) sizes.forEach((_, entry) => this.entries.push({ node: n, slot: 1, entry, factors: [r.cutFrom] }));
        return r instanceof NoMatch ? r : r.layout;
      }
      case 'Slice': {
        const starts = numbersOf(this.shapes.value(n.input(1)));
        const ends = numbersOf(this.shapes.value(n.input(2)));
        const axList = n.input(3) ? numbersOf(this.shapes.value(n.input(3))) : undefined;
        const steps = n.input(4) ? numbersOf(this.shapes.value(n.input(4))) : undefined;
        if (!starts || !ends || (n.input(3) && !axList) || (steps && steps.some((s) => s !== 1))) return this.fail(n, 'a slice whose bounds cannot be told');
        let cur: Layout = layout;
        for (let i = 0; i < starts.length; i++) {
          const a = norm(axList?.[i] ?? i);
          const size = axisSize(cur.axes[a] ?? []);
          if (!isNumber(size)) {
            if (starts[i] === 0 && ends[i]! >= 2 ** 31 - 1) continue; // the whole token axis
            return this.fail(n, 'a slice of a token axis');
          }
          const st = clampIndex(starts[i]!, size.c);
          const en = clampIndex(ends[i]!, size.c);
          if (st === 0 && en === size.c) continue;
          const r = this.cut(cur, a, st, en - st, n);
          if (r instanceof NoMatch) return r;
          this.entries.push({ node: n, slot: 1, entry: i, factors: [r.cutFrom] }, { node: n, slot: 2, entry: i, factors: [r.cutFrom] });
          cur = r.layout;
        }
        return cur;
      }
      case 'Gather': {
        const idx = this.shapes.value(n.input(1));
        const idxShape = this.shapes.shape(n.input(1));
        if (!idx || idx.length !== 1 || !idx[0] || !isNumber(idx[0])) return this.fail(n, 'a gather by an index that is not one constant');
        const a = norm(n.intAttr('axis', 0)!);
        const size = axisSize(axes[a] ?? []);
        if (!isNumber(size)) return this.fail(n, 'a gather along a token axis');
        const r = this.cut(layout, a, clampIndex(idx[0].c, size.c), 1, n);
        if (r instanceof NoMatch) return r;
        const scalar = idxShape?.length === 0;
        return { ...r.layout, axes: scalar ? r.layout.axes.filter((_, i) => i !== a) : r.layout.axes };
      }
      case 'Expand': {
        const target = this.shapes.shape(n.output(0));
        if (!target || target.length !== rank) return this.fail(n, 'an expand that changes the rank');
        const res = axes.map((ax, i) => {
          const d = target[i];
          if (ax.length === 0 && d && isNumber(d) && d.c > 1) return [{ kind: 'rep', size: d.c } as Factor];
          return ax;
        });
        res.forEach((factors, entry) => this.entries.push({ node: n, slot: 1, entry, factors }));
        return { ...layout, axes: res };
      }
      case 'Concat': {
        if (!cacheConcat) return this.fail(n, 'a concat');
        const a = norm(n.intAttr('axis', 0)!);
        if (axes[a]?.some((f) => f.kind !== 'tok')) return this.fail(n, 'a cache concat along a feature axis');
        const d = this.shapes.shape(n.output(0))?.[a];
        if (!d) return this.fail(n, 'a cache concat of unknown length');
        return { ...layout, axes: axes.map((ax, i) => (i === a ? [{ kind: 'tok', size: d }] : ax)) };
      }
      default:
        return layout; // element-preserving
    }
  }

  /** Keeps elements [start, start+len) of axis `a`: a range of its outermost feature factor. */
  private cut(layout: Layout, a: number, start: number, len: number, n: Node): { layout: Layout; cutFrom: Factor } | NoMatch {
    const ax = layout.axes[a];
    if (!ax || ax.length === 0) return this.fail(n, 'a cut of a size-1 axis');
    const [first, ...inner] = ax;
    const innerSize = axisSize(inner);
    if (first!.kind !== 'feat' || !isNumber(innerSize)) return this.fail(n, 'a cut that is not along projection features');
    const step = innerSize.c;
    if (start % step !== 0 || len % step !== 0) return this.fail(n, 'a cut across a head boundary');
    const piece: Factor = { kind: 'feat', size: len / step, stride: first!.stride, from: first };
    const axesOut = layout.axes.map((x, i) => (i === a ? [...(piece.size === 1 ? [] : [piece]), ...inner] : x));
    return { layout: { axes: axesOut, offset: layout.offset + (start / step) * first!.stride }, cutFrom: first! };
  }
}

/**
 * Groups the factors of `axes` (row-major) into the dims of `target`, splitting a feature factor
 * where a dim takes only part of it. Returns a reason when the sizes do not line up.
 */
export function regroup(axes: readonly Factor[][], target: readonly Sym[]): Factor[][] | string {
  const queue: Factor[] = axes.flat();
  const out: Factor[][] = [];
  for (const dim of target) {
    const group: Factor[] = [];
    let acc: Sym = num(1);
    while (!symEqual(acc, dim)) {
      const need = divExact(dim, acc);
      const f = queue.shift();
      if (!need || !f) return `sizes do not line up: dim ${symText(dim)} of the target`;
      const size = f.kind === 'tok' ? f.size : num(f.size);
      if (divExact(need, size)) {
        group.push(f);
        acc = mul(acc, size);
        continue;
      }
      const rest = divExact(size, need);
      if (f.kind === 'feat' && rest && isNumber(rest) && isNumber(need)) {
        group.push({ kind: 'feat', size: need.c, stride: f.stride * rest.c, from: f });
        queue.unshift({ kind: 'feat', size: rest.c, stride: f.stride, from: f });
        acc = dim;
        continue;
      }
      if (f.kind === 'tok' && rest) {
        // tokens flattened for a Gemm ([B·S, D]) and unflattened again
        group.push({ kind: 'tok', size: need, from: f });
        queue.unshift({ kind: 'tok', size: rest, from: f });
        acc = dim;
        continue;
      }
      return `a ${f.kind === 'tok' ? 'token' : f.kind} axis of size ${symText(size)} is split into ${symText(need)}`;
    }
    out.push(group);
  }
  if (queue.length > 0) return 'factors are left over after the reshape';
  return out;
}

function numbersOf(x: MaybeSym[] | undefined): number[] | undefined {
  if (!x || !x.every((d) => d && isNumber(d))) return undefined;
  return x.map((d) => d!.c);
}

function equalParts(size: Sym, parts: number): number[] | undefined {
  if (!isNumber(size) || size.c % parts !== 0) return undefined;
  return new Array<number>(parts).fill(size.c / parts);
}

function clampIndex(i: number, n: number): number {
  const j = i < 0 ? i + n : i;
  return Math.max(0, Math.min(n, j));
}

/** The factor and all the factors it was cut or split from. */
export function lineage(f: Factor): Factor[] {
  const out: Factor[] = [];
  for (let x: Factor | undefined = f; x; x = x.from) out.push(x);
  return out;
}

