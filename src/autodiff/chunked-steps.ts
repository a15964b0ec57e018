// A training loop of many steps run in chunks, each chunk one onnxruntime run (Trainer.stepEach,
// which keeps the parameters and optimizer state in onnxruntime within the chunk). A chunk aims
// at CHUNK_SECONDS of work, so an interrupt still lands within about that long; the first chunk
// is a single step that measures how long one takes.
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Trainer } from './optimizer.js';

/**
 * Wall time a chunk of steps aims at. Long enough that a step of a BERT-base-sized block
 * (about 0.15 s) runs in chunks of a dozen, which takes FlexRound's step from 175 to 142 ms;
 * short enough for Ctrl-C and progress to feel prompt.
 */
export const CHUNK_SECONDS = 2;
/** Most steps in one chunk (their mini-batches are stacked in memory). */
export const MAX_CHUNK = 32;

/**
 * Takes `count` steps of `trainer`, on the mini-batches `next()` returns in turn. `onLoss` sees
 * each step's loss (before its update) in order; `signal` is checked between chunks.
 */
export async function trainInChunks(trainer: Trainer, count: number, next: () => Record<string, ArrayTensor>, onLoss: (step: number, loss: number) => void, signal?: AbortSignal): Promise<void> {
  let chunk = 1;
  for (let i = 0; i < count; ) {
    signal?.throwIfAborted();
    const size = Math.min(chunk, count - i);
    const started = performance.now();
    const losses = await trainer.stepEach(Array.from({ length: size }, next));
    const perStep = (performance.now() - started) / 1000 / size;
    chunk = Math.max(1, Math.min(MAX_CHUNK, Math.floor(CHUNK_SECONDS / Math.max(perStep, 1e-6))));
    for (const loss of losses) onLoss(i++, loss);
  }
}
