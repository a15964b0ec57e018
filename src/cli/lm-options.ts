import type { Command } from 'commander';
import type { LmOptions } from '../validate/lm-metrics.js';
import { LM_DEFAULTS } from '../validate/lm-metrics.js';
import { tokenStreamFromNpy } from '../validate/token-stream.js';
import { positiveInt } from './eval.js';

/** The flags of the language-model metrics, as commander hands them over. */
export interface LmFlags {
  tokens?: string;
  window?: string;
  stride?: string;
  prompts?: string;
  promptLength?: string;
  newTokens?: string;
  topK?: string;
}

/** Adds the stream-perplexity flags, and with `generation` the generation-agreement ones. */
export function addLmOptions(command: Command, generation: boolean): Command {
  command
    .option('--tokens <file.npy>', 'token stream for stream-nll/stream-perplexity (and the prompts): a 1-D .npy of integer ids (default: the --data samples\' input_ids, laid end to end)')
    .option('--window <n>', 'tokens per sliding window (default: the model\'s fixed sequence length, else the --data sample length)')
    .option('--stride <n>', 'tokens between window starts (default: half the window)');
  if (generation) {
    command
      .option('--prompts <n>', `prompts for gen-agreement, gen-divergence, topk-agreement (default ${LM_DEFAULTS.prompts})`)
      .option('--prompt-length <n>', `tokens per prompt (default ${LM_DEFAULTS.promptLength})`)
      .option('--new-tokens <n>', `greedy tokens generated after each prompt (default ${LM_DEFAULTS.newTokens})`)
      .option('--top-k <n>', `size of the top-k sets topk-agreement compares (default ${LM_DEFAULTS.topK})`);
  }
  return command;
}

/** Parses the flags (whole numbers, the token file) before any model runs. */
export function lmOptions(flags: LmFlags): LmOptions {
  const int = (text: string | undefined, flag: string): number | undefined => (text === undefined ? undefined : positiveInt(text, flag));
  return {
    tokens: flags.tokens === undefined ? undefined : tokenStreamFromNpy(flags.tokens),
    window: int(flags.window, '--window'),
    stride: int(flags.stride, '--stride'),
    prompts: int(flags.prompts, '--prompts'),
    promptLength: int(flags.promptLength, '--prompt-length'),
    newTokens: int(flags.newTokens, '--new-tokens'),
    topK: int(flags.topK, '--top-k'),
  };
}
