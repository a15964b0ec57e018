import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { chooseModel } from './model-choice.js';

/**
 * A Hugging Face-style model folder, as Optimum and `save_pretrained` write it:
 *
 *   config.json, tokenizer.json, tokenizer_config.json, preprocessor_config.json,
 *   onnx/model.onnx (or encoder_model.onnx, decoder_model_merged.onnx, ...; or *.onnx at the top)
 *
 * Every file is optional; what is present is named here, and the JSON files are parsed on
 * demand by `readJson`. This is the one place that knows the folder layout.
 */
export interface ModelFolder {
  /** The folder itself. */
  readonly dir: string;
  /** config.json, when present. */
  readonly configFile: string | undefined;
  readonly tokenizerFile: string | undefined;
  readonly tokenizerConfigFile: string | undefined;
  readonly preprocessorFile: string | undefined;
  /** Every .onnx file in onnx/ and at the top, sorted by path. */
  readonly onnxFiles: string[];
  /** The model to use when none is named (model-choice.ts chooseModel); undefined when there is none or several. */
  readonly defaultModel: string | undefined;
}

/** Reads the folder's listing; a path that is not a folder is a user error. */
export function readModelFolder(dir: string): ModelFolder {
  if (!isDirectory(dir)) throw new UserError(`model folder ${dir} does not exist or is not a folder`);
  const file = (name: string): string | undefined => {
    const p = path.join(dir, name);
    return isFile(p) ? p : undefined;
  };
  const onnxIn = (sub: string): string[] => {
    const d = path.join(dir, sub);
    if (!isDirectory(d)) return [];
    return fs
      .readdirSync(d)
      .filter((n) => n.endsWith('.onnx') && isFile(path.join(d, n)))
      .map((n) => path.join(d, n));
  };
  const onnxFiles = [...onnxIn('onnx'), ...onnxIn('.')].sort();
  const listing = {
    dir,
    configFile: file('config.json'),
    tokenizerFile: file('tokenizer.json'),
    tokenizerConfigFile: file('tokenizer_config.json'),
    preprocessorFile: file('preprocessor_config.json'),
    onnxFiles,
  };
  let defaultModel: string | undefined;
  try {
    defaultModel = chooseModel({ ...listing, defaultModel: undefined }).file;
  } catch {
    defaultModel = undefined; // none, or several: chooseModel's error says which when a command needs one
  }
  return { ...listing, defaultModel };
}

/**
 * The model folder an ONNX file belongs to: the file's own folder, or the one above it when
 * the file sits in an `onnx/` subfolder. Undefined when neither holds a config.json,
 * tokenizer.json or preprocessor_config.json (a bare .onnx file).
 */
export function modelFolderOf(modelFile: string): ModelFolder | undefined {
  const own = path.dirname(path.resolve(modelFile));
  const candidates = path.basename(own) === 'onnx' ? [path.dirname(own), own] : [own];
  for (const dir of candidates) {
    const folder = readModelFolder(dir);
    if (folder.configFile || folder.tokenizerFile || folder.preprocessorFile) return folder;
  }
  return undefined;
}

/** Parses one of the folder's JSON files; a malformed file is a user error naming it. */
export function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`${file} does not exist or cannot be read`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UserError(`${file} does not hold a JSON object`);
  return value as Record<string, unknown>;
}

/** config.json's `label2id` (class name to index), when the folder has one. */
export function labelIds(folder: ModelFolder | undefined): Map<string, number> | undefined {
  if (!folder?.configFile) return undefined;
  const l2i = readJson(folder.configFile).label2id;
  if (typeof l2i !== 'object' || l2i === null) return undefined;
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(l2i)) if (typeof v === 'number' && Number.isInteger(v)) out.set(k, v);
  return out.size ? out : undefined;
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}
