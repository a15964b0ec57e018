// Reference computations for the observer tests, written plainly in float64 and independently
// of src/calibrate (no shared helpers), so a bug in one does not hide in both.

/** Seeded uniform numbers (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function normals(n: number, seed: number, std = 1, mean = 0): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: n }, () => mean + std * Math.sqrt(-2 * Math.log(Math.max(u(), 1e-12))) * Math.cos(2 * Math.PI * u()));
}

/** Laplace samples: heavy tails, where clipping pays off. */
export function laplace(n: number, seed: number, b = 1, mean = 0): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: n }, () => {
    const x = u() - 0.5;
    return mean - b * Math.sign(x) * Math.log(Math.max(1 - 2 * Math.abs(x), 1e-12));
  });
}

/** The value at quantile q of the data (sorted, the element at ceil(q * n) - 1). */
export function quantile(data: ArrayLike<number>, q: number): number {
  const s = Float64Array.from(data).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** Mean squared error of quantizing `data` with range [lo, hi] (onnxruntime's convention). */
export function quantMse(data: ArrayLike<number>, lo: number, hi: number, bits: number, symmetric: boolean): number {
  let scale: number;
  let zp: number;
  let qmin: number;
  let qmax: number;
  if (symmetric) {
    qmax = 2 ** (bits - 1) - 1;
    qmin = -qmax;
    scale = Math.max(Math.abs(lo), Math.abs(hi)) / qmax;
    zp = 0;
  } else {
    qmin = 0;
    qmax = 2 ** bits - 1;
    const a = Math.min(lo, 0);
    const b = Math.max(hi, 0);
    scale = (b - a) / qmax;
    zp = Math.min(qmax, Math.max(qmin, Math.round(-a / scale)));
  }
  let sum = 0;
  for (let i = 0; i < data.length; i++) {
    const x = data[i]!;
    const q = Math.min(qmax, Math.max(qmin, Math.round(x / scale) + zp));
    const d = x - (q - zp) * scale;
    sum += d * d;
  }
  return sum / data.length;
}

/**
 * KL divergence of a window [lo, hi) of a histogram quantized into nq bins, written the way
 * onnxruntime's get_entropy_threshold reads (with q kept in floating point and the last group
 * holding the remainder for both the merge and the expansion).
 */
export function referenceKl(hist: ArrayLike<number>, lo: number, hi: number, nq: number): number {
  const h = Array.from(hist);
  const sliced = h.slice(lo, hi);
  const p = sliced.slice();
  p[0]! += h.slice(0, lo).reduce((a, b) => a + b, 0);
  p[p.length - 1]! += h.slice(hi).reduce((a, b) => a + b, 0);
  const nonzero: number[] = p.map((v) => (v !== 0 ? 1 : 0));
  const m = Math.floor(sliced.length / nq);
  const groups: [number, number][] = [];
  for (let j = 0; j < nq; j++) groups.push([j * m, j === nq - 1 ? sliced.length : (j + 1) * m]);
  const q = new Array<number>(p.length).fill(0);
  for (const [s, e] of groups) {
    const total = sliced.slice(s, e).reduce((a, b) => a + b, 0);
    const norm = nonzero.slice(s, e).reduce((a, b) => a + b, 0);
    if (norm !== 0) for (let k = s; k < e; k++) q[k] = nonzero[k] ? total / norm : 0;
  }
  const smooth = (d: number[]): number[] | undefined => {
    const zeros = d.filter((v) => v === 0).length;
    const nz = d.length - zeros;
    if (nz === 0) return undefined;
    const eps = 1e-4;
    const eps1 = (eps * zeros) / nz;
    const out = d.map((v) => (v === 0 ? eps : v - eps1));
    return out.some((v) => v <= 0) ? undefined : out;
  };
  const ps = smooth(p);
  const qs = smooth(q);
  if (!ps || !qs) return Infinity;
  const sp = ps.reduce((a, b) => a + b, 0);
  const sq = qs.reduce((a, b) => a + b, 0);
  let kl = 0;
  for (let k = 0; k < ps.length; k++) {
    const a = ps[k]! / sp;
    kl += a * Math.log(a / (qs[k]! / sq));
  }
  return kl;
}
