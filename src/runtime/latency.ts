// Latency of models as deployed: onnxruntime's own defaults (worker threads spinning between
// runs), each model timed on back-to-back runs of its own session.
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Model } from '../ir/model.js';
import { Session } from './session.js';

export interface LatencyOptions {
  /** Timed runs per model (rounds). */
  rounds: number;
  /** Untimed runs per model before the first round (default 2). */
  warmup?: number;
  threads?: number;
  signal?: AbortSignal;
}

/**
 * Median latency in ms of each model on the same feeds. Rounds are interleaved (every round runs
 * every model in turn), so load from other processes hits all models alike. In every round each
 * model runs twice and only the second run is timed: the first one absorbs the previous model's
 * worker threads, still spinning, which otherwise cost a run on small models up to twice its
 * time.
 */
export async function medianLatencies(models: readonly Model[], feeds: Record<string, ArrayTensor>, options: LatencyOptions): Promise<number[]> {
  const sessions: Session[] = [];
  try {
    for (const m of models) sessions.push(await Session.create(m, { threads: options.threads, spinning: true }));
    for (const s of sessions) for (let i = 0; i < (options.warmup ?? 2); i++) await s.run(feeds);
    const times: number[][] = sessions.map(() => []);
    for (let r = 0; r < options.rounds; r++) {
      for (let i = 0; i < sessions.length; i++) {
        options.signal?.throwIfAborted();
        await sessions[i]!.run(feeds);
        const t0 = performance.now();
        await sessions[i]!.run(feeds);
        times[i]!.push(performance.now() - t0);
      }
    }
    return times.map(median);
  } finally {
    for (const s of sessions) await s.release();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}
