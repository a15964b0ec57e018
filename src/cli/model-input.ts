import * as fs from 'node:fs';
import * as path from 'node:path';
import { chooseModel } from '../data/model-choice.js';
import { readModelFolder } from '../data/model-folder.js';

/**
 * A command's model argument: an ONNX file as given, or a Hugging Face-style model folder, for
 * which the one model it holds is chosen (data/model-choice.ts) and named on stderr, so the
 * user sees which file every figure is about. A folder with no model or several is a user
 * error. The folder's config.json, tokenizer and preprocessor_config.json are found from the
 * chosen file as for any file inside a model folder (data/model-folder.ts modelFolderOf).
 */
export function modelFile(given: string, role = 'model'): string {
  let isFolder = false;
  try {
    isFolder = fs.statSync(given).isDirectory();
  } catch {
    return given; // loading it names the missing file
  }
  if (!isFolder) return given;
  const choice = chooseModel(readModelFolder(given));
  const rel = path.relative(given, choice.file);
  process.stderr.write(`slimformer: ${role} folder ${given}: using ${rel}${choice.note ? ` (${choice.note})` : ''}\n`);
  return choice.file;
}
