// From scores to a plan: a share of MLP neurons (uniform per layer or ranked globally), a FLOP
// budget filled greedily with heads and neurons (OPTIN), or AMP's per-MLP width search.
import type { UnitCosts } from './cost.js';
import type { MaskRunner, Scores } from './importance.js';
import { onesMask } from './importance.js';
import type { MaskLayout } from './mask.js';
import type { PrunePlan } from './surgery.js';

/** The plan that keeps every unit whose mask entry is 1. */
export function planFromMask(layout: MaskLayout, mask: Float32Array): PrunePlan {
  const mlpKeep = new Map<number, number[]>();
  const headKeep = new Map<number, number[]>();
  layout.units.forEach((u, i) => {
    if (mask[i] === 0) return;
    const m = u.kind === 'head' ? headKeep : mlpKeep;
    const list = m.get(u.block) ?? [];
    list.push(u.index);
    m.set(u.block, list);
  });
  return { mlpKeep, headKeep };
}

/** Removes `ratio` of the MLP neurons: the lowest-scored ones of each MLP, or of all of them. */
export function selectMlpRatio(layout: MaskLayout, scores: Scores, ratio: number, mode: 'uniform' | 'global'): Float32Array {
  const mask = onesMask(1, layout.units.length);
  const neurons = layout.units.map((u, i) => ({ u, i })).filter((x) => x.u.kind === 'neuron');
  if (mode === 'uniform') {
    for (const [block, width] of layout.neurons) {
      const off = layout.neuronOffset.get(block)!;
      const order = Array.from({ length: width }, (_, k) => off + k).sort((a, b) => scores[a]! - scores[b]!);
      const remove = Math.min(width - 1, Math.round(ratio * width));
      for (const i of order.slice(0, remove)) mask[i] = 0;
    }
    return mask;
  }
  const total = neurons.length;
  const target = Math.round(ratio * total);
  const left = new Map(layout.neurons);
  let removed = 0;
  for (const { u, i } of neurons.sort((a, b) => scores[a.i]! - scores[b.i]!)) {
    if (removed >= target) break;
    if (left.get(u.block)! <= 1) continue;
    mask[i] = 0;
    left.set(u.block, left.get(u.block)! - 1);
    removed++;
  }
  return mask;
}

/**
 * OPTIN's search: for every number of removed heads (lowest-scored first), remove the
 * lowest-scored neurons until the FLOPs fall to `targetFlops`; keep the combination that removes
 * the least total importance. Every attention keeps one head and every MLP one neuron.
 */
export function selectFlops(layout: MaskLayout, scores: Scores, costs: UnitCosts, baseFlops: number, targetFlops: number, options: { heads?: boolean } = {}): Float32Array {
  const all = flopCandidates(layout, scores, costs, baseFlops, targetFlops, options);
  const feasible = all.filter((c) => c.feasible);
  if (feasible.length === 0) return all.sort((a, b) => b.removed - a.removed)[0]!.mask;
  return feasible.sort((a, b) => a.lost - b.lost)[0]!.mask;
}

export interface FlopCandidate {
  mask: Float32Array;
  /** Heads removed. */
  heads: number;
  /** Sum of the removed units' scores. */
  lost: number;
  /** FLOPs removed (cost model). */
  removed: number;
  feasible: boolean;
}

