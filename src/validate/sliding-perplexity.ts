import { UserError } from '../errors.js';
import type { DecoderRunner, SequenceLogits } from './decoder-runner.js';

export interface SlidingOptions {
  /** Tokens the model sees at once. */
  window: number;
  /** How far each window starts after the previous one (1 ≤ stride ≤ window). */
  stride: number;
  signal?: AbortSignal;
}

export interface SlidingResult {
  /** Mean negative log-likelihood of the scored tokens, in nats. */
  nll: number;
  perplexity: number;
  /** Tokens scored (each at most once). */
  tokens: number;
  windows: number;
}

/** One window of the stream: tokens [begin, end), of which [scoreFrom, end) are scored. */
export interface Window {
  begin: number;
  end: number;
  scoreFrom: number;
}

/**
 * The windows of the standard sliding-window recipe (Hugging Face's "Perplexity of fixed-length
 * models"): a window of `window` tokens starts every `stride` tokens; each window scores only the
 * tokens the previous window did not reach, so every token is scored once, with the longest
 * context the recipe gives it. A window's first token has no context inside the window and is
 * never scored (the stream's token 0; with stride = window, each window's first token).
 */
export function slidingWindows(length: number, window: number, stride: number): Window[] {
  if (!Number.isInteger(window) || window < 2) throw new UserError(`the window must be a whole number of at least 2 tokens, not ${window}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > window) throw new UserError(`the stride must be a whole number from 1 to the window (${window}), not ${stride}`);
  if (length < 2) throw new UserError(`the token stream has ${length} token${length === 1 ? '' : 's'}; perplexity needs at least 2`);
  const out: Window[] = [];
  let previousEnd = 0;
  for (let begin = 0; begin < length; begin += stride) {
    const end = Math.min(begin + window, length);
    const scoreFrom = Math.max(previousEnd, begin + 1);
    if (scoreFrom < end) out.push({ begin, end, scoreFrom });
    previousEnd = end;
    if (end === length) break;
  }
  return out;
}

/**
 * Perplexity of a decoder over a token stream by the sliding-window recipe. The mean is over
 * tokens (every scored token weighs the same), accumulated in float64. Windows of one length are
 * run together in batches.
 */
export async function slidingPerplexity(runner: DecoderRunner, stream: ArrayLike<number>, options: SlidingOptions): Promise<SlidingResult> {
  const windows = slidingWindows(stream.length, options.window, options.stride);
  let nllSum = 0;
  let tokens = 0;
  const BATCH = 8;
  for (let at = 0; at < windows.length; ) {
    // a batch: consecutive windows of one length (only the last window can be shorter)
    const length = windows[at]!.end - windows[at]!.begin;
    let stop = at;
    while (stop < windows.length && stop - at < BATCH && windows[stop]!.end - windows[stop]!.begin === length) stop++;
    const group = windows.slice(at, stop);
    options.signal?.throwIfAborted();
    const logits = await runner.forward(group.map((w) => Array.from({ length }, (_, i) => stream[w.begin + i]!)));
    group.forEach((w, b) => {
      for (let j = w.scoreFrom; j < w.end; j++) {
        nllSum += tokenNll(logits[b]!, j - 1 - w.begin, stream[j]!);
        tokens++;
      }
    });
    at = stop;
  }
  const nll = nllSum / tokens;
  return { nll, perplexity: Math.exp(nll), tokens, windows: windows.length };
}

/** logsumexp(row) − row[target], in float64. */
function tokenNll(l: SequenceLogits, row: number, target: number): number {
  const base = row * l.vocab;
  if (target >= l.vocab) throw new UserError(`token id ${target} is outside the model's ${l.vocab} output classes`);
  let max = -Infinity;
  for (let v = 0; v < l.vocab; v++) max = Math.max(max, l.data[base + v]!);
  let sum = 0;
  for (let v = 0; v < l.vocab; v++) sum += Math.exp(l.data[base + v]! - max);
  return Math.log(sum) + max - l.data[base + target]!;
}
