import { Tokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.js';
import { readJson } from './model-folder.js';

/** Token ids of one text, cut to a length, with the type ids the post-processor gives. */
export interface Encoded {
  ids: number[];
  typeIds: number[];
}

/**
 * A model's own tokenizer.json, run by `@huggingface/tokenizers` (the pure-JS port of the
 * Rust `tokenizers` library that transformers.js uses), with the truncation and padding
 * facts the datasets need.
 */
export interface TextTokenizer {
  readonly file: string;
  /** Ids with the special tokens of the post-processor ([CLS] ... [SEP], <s>, ...), truncated like the Rust library's `truncation.max_length`: the specials stay, content is cut at the right. */
  encode(text: string, maxLength?: number): Encoded;
  /** The id padding uses: tokenizer.json `padding.pad_id`, else tokenizer_config.json's pad_token, else [PAD]/<pad>, else 0. */
  readonly padId: number;
  /** Entries of the vocabulary, added tokens included. */
  readonly vocabSize: number;
}

export function loadTokenizer(file: string, configFile?: string): TextTokenizer {
  const json = readJson(file);
  const config: Record<string, unknown> = configFile ? readJson(configFile) : {};
  const model = json.model as Record<string, unknown> | undefined;
  // A WordLevel model takes its unknown token from the tokenizer config in tokenizers.js;
  // the Rust library reads it from the model section, so carry it over.
  if (typeof model?.unk_token === 'string' && config.unk_token === undefined) config.unk_token = model.unk_token;
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (e) {
    throw new UserError(`${file} cannot be read as a tokenizer (${e instanceof Error ? e.message : String(e)})`);
  }
  const vocab = tokenizer.get_vocab(true);
  const padToken = tokenString(config.pad_token);
  const padId =
    numberAt(json.padding, 'pad_id') ??
    (padToken !== undefined ? tokenizer.token_to_id(padToken) : undefined) ??
    tokenizer.token_to_id('[PAD]') ??
    tokenizer.token_to_id('<pad>') ??
    0;
  const toIds = (text: string, special: boolean): Encoded => {
    const e = tokenizer.encode(text, { add_special_tokens: special, return_token_type_ids: true });
    const at = e.ids.findIndex((id: number | undefined) => id === undefined);
    if (at >= 0) throw new UserError(`${file}: the token '${e.tokens[at]}' is not in the vocabulary and the tokenizer has no unknown token`);
    return { ids: e.ids, typeIds: e.token_type_ids ?? new Array<number>(e.ids.length).fill(0) };
  };
  return {
    file,
    padId,
    vocabSize: Math.max(vocab.size, ...[...vocab.values()].map((v) => v + 1)),
    encode(text, maxLength) {
      const full = toIds(text, true);
      if (maxLength === undefined || full.ids.length <= maxLength) return full;
      // full = prefix specials + content + suffix specials; keep the specials, cut the content
      const content = toIds(text, false).ids;
      const added = full.ids.length - content.length;
      if (added >= maxLength) throw new UserError(`${file} adds ${added} special tokens, which leaves no room in a sequence of ${maxLength}`);
      const start = prefixLength(full.ids, content);
      const keep = maxLength - added;
      const cut = (a: number[]): number[] => [...a.slice(0, start + keep), ...a.slice(start + content.length)];
      return { ids: cut(full.ids), typeIds: cut(full.typeIds) };
    },
  };
}

/** Where `content` starts inside `full` (the number of special tokens before it). */
function prefixLength(full: number[], content: number[]): number {
  for (let i = 0; i + content.length <= full.length; i++) {
    if (content.every((id, k) => full[i + k] === id)) return i;
  }
  return 0;
}

function numberAt(o: unknown, key: string): number | undefined {
  const v = typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[key] : undefined;
  return typeof v === 'number' ? v : undefined;
}

/** tokenizer_config.json writes a token as a string or as {content: string}. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}
