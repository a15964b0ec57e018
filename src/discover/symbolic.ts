/**
 * Symbolic dimensions: a number times a product of named sizes ("batch", "seq"), so that
 * shapes computed at run time (torch's Shape -> Gather -> Concat targets, the batch·heads axis
 * of torch's MultiheadAttention) can be compared and divided without running the model.
 */
export interface Sym {
  /** The numeric factor (an integer for dims; any number for scalars such as a scale). */
  c: number;
  /** The named factors, sorted, repeated for powers; empty for a plain number. */
  s: readonly string[];
}

export const num = (c: number): Sym => ({ c, s: [] });
export const named = (name: string): Sym => ({ c: 1, s: [name] });

export function isNumber(d: Sym): boolean {
  return d.s.length === 0;
}

export function mul(a: Sym, b: Sym): Sym {
  return { c: a.c * b.c, s: [...a.s, ...b.s].sort() };
}

/** a / b when b's named factors are among a's and the numbers divide exactly (dims), else undefined. */
export function divExact(a: Sym, b: Sym): Sym | undefined {
  if (b.c === 0) return undefined;
  const rest = [...a.s];
  for (const n of b.s) {
    const i = rest.indexOf(n);
    if (i < 0) return undefined;
    rest.splice(i, 1);
  }
  const c = a.c / b.c;
  if (!Number.isInteger(c)) return undefined;
  return { c, s: rest };
}

export function symEqual(a: Sym | null | undefined, b: Sym | null | undefined): boolean {
  return !!a && !!b && a.c === b.c && a.s.length === b.s.length && a.s.every((x, i) => x === b.s[i]);
}

export function product(dims: readonly Sym[]): Sym {
  return dims.reduce(mul, num(1));
}

export function symText(d: Sym | null | undefined): string {
  if (!d) return '?';
  if (d.s.length === 0) return String(d.c);
  return [...(d.c === 1 ? [] : [String(d.c)]), ...d.s].join('*');
}
