import type { Command } from 'commander';
import { UserError } from '../errors.js';
import type { Dataset } from '../data/dataset.js';
import { openDataset } from '../data/dataset.js';
import { openRawDataset } from '../data/raw-dataset.js';
import { TEXT_TASKS, type TextTask } from '../data/text-dataset.js';
import type { Model } from '../ir/model.js';
import { positiveInt } from './eval.js';

/** The flags that describe how raw text or images become samples (shared by every command taking them). */
export interface RawDataFlags {
  tokenizer?: string;
  preprocessor?: string;
  seqLen?: string;
  task?: string;
  maxSamples?: string;
}

/** Adds --PREFIX-text and --PREFIX-images (prefix: calib or data), and the shared tokenizer/preprocessor flags once. */
export function addRawDataFlags(cmd: Command, prefix: 'calib' | 'data' | 'eval', what: string): Command {
  cmd
    .option(`--${prefix}-text <file>`, `${what} from raw text: .jsonl with {"text", "label"} records, or plain text; tokenized with the model folder's tokenizer.json (see docs/data.md)`)
    .option(`--${prefix}-images <dir>`, `${what} from a folder of PNG/JPEG images (class sub-folders give labels), preprocessed as the model folder's preprocessor_config.json says`);
  return cmd.options.some((o) => o.long === '--seq-len') ? cmd : addRawDataShared(cmd);
}

/** --tokenizer, --preprocessor, --seq-len, --task, --max-samples. */
export function addRawDataShared(cmd: Command): Command {
  return cmd
      .option('--tokenizer <file>', 'tokenizer.json for --*-text (default: the one in the model\'s folder)')
      .option('--preprocessor <file>', 'preprocessor_config.json for --*-images (default: the one in the model\'s folder)')
      .option('--seq-len <n>', 'tokens per text sample (default: the model\'s fixed length, else 128 within config.json\'s position limit)')
      .option('--task <task>', `what a text sample is: ${TEXT_TASKS.join(' | ')} (default: from the model's output shape)`)
      .option('--max-samples <n>', 'use the first N samples of --*-text / --*-images');
}

/**
 * The dataset a command reads for one role: the tensor dataset path (--calib/--data), or raw
 * text/images; at most one of them. Undefined when none is given.
 */
export async function datasetFromFlags(
  given: { tensors?: string; text?: string; images?: string; flags: string },
  raw: RawDataFlags,
  model: Model,
  modelPath: string,
): Promise<Dataset | undefined> {
  const count = [given.tensors, given.text, given.images].filter((x) => x !== undefined).length;
  if (count > 1) throw new UserError(`give one of ${given.flags}, not several`);
  if (given.tensors !== undefined) return openDataset(given.tensors);
  if (given.text === undefined && given.images === undefined) return undefined;
  if (raw.task !== undefined && !(TEXT_TASKS as readonly string[]).includes(raw.task)) throw new UserError(`unknown --task '${raw.task}' (choose from ${TEXT_TASKS.join(', ')})`);
  return openRawDataset(model, modelPath, {
    text: given.text,
    images: given.images,
    tokenizer: raw.tokenizer,
    preprocessor: raw.preprocessor,
    seqLen: raw.seqLen === undefined ? undefined : positiveInt(raw.seqLen, '--seq-len'),
    task: raw.task as TextTask | undefined,
    maxSamples: raw.maxSamples === undefined ? undefined : positiveInt(raw.maxSamples, '--max-samples'),
  });
}
