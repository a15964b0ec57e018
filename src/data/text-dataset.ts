import * as fs from 'node:fs';
import { UserError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { modelInputs } from './bind.js';
import type { Dataset, Sample } from './dataset.js';
import { textFeeds, type TokenRow } from './text-feeds.js';
import type { TextTokenizer } from './tokenizer.js';

/**
 * What one sample is: `classification` = one text (a JSONL record or a line), truncated and
 * padded to the sequence length, labelled by its record's `label`; `causal-lm` = a window of
 * the running token stream of all texts, labelled by the next token at every position.
 */
export type TextTask = 'classification' | 'causal-lm';
export const TEXT_TASKS: readonly TextTask[] = ['classification', 'causal-lm'];

export interface TextDatasetOptions {
  tokenizer: TextTokenizer;
  /** Tokens per sample. */
  seqLen: number;
  /** Default: from the model's first output (rank 2: classification; rank 3 over the vocabulary: causal-lm). */
  task?: TextTask;
  /** Class name to index, for JSONL labels written as strings (config.json's label2id). */
  labelIds?: Map<string, number>;
  /** Keep the first N samples. */
  maxSamples?: number;
}

/** One text of the file and where it came from. */
interface Record_ {
  text: string;
  label: number | undefined;
  line: number;
}

/**
 * A dataset made from raw text: a .jsonl/.ndjson file of {"text": ..., "label": ...} records,
 * or any other file as plain text (one text per non-empty line for classification, the
 * whole file as one stream for a language model). Tokenized with the model's own tokenizer
 * and fed as the model's inputs ask (see `textFeeds`). Samples are made when it is opened.
 */
export function textDataset(model: Model, file: string, options: TextDatasetOptions): Dataset {
  const { tokenizer, seqLen } = options;
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new UserError(`the sequence length must be a positive whole number, not ${seqLen}`);
  const task = options.task ?? inferTextTask(model, tokenizer);
  const inputs = modelInputs(model);
  const records = readTextRecords(file, task, options.labelIds);
  const limit = options.maxSamples ?? Infinity;
  const samples: Sample[] = [];
  const places: string[] = [];
  if (task === 'classification') {
    const labelled = records.filter((r) => r.label !== undefined).length;
    if (labelled !== 0 && labelled !== records.length) {
      const first = records.find((r) => r.label === undefined)!;
      throw new UserError(`${file} line ${first.line}: this record has no "label" but others do; label every record or none`);
    }
    for (const r of records.slice(0, limit)) {
      const { ids, typeIds } = tokenizer.encode(r.text, seqLen);
      const pad = seqLen - ids.length;
      const row: TokenRow = {
        ids: [...ids, ...new Array<number>(pad).fill(tokenizer.padId)],
        mask: [...ids.map(() => 1), ...new Array<number>(pad).fill(0)],
        typeIds: [...typeIds, ...new Array<number>(pad).fill(0)],
      };
      samples.push({ inputs: textFeeds(inputs, row), label: r.label === undefined ? undefined : int64([1], [r.label]), expected: [] });
      places.push(`${file} line ${r.line}`);
    }
  } else {
    const stream: number[] = [];
    for (const r of records) {
      for (const id of tokenizer.encode(r.text).ids) stream.push(id);
      if (stream.length >= (seqLen + 1) * limit) break;
    }
    const windows = Math.min(limit, Math.floor(stream.length / (seqLen + 1)));
    if (windows === 0) throw new UserError(`${file} holds ${stream.length} tokens, fewer than one sample of ${seqLen} tokens and its next token (${seqLen + 1})`);
    for (let w = 0; w < windows; w++) {
      const at = w * (seqLen + 1);
      const ids = stream.slice(at, at + seqLen);
      const row: TokenRow = { ids, mask: ids.map(() => 1), typeIds: ids.map(() => 0) };
      samples.push({ inputs: textFeeds(inputs, row), label: int64([1, seqLen], stream.slice(at + 1, at + seqLen + 1)), expected: [] });
      places.push(`${file} (tokens ${at} to ${at + seqLen})`);
    }
  }
  if (samples.length === 0) throw new UserError(`${file} holds no text`);
  return { path: file, size: samples.length, read: (i) => samples[i]!, where: (i) => places[i]! };
}

/**
 * The sample kind a model's first output asks for: [batch, classes] is a classifier;
 * [batch, sequence, vocabulary] a language model.
 */
export function inferTextTask(model: Model, tokenizer: TextTokenizer): TextTask {
  const out = model.graph.outputs[0];
  const shape = out?.shape;
  if (shape?.length === 2) return 'classification';
  const last = shape?.[2];
  if (shape?.length === 3 && (typeof last !== 'number' || last >= tokenizer.vocabSize)) return 'causal-lm';
  throw new UserError(
    `cannot tell what samples the model's output '${out?.name ?? '?'}' [${shape?.map((d) => d ?? '?').join(',') ?? '?'}] needs: text datasets serve classifiers ([batch, classes]) and language models ([batch, sequence, vocabulary of ${tokenizer.vocabSize}]); name the task (--task)`,
  );
}

function readTextRecords(file: string, task: TextTask, labelIds: Map<string, number> | undefined): Record_[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`text file ${file} does not exist or cannot be read`);
  }
  const lines = text.split(/\r?\n/);
  if (/\.(jsonl|ndjson)$/i.test(file)) {
    const out: Record_[] = [];
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        throw new UserError(`${file} line ${i + 1} is not valid JSON`);
      }
      const r = rec as { text?: unknown; label?: unknown };
      if (typeof rec !== 'object' || rec === null || typeof r.text !== 'string') throw new UserError(`${file} line ${i + 1} has no "text" string`);
      out.push({ text: r.text, label: r.label === undefined || task === 'causal-lm' ? undefined : labelIndex(r.label, labelIds, `${file} line ${i + 1}`), line: i + 1 });
    });
    return out;
  }
  if (task === 'causal-lm') return [{ text, label: undefined, line: 1 }];
  return lines.map((t, i) => ({ text: t, label: undefined, line: i + 1 })).filter((r) => r.text.trim() !== '');
}

function labelIndex(label: unknown, labelIds: Map<string, number> | undefined, where: string): number {
  if (typeof label === 'number' && Number.isInteger(label) && label >= 0) return label;
  if (typeof label === 'string') {
    const id = labelIds?.get(label);
    if (id !== undefined) return id;
    const known = labelIds ? `config.json's label2id has ${[...labelIds.keys()].map((k) => `'${k}'`).join(', ')}` : 'no config.json with label2id names classes';
    throw new UserError(`${where}: label '${label}' is not a class of the model (${known})`);
  }
  throw new UserError(`${where}: "label" must be a class index (a whole number >= 0) or a class name, not ${JSON.stringify(label)}`);
}

function int64(dims: number[], values: number[]): { dtype: DataType; dims: number[]; data: BigInt64Array } {
  return { dtype: DataType.INT64, dims, data: BigInt64Array.from(values, (v) => BigInt(v)) };
}