/** The candidates of selectFlops, one per number of removed heads. */
export function flopCandidates(layout: MaskLayout, scores: Scores, costs: UnitCosts, baseFlops: number, targetFlops: number, options: { heads?: boolean } = {}): FlopCandidate[] {
  const need = baseFlops - targetFlops;
  const cost = (i: number): number => {
    const u = layout.units[i]!;
    return (u.kind === 'head' ? costs.head.get(u.block) : costs.neuron.get(u.block)) ?? 0;
  };
  const idx = layout.units.map((_, i) => i);
  const heads = options.heads === false ? [] : idx.filter((i) => layout.units[i]!.kind === 'head').sort((a, b) => scores[a]! - scores[b]!);
  const neurons = idx.filter((i) => layout.units[i]!.kind === 'neuron').sort((a, b) => scores[a]! - scores[b]!);
  const out: FlopCandidate[] = [];
  const headLeft = new Map(layout.heads);
  const removedHeads: number[] = [];
  let headFlops = 0;
  let headLost = 0;
  for (let nh = 0; nh <= heads.length; nh++) {
    if (nh > 0) {
      const i = heads[nh - 1]!;
      const b = layout.units[i]!.block;
      if (headLeft.get(b)! <= 1) continue;
      headLeft.set(b, headLeft.get(b)! - 1);
      removedHeads.push(i);
      headFlops += cost(i);
      headLost += scores[i]!;
    }
    const mask = onesMask(1, layout.units.length);
    for (const i of removedHeads) mask[i] = 0;
    let removed = headFlops;
    let lost = headLost;
    const left = new Map(layout.neurons);
    for (const i of neurons) {
      if (removed >= need) break;
      const b = layout.units[i]!.block;
      if (left.get(b)! <= 1) continue;
      left.set(b, left.get(b)! - 1);
      mask[i] = 0;
      removed += cost(i);
      lost += scores[i]!;
    }
    out.push({ mask, heads: removedHeads.length, lost, removed, feasible: removed >= need });
  }
  return out;
}

/**
 * Among the budget's candidates (one per number of removed heads), the one whose masked model
 * stays closest to the original: KL of the logits on the calibration batch, all candidates
 * evaluated in batched onnxruntime runs. Candidates whose score sum is far worse are skipped.
 */
export async function selectFlopsVerified(runner: MaskRunner, scores: Scores, costs: UnitCosts, baseFlops: number, targetFlops: number, options: { maxCandidates?: number; signal?: AbortSignal } = {}): Promise<Float32Array> {
  const all = flopCandidates(runner.layout, scores, costs, baseFlops, targetFlops).filter((c) => c.feasible);
  if (all.length === 0) return selectFlops(runner.layout, scores, costs, baseFlops, targetFlops);
  const shortlist = all.sort((a, b) => a.lost - b.lost).slice(0, options.maxCandidates ?? 16);
  const results = await runner.evaluate(shortlist.map((c) => c.mask), options.signal);
  let best = 0;
  results.forEach((r, i) => {
    if (r.kl < results[best]!.kl) best = i;
  });
  return shortlist[best]!.mask;
}

/**
 * AMP's adaptive width search: MLPs from the last to the first; for each, a binary search
 * (`steps` halvings) over how many of its highest-scored neurons to keep, accepting a width while
 * the entropy of the model's predictions rises by at most `maxIncrease` over the last accepted
 * value (so increases compound from layer to layer).
 */
export async function ampSearch(runner: MaskRunner, scores: Scores, maxIncrease: number, options: { steps?: number; signal?: AbortSignal } = {}): Promise<{ mask: Float32Array; widths: Map<number, number>; entropy: number; baseEntropy: number }> {
  const layout = runner.layout;
  const mask = onesMask(1, layout.units.length);
  const baseEntropy = await runner.baseEntropy();
  let prev = baseEntropy;
  const widths = new Map<number, number>();
  const blocks = [...layout.neurons.keys()].sort((a, b) => b - a);
  for (const block of blocks) {
    const width = layout.neurons.get(block)!;
    const off = layout.neuronOffset.get(block)!;
    const order = Array.from({ length: width }, (_, k) => off + k).sort((a, b) => scores[b]! - scores[a]!);
    let left = 0;
    let right = width;
    let bestWidth = width;
    let bestE = prev;
    for (let step = 0; step < (options.steps ?? 6); step++) {
      const mid = Math.max(1, (left + right) >> 1);
      const trial = Float32Array.from(mask);
      order.forEach((i, rank) => (trial[i] = rank < mid ? 1 : 0));
      const [r] = await runner.evaluate([trial], options.signal);
      if (r!.entropy - prev <= maxIncrease) {
        right = mid;
        bestWidth = mid;
        bestE = r!.entropy;
      } else left = mid;
      if (right - left <= 1) break;
    }
    order.forEach((i, rank) => (mask[i] = rank < bestWidth ? 1 : 0));
    widths.set(block, bestWidth);
    prev = bestE;
  }
  return { mask, widths, entropy: prev, baseEntropy };
}
