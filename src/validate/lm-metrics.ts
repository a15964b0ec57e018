import { UserError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../ir/model.js';
import { modelInputs } from '../data/bind.js';
import { type DecoderIo, decoderIo } from './decoder-io.js';
import { DecoderRunner } from './decoder-runner.js';
import { compareGeneration } from './generation-agreement.js';
import { slidingPerplexity, slidingWindows } from './sliding-perplexity.js';
import { type TokenStream, promptsFromStream, tokenStreamFromDataset } from './token-stream.js';

/** Language-model metrics: the first two score each model on a token stream, the rest compare the two models' generation. */
export const LM_METRICS = ['stream-nll', 'stream-perplexity', 'gen-agreement', 'gen-divergence', 'topk-agreement'] as const;
export type LmMetricName = (typeof LM_METRICS)[number];
export const STREAM_METRICS: readonly LmMetricName[] = ['stream-nll', 'stream-perplexity'];

export function isLmMetricName(s: string): s is LmMetricName {
  return (LM_METRICS as readonly string[]).includes(s);
}

export interface LmOptions {
  /** The token stream; default: the dataset's input_ids, sample after sample. */
  tokens?: TokenStream;
  /** Tokens per window (default: the model's fixed sequence length, else the dataset's sample length). */
  window?: number;
  /** Tokens between window starts (default: half the window). */
  stride?: number;
  prompts?: number;
  promptLength?: number;
  newTokens?: number;
  topK?: number;
}

export const LM_DEFAULTS = { prompts: 8, promptLength: 16, newTokens: 32, topK: 5 } as const;

/** What the LM metrics ran on, for reports. */
export interface LmSetup {
  source: string;
  /** The baseline's logits output. */
  output: string;
  streamTokens: number;
  window?: number;
  stride?: number;
  /** Tokens scored by the sliding window. */
  scoredTokens?: number;
  prompts?: number;
  promptLength?: number;
  newTokens?: number;
  topK?: number;
}

export interface LmMeasurement {
  /** Per model, each metric asked for. */
  values: Record<string, number>[];
  setup: LmSetup;
}

/**
 * Checks everything the language-model metrics need (each model's decoder signature, the token
 * stream, window, stride, prompts) without running a model, and returns the run. A problem is a
 * UserError naming the model, file or option.
 */
export function prepareLmMetrics(
  models: { model: Model; who: string }[],
  metrics: readonly LmMetricName[],
  options: LmOptions,
  dataset: Dataset | undefined,
): (threads: number | undefined, signal?: AbortSignal) => Promise<LmMeasurement> {
  const ios = models.map(({ model, who }) => decoderIo(model, who));
  const first = ios[0]!;
  const stream = options.tokens ?? streamFromDataset(dataset, first, models[0]!.model);
  for (const io of ios) {
    if (io.vocabRows === undefined) continue;
    const bad = stream.ids.findIndex((v) => v >= io.vocabRows!);
    if (bad >= 0) throw new UserError(`${stream.source} holds token id ${stream.ids[bad]} at position ${bad}, outside the ${io.vocabRows} rows of the ${io.who}'s embedding table`);
  }
  const setup: LmSetup = { source: stream.source, output: first.logits, streamTokens: stream.ids.length };
  const wantStream = metrics.some((m) => STREAM_METRICS.includes(m));
  const wantGeneration = metrics.some((m) => !STREAM_METRICS.includes(m));
  if (wantStream) {
    const fixed = Math.min(...ios.map((io) => io.fixedLength ?? Infinity));
    const window = options.window ?? (Number.isFinite(fixed) ? fixed : sampleLength(dataset, options, first));
    if (window === undefined) throw new UserError('stream perplexity needs --window (tokens per window): the model does not fix its sequence length and the tokens do not come from a dataset of fixed-length samples');
    if (window > fixed) throw new UserError(`--window ${window} is longer than the ${ios.find((io) => io.fixedLength === fixed)!.who} takes (${fixed} tokens, fixed in input '${first.ids}')`);
    const stride = options.stride ?? Math.max(1, Math.floor(window / 2));
    setup.window = window;
    setup.stride = stride;
    slidingWindows(stream.ids.length, window, stride);
  }
  let prompts: number[][] = [];
  if (wantGeneration) {
    if (models.length < 2) throw new UserError(`${metrics.find((m) => !STREAM_METRICS.includes(m))} compares a candidate with a baseline; use slimformer gate`);
    setup.prompts = options.prompts ?? LM_DEFAULTS.prompts;
    setup.promptLength = options.promptLength ?? LM_DEFAULTS.promptLength;
    setup.newTokens = options.newTokens ?? LM_DEFAULTS.newTokens;
    setup.topK = options.topK ?? LM_DEFAULTS.topK;
    if (!Number.isInteger(setup.newTokens) || setup.newTokens < 1) throw new UserError(`--new-tokens takes a positive whole number, not ${setup.newTokens}`);
    if (!Number.isInteger(setup.topK) || setup.topK < 1) throw new UserError(`--top-k takes a positive whole number, not ${setup.topK}`);
    prompts = promptsFromStream(stream, setup.prompts, setup.promptLength);
    for (const io of ios) {
      if (io.fixedLength !== undefined && setup.promptLength + setup.newTokens - 1 > io.fixedLength) {
        throw new UserError(`the ${io.who} takes ${io.fixedLength} tokens at most, fewer than a prompt of ${setup.promptLength} and ${setup.newTokens} new tokens need (${setup.promptLength + setup.newTokens - 1}); shorten --prompt-length or --new-tokens`);
      }
    }
  }

  return async (threads, signal) => {
    const runners: DecoderRunner[] = [];
    try {
      for (const { model, who } of models) runners.push(await DecoderRunner.create(model, who, threads));
      const values: Record<string, number>[] = runners.map(() => ({}));
      if (wantStream) {
        for (const [i, r] of runners.entries()) {
          const s = await slidingPerplexity(r, stream.ids, { window: setup.window!, stride: setup.stride!, signal });
          values[i]!['stream-nll'] = s.nll;
          values[i]!['stream-perplexity'] = s.perplexity;
          setup.scoredTokens = s.tokens;
        }
      }
      if (wantGeneration) {
        const g = await compareGeneration(runners[0]!, runners[1]!, { prompts, newTokens: setup.newTokens!, topK: setup.topK!, signal });
        setup.topK = g.topK;
        // the baseline compared with itself: every token equal, no divergence, full top-k overlap
        Object.assign(values[0]!, { 'gen-agreement': 1, 'gen-divergence': g.newTokens, 'topk-agreement': 1 });
        Object.assign(values[1]!, { 'gen-agreement': g.tokenAgreement, 'gen-divergence': g.firstDivergence, 'topk-agreement': g.topkAgreement });
      }
      return { values: values.map((v) => Object.fromEntries(metrics.filter((m) => m in v).map((m) => [m, v[m]!]))), setup };
    } finally {
      for (const r of runners) await r.release();
    }
  };
}

function streamFromDataset(dataset: Dataset | undefined, io: DecoderIo, model: Model): TokenStream {
  if (!dataset) throw new UserError('language-model metrics need a token stream: give --tokens FILE.npy or --data DATASET (its input_ids are read sample after sample)');
  const index = modelInputs(model).findIndex((x) => x.name === io.ids);
  return tokenStreamFromDataset(dataset, io.ids, index);
}

/** The ids length of the dataset's first sample, when the stream comes from the dataset. */
function sampleLength(dataset: Dataset | undefined, options: LmOptions, io: DecoderIo): number | undefined {
  if (options.tokens || !dataset) return undefined;
  const sample = dataset.read(0);
  const ids = sample.inputs.find((a) => a.name === io.ids) ?? sample.inputs[0];
  return ids ? ids.data.length : undefined;
}
