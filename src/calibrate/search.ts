/**
 * Searches of clipping windows over histogram bins. A window is [lo, hi) in bin indices.
 * Small spaces are searched exhaustively; larger ones on a coarse grid first, then around the
 * best point with the step halved until it is one bin.
 */

/** Coarse grid resolution: spaces of up to this many points per axis are searched exhaustively. */
export const GRID_POINTS = 64;

/** The best hi in [from, to] (inclusive) for a cost(hi). */
export function search1d(from: number, to: number, cost: (hi: number) => number, grid = GRID_POINTS): number {
  let best = to;
  let bestCost = cost(to);
  const visit = (x: number): void => {
    if (x < from || x > to) return;
    const c = cost(x);
    if (c < bestCost || (c === bestCost && x > best)) {
      best = x;
      bestCost = c;
    }
  };
  let step = Math.max(1, Math.ceil((to - from) / grid));
  for (let x = from; x <= to; x += step) visit(x);
  // refine around the best point, halving the step; at one bin, walk until nothing improves
  for (let round = 0; round < 256; round++) {
    const wasFine = step === 1;
    step = Math.max(1, Math.ceil(step / 2));
    const center = best;
    for (let d = -2; d <= 2; d++) if (d !== 0) visit(center + d * step);
    if (wasFine && best === center) break;
  }
  return best;
}

/**
 * The best window [lo, hi) with from <= lo, hi <= to and hi - lo >= minLength, for a
 * cost(lo, hi). Ties go to the wider window.
 */
export function search2d(from: number, to: number, minLength: number, cost: (lo: number, hi: number) => number, grid = GRID_POINTS): [number, number] {
  let best: [number, number] = [from, to];
  let bestCost = cost(from, to);
  const visit = (lo: number, hi: number): void => {
    if (lo < from || hi > to || hi - lo < minLength) return;
    const c = cost(lo, hi);
    if (c < bestCost || (c === bestCost && hi - lo > best[1] - best[0])) {
      best = [lo, hi];
      bestCost = c;
    }
  };
  let step = Math.max(1, Math.ceil((to - from - minLength) / grid));
  const los: number[] = [];
  for (let lo = from; lo <= to - minLength; lo += step) los.push(lo);
  for (const lo of los) {
    for (let hi = to; hi >= lo + minLength; hi -= step) visit(lo, hi);
    visit(lo, lo + minLength);
  }
  for (let round = 0; round < 256; round++) {
    const wasFine = step === 1;
    step = Math.max(1, Math.ceil(step / 2));
    const center = best;
    const [l0, h0] = center;
    for (let dl = -2; dl <= 2; dl++) for (let dh = -2; dh <= 2; dh++) if (dl !== 0 || dh !== 0) visit(l0 + dl * step, h0 + dh * step);
    if (wasFine && best === center) break;
  }
  return best;
}
