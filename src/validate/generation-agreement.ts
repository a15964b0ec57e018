import { UserError } from '../errors.js';
import type { DecoderRunner, SequenceLogits } from './decoder-runner.js';

export interface GenerationOptions {
  /** Prompts of one length, as token ids. */
  prompts: readonly (readonly number[])[];
  /** Tokens each model generates after each prompt. */
  newTokens: number;
  /** Size of the top-k sets compared. */
  topK: number;
  signal?: AbortSignal;
}

export interface GenerationComparison {
  /** Share of the prompts × newTokens generated positions where both models chose the same token. */
  tokenAgreement: number;
  /** Mean over prompts of the first position (0-based) where the continuations differ; newTokens when they never do. */
  firstDivergence: number;
  /** Mean over the baseline's generated positions of |top-k(baseline) ∩ top-k(candidate)| / k. */
  topkAgreement: number;
  prompts: number;
  newTokens: number;
  topK: number;
  baselineTokens: number[][];
  candidateTokens: number[][];
}

/** Token agreement and mean first divergence of two sets of continuations, prompt by prompt. */
export function continuationAgreement(baseline: readonly (readonly number[])[], candidate: readonly (readonly number[])[]): { tokenAgreement: number; firstDivergence: number } {
  let same = 0;
  let total = 0;
  let divergence = 0;
  baseline.forEach((b, p) => {
    const c = candidate[p]!;
    let first = b.length;
    for (let i = 0; i < b.length; i++) {
      if (b[i] === c[i]) same++;
      else if (first === b.length) first = i;
      total++;
    }
    divergence += first;
  });
  return { tokenAgreement: same / total, firstDivergence: divergence / baseline.length };
}

/** The k ids with the largest scores in row `row`; ties go to the lower id. */
export function topKIds(l: SequenceLogits, row: number, k: number): number[] {
  const base = row * l.vocab;
  const ids = Array.from({ length: l.vocab }, (_, v) => v);
  ids.sort((a, b) => l.data[base + b]! - l.data[base + a]! || a - b);
  return ids.slice(0, k);
}

/**
 * Greedy generation by both models from the same prompts, through each model's cache when it has
 * one. Token agreement and first divergence compare the two free-running continuations. Top-k
 * agreement compares next-token distributions on the same context: both models read the prompt
 * followed by the baseline's continuation (teacher forcing, one pass each), and at each of the
 * newTokens positions the overlap of their top-k sets is counted.
 */
export async function compareGeneration(baseline: DecoderRunner, candidate: DecoderRunner, options: GenerationOptions): Promise<GenerationComparison> {
  const { prompts, newTokens, topK } = options;
  if (prompts.length === 0) throw new UserError('generation agreement needs at least one prompt');
  const promptLength = prompts[0]!.length;
  if (promptLength === 0 || prompts.some((p) => p.length !== promptLength)) throw new UserError('the prompts must be non-empty and of one length');
  if (!Number.isInteger(newTokens) || newTokens < 1) throw new UserError(`the number of new tokens must be a positive whole number, not ${newTokens}`);
  if (!Number.isInteger(topK) || topK < 1) throw new UserError(`top-k must be a positive whole number, not ${topK}`);
  for (const r of [baseline, candidate]) {
    const fixed = r.io.fixedLength;
    if (fixed !== undefined && promptLength + newTokens - 1 > fixed) {
      throw new UserError(`the ${r.io.who} takes ${fixed} tokens at most, fewer than a prompt of ${promptLength} and ${newTokens} new tokens need (${promptLength + newTokens - 1}); shorten --prompt-length or --new-tokens`);
    }
  }
  options.signal?.throwIfAborted();
  const baselineTokens = await baseline.greedy(prompts, newTokens);
  options.signal?.throwIfAborted();
  const candidateTokens = await candidate.greedy(prompts, newTokens);
  options.signal?.throwIfAborted();
  const { tokenAgreement, firstDivergence } = continuationAgreement(baselineTokens, candidateTokens);

  // the context for position i is the prompt and the baseline's first i tokens
  const contexts = prompts.map((p, i) => [...p, ...baselineTokens[i]!.slice(0, newTokens - 1)]);
  const lb = await baseline.forward(contexts);
  const lc = await candidate.forward(contexts);
  const vocab = lb[0]!.vocab;
  if (lc[0]!.vocab !== vocab) throw new UserError(`the ${baseline.io.who} scores ${vocab} tokens but the ${candidate.io.who} ${lc[0]!.vocab}; generation cannot be compared`);
  const k = Math.min(topK, vocab);
  let overlap = 0;
  for (let p = 0; p < prompts.length; p++) {
    for (let i = 0; i < newTokens; i++) {
      const row = promptLength - 1 + i;
      const b = new Set(topKIds(lb[p]!, row, k));
      overlap += topKIds(lc[p]!, row, k).filter((id) => b.has(id)).length / k;
    }
  }
  return {
    tokenAgreement,
    firstDivergence,
    topkAgreement: overlap / (prompts.length * newTokens),
    prompts: prompts.length,
    newTokens,
    topK: k,
    baselineTokens,
    candidateTokens,
  };
}
