import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { modelInputs } from './bind.js';
import type { Dataset } from './dataset.js';
import { imageDataset } from './image-dataset.js';
import { readPreprocessorConfig } from './image-preprocess.js';
import { labelIds, modelFolderOf, readJson, readModelFolder, type ModelFolder } from './model-folder.js';
import { textDataset, type TextTask } from './text-dataset.js';
import { loadTokenizer } from './tokenizer.js';

/** Raw data for a model: a text file or an image folder, and where its tokenizer/preprocessor comes from. */
export interface RawDataOptions {
  /** A .jsonl/.ndjson of {"text", "label"} records, or a plain text file. */
  text?: string;
  /** A folder of images, or of class sub-folders of images. */
  images?: string;
  /** tokenizer.json, or a model folder holding one. Default: the model's folder. */
  tokenizer?: string;
  /** preprocessor_config.json, or a model folder holding one. Default: the model's folder. */
  preprocessor?: string;
  /** Tokens per text sample. Default: the model's fixed sequence length, else 128 capped by config.json's position limit. */
  seqLen?: number;
  task?: TextTask;
  maxSamples?: number;
}

/**
 * Opens raw text or images as a dataset for `model` (loaded from `modelPath`, a .onnx file or
 * a file inside a model folder), with the model folder's tokenizer.json or
 * preprocessor_config.json and config.json's label names.
 */
export async function openRawDataset(model: Model, modelPath: string, options: RawDataOptions): Promise<Dataset> {
  if ((options.text === undefined) === (options.images === undefined)) throw new Error('openRawDataset: give text or images');
  const folder = modelFolderOf(modelPath);
  const labels = labelIds(folder);
  if (options.text !== undefined) {
    const tokenizerFile = options.tokenizer ? fileIn(options.tokenizer, 'tokenizer.json') : folder?.tokenizerFile;
    if (!tokenizerFile) throw new UserError(`no tokenizer.json beside ${modelPath} (nor in the folder above an onnx/ folder); give the tokenizer (--tokenizer FILE)`);
    const configFile = path.join(path.dirname(tokenizerFile), 'tokenizer_config.json');
    const tokenizer = loadTokenizer(tokenizerFile, fs.existsSync(configFile) ? configFile : undefined);
    const seqLen = options.seqLen ?? defaultSeqLen(model, folder);
    return textDataset(model, options.text, { tokenizer, seqLen, task: options.task, labelIds: labels, maxSamples: options.maxSamples });
  }
  const preprocessorFile = options.preprocessor ? fileIn(options.preprocessor, 'preprocessor_config.json') : folder?.preprocessorFile;
  if (!preprocessorFile) throw new UserError(`no preprocessor_config.json beside ${modelPath} (nor in the folder above an onnx/ folder); give it (--preprocessor FILE)`);
  return imageDataset(model, options.images!, { preprocessing: readPreprocessorConfig(preprocessorFile), labelIds: labels, maxSamples: options.maxSamples });
}

/** A file given directly, or the named file inside a given folder. */
function fileIn(given: string, name: string): string {
  if (!fs.existsSync(given)) throw new UserError(`${given} does not exist`);
  if (!fs.statSync(given).isDirectory()) return given;
  const f = readModelFolder(given);
  const file = name === 'tokenizer.json' ? f.tokenizerFile : f.preprocessorFile;
  if (!file) throw new UserError(`folder ${given} has no ${name}`);
  return file;
}

function defaultSeqLen(model: Model, folder: ModelFolder | undefined): number {
  const fixed = modelInputs(model).find((i) => i.name === 'input_ids')?.shape?.[1];
  if (typeof fixed === 'number') return fixed;
  const config = folder?.configFile ? readJson(folder.configFile) : {};
  const limit = [config.max_position_embeddings, config.n_positions, config.max_seq_len].find((v): v is number => typeof v === 'number');
  return Math.min(128, limit ?? 128);
}
