import { UserError } from '../errors.js';
import { batches, bindDataset } from '../data/bind.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import type { Progress } from '../progress.js';
import { Session } from '../runtime/session.js';
import type { CalibrationMethod } from './scheme.js';

export interface Range {
  min: number;
  max: number;
}

/**
 * Per-tensor ranges of the named activations over the calibration set, streamed batch by
 * batch. (minmax here; the observers of src/calibrate provide the other methods.)
 */
export async function activationRanges(model: Model, dataset: Dataset, tensors: string[], options: { method: CalibrationMethod; batchSize?: number; threads?: number; progress: Progress; signal: AbortSignal }): Promise<Map<string, Range>> {
  const bound = bindDataset(dataset, model);
  const session = await Session.create(model, { expose: tensors, threads: options.threads, memoryArena: false });
  const ranges = new Map<string, Range>(tensors.map((t) => [t, { min: Infinity, max: -Infinity }]));
  try {
    options.progress.start('calibrate', dataset.size);
    for (const batch of batches(bound, options.batchSize ?? 8)) {
      options.signal.throwIfAborted();
      const out = await session.run(batch.feeds, tensors);
      for (const t of tensors) {
        const d = out[t]!.data as Float32Array;
        const r = ranges.get(t)!;
        for (let i = 0; i < d.length; i++) {
          const v = d[i]!;
          if (v < r.min) r.min = v;
          if (v > r.max) r.max = v;
          if (v !== v || v === Infinity || v === -Infinity) throw new UserError(`calibration: tensor '${t}' holds NaN or Inf on ${dataset.where(batch.start)}`);
        }
      }
      options.progress.tick(batch.start + batch.count);
    }
    options.progress.end();
  } finally {
    await session.release();
  }
  return ranges;
}
