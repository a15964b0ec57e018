import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { ModelFolder } from './model-folder.js';

/** The suffixes transformers.js gives a model's variants (model_q4.onnx, ...): such files are outputs, not models to choose. */
export const VARIANT_SUFFIXES = ['_fp16', '_quantized', '_int8', '_uint8', '_q4', '_q4f16', '_bnb4', '_q8f16', '_uint8f16'];

/** True when an ONNX file's name (model_q4.onnx) is a transformers.js variant of another model. */
export function isVariantFile(file: string): boolean {
  const base = path.basename(file, '.onnx');
  return VARIANT_SUFFIXES.some((s) => base.endsWith(s));
}

/** The ONNX model a command uses in a model folder, and a note saying why when other models were there. */
export interface ModelChoice {
  file: string;
  /** What else was there and was left alone; undefined when the folder holds one model. */
  note: string | undefined;
}

/** Optimum's unmerged decoder pair, which decoder_model_merged.onnx replaces. */
const UNMERGED = ['decoder_model.onnx', 'decoder_with_past_model.onnx'];

/**
 * Chooses the one model a command works on (every command takes one ONNX file per run):
 *  1. onnx/model.onnx, else model.onnx at the top (what transformers.js loads for encoders,
 *     vision models and decoder-only language models);
 *  2. otherwise the only model left among the folder's ONNX files, once variants
 *     (model_q4.onnx, ...) are set aside and, when decoder_model_merged.onnx is there, the
 *     unmerged pair it replaces (decoder_model.onnx, decoder_with_past_model.onnx).
 * No model, or several (an encoder-decoder's encoder_model.onnx and decoder_model_merged.onnx),
 * is a user error naming them: the file is then given by its path.
 */
export function chooseModel(folder: ModelFolder): ModelChoice {
  const rel = (f: string): string => path.relative(folder.dir, f);
  const models = folder.onnxFiles.filter((f) => !isVariantFile(f));
  const main = ['onnx/model.onnx', 'model.onnx'].map((n) => models.find((f) => rel(f) === path.normalize(n))).find((f) => f !== undefined);
  if (main) {
    const others = models.filter((f) => f !== main);
    return { file: main, note: others.length ? `left alone: ${others.map(rel).join(', ')}` : undefined };
  }
  const merged = models.some((f) => path.basename(f) === 'decoder_model_merged.onnx');
  const left = merged ? models.filter((f) => !UNMERGED.includes(path.basename(f))) : models;
  if (left.length === 1) {
    const pair = models.filter((f) => f !== left[0]);
    return { file: left[0]!, note: pair.length ? `left alone: ${pair.map(rel).join(' and ')}, the unmerged pair it replaces` : undefined };
  }
  if (left.length === 0) {
    const hint = 'expected onnx/model.onnx (or onnx/decoder_model_merged.onnx) as Optimum and transformers.js lay a model folder out';
    if (folder.onnxFiles.length) throw new UserError(`model folder ${folder.dir} has no ONNX model, only variants (${folder.onnxFiles.map(rel).join(', ')}); ${hint}`);
    const where = fs.existsSync(path.join(folder.dir, 'onnx')) ? 'no .onnx file in its onnx/ folder' : 'no onnx/ folder and no .onnx file';
    throw new UserError(`model folder ${folder.dir} has ${where}; ${hint}`);
  }
  throw new UserError(`model folder ${folder.dir} holds several models (${left.map(rel).join(', ')}); give the one to use by its path, e.g. ${path.join(folder.dir, rel(left[0]!))}`);
}
