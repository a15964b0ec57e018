import { UserError } from '../errors.js';
import { batchSamples, batches, bindDataset } from '../data/bind.js';
import { asDataset, type DatasetInput } from '../data/as-dataset.js';
import type { Model } from '../ir/model.js';
import { inStep, type Progress, silentProgress } from '../progress.js';
import { Session } from '../runtime/session.js';
import { MetricAccumulator, type MetricName } from './metrics.js';

export interface EvaluateOptions {
  metrics: MetricName[];
  batchSize?: number;
  threads?: number;
  /** Which model output holds the scores (default: the first). */
  output?: string;
  progress?: Progress;
  signal?: AbortSignal;
}

export interface EvalResult {
  metrics: Record<string, number>;
  samples: number;
  /** Labelled positions scored (samples for a classifier, tokens for a language model). */
  positions: number;
  output: string;
  dataset: string;
  seconds: number;
}

/** Runs the model over a labelled dataset in batches and computes the metrics. */
export async function evaluate(model: Model, data: DatasetInput, options: EvaluateOptions): Promise<EvalResult> {
  const dataset = asDataset(data);
  const started = Date.now();
  const bound = bindDataset(dataset, model);
  if (!bound.hasLabels) throw new UserError(`dataset ${dataset.path} has no labels (label.pb per sample, or a 'label' array), which metric ${options.metrics[0]} needs`);
  const output = options.output ?? model.graph.outputs[0]?.name;
  if (!output || !model.graph.outputs.some((v) => v.name === output)) throw new UserError(`the model has no output named '${options.output}'`);
  const progress = options.progress ?? silentProgress;
  const session = await Session.create(model, { threads: options.threads });
  const acc = new MetricAccumulator();
  try {
    await inStep(progress, 'eval', dataset.size, async (tick) => {
      for (const batch of batches(bound, options.batchSize ?? 32)) {
        options.signal?.throwIfAborted();
        const out = await session.run(batch.feeds, [output]);
        acc.add(out[output]!, batch.label!, output, batchSamples(dataset, batch));
        tick(batch.start + batch.count);
      }
    });
  } finally {
    await session.release();
  }
  if (acc.count === 0) throw new UserError(`dataset ${dataset.path} has no labelled positions to score`);
  return {
    metrics: acc.result(options.metrics),
    samples: dataset.size,
    positions: acc.count,
    output,
    dataset: dataset.path,
    seconds: (Date.now() - started) / 1000,
  };
}
