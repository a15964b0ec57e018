import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType, dtypeName } from '../ir/dtype.js';
import { bfloat16BitsToFloat, float16BitsToFloat } from '../ir/float-bits.js';
import type { Model } from '../ir/model.js';
import { Session } from '../runtime/session.js';
import { type DecoderIo, boolScalar, decoderIo, emptyCache, filledMatrix, integerMatrix } from './decoder-io.js';

/** Logits of one sequence: `length` rows of `vocab` scores. */
export interface SequenceLogits {
  vocab: number;
  data: Float32Array;
}

/** Sequences run together at most (each run's logits are batch × length × vocab floats). */
const MAX_BATCH = 16;

/**
 * Runs a decoder language model the two ways its users do: a whole sequence at once with an
 * empty cache (`forward`), and greedy generation token by token (`greedy`), through the
 * key/value cache when the graph has one and by re-running the whole prefix when it has not.
 * Every input besides the token ids (mask, positions, empty past, use_cache_branch) is filled
 * from the signature that `decoderIo` reads.
 */
export class DecoderRunner {
  private constructor(
    readonly io: DecoderIo,
    private readonly session: Session,
    /** Optimum's older pair: decoder_model.onnx runs the prompt, this model the later steps. */
    private readonly prefill: { io: DecoderIo; session: Session } | undefined,
  ) {}

  /**
   * A runner for `model`. With `options.prefill` (the pair decoder_model.onnx +
   * decoder_with_past_model.onnx), generation runs each prompt through `prefill`, which takes
   * no past and returns the first cache, and every later token through `model`.
   */
  static async create(model: Model, who: string, threads?: number, options: { prefill?: Model } = {}): Promise<DecoderRunner> {
    const io = decoderIo(model, who);
    let prefill: { io: DecoderIo; session: Session } | undefined;
    if (options.prefill) {
      const first = decoderIo(options.prefill, `${who}'s prefill model`);
      const outputs = new Set(options.prefill.graph.outputs.map((v) => v.name));
      const missing = io.cache.find((c) => !outputs.has(c.present));
      if (io.cache.length === 0 || missing) throw new UserError(`the ${who}'s prefill model must return the cache the ${who} reads${missing ? `; it has no output '${missing.present}'` : ', and the ' + who + ' reads none'}`);
      prefill = { io: first, session: await Session.create(options.prefill, { threads }) };
    }
    return new DecoderRunner(io, await Session.create(model, { threads }), prefill);
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.prefill?.session.release();
  }

  /** Throws when an id is outside the embedding table (onnxruntime would stop with a less helpful message). */
  checkIds(ids: ArrayLike<number>, source: string): void {
    const rows = this.io.vocabRows;
    if (rows === undefined) return;
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i]!;
      if (v < 0 || v >= rows) throw new UserError(`${source} holds token id ${v} at position ${i}, outside the ${rows} rows of the ${this.io.who}'s embedding table`);
    }
  }

  /**
   * Logits at every position of each sequence (all of one length), in one pass with an empty
   * cache. A graph with a fixed sequence length gets the sequences padded on the right with
   * id 0: a causal model's logits at a position do not depend on later tokens.
   */
  async forward(seqs: readonly (readonly number[])[]): Promise<SequenceLogits[]> {
    const length = seqs[0]?.length ?? 0;
    if (seqs.some((s) => s.length !== length)) throw new Error('forward() takes sequences of one length');
    const fixed = this.io.fixedLength;
    if (fixed !== undefined && length > fixed) throw new UserError(`the ${this.io.who} takes ${fixed} tokens at most (input '${this.io.ids}' is fixed to that length), not ${length}`);
    const width = fixed ?? length;
    const out: SequenceLogits[] = [];
    for (let at = 0; at < seqs.length; at += this.batchLimit()) {
      const rows = seqs.slice(at, at + this.batchLimit());
      const feeds = this.feeds(rows, width, 0, true);
      const logits = (await this.session.run(feeds, [this.io.logits]))[this.io.logits]!;
      out.push(...this.split(logits, rows.length, width, length));
    }
    return out;
  }

  /** `count` greedy tokens after each prompt (all of one length); argmax ties go to the lowest id. */
  async greedy(prompts: readonly (readonly number[])[], count: number): Promise<number[][]> {
    const out: number[][] = [];
    for (let at = 0; at < prompts.length; at += this.batchLimit()) {
      const rows = prompts.slice(at, at + this.batchLimit());
      out.push(...(this.io.cache.length > 0 ? await this.greedyCached(rows, count) : await this.greedyFull(rows, count)));
    }
    return out;
  }

  /** Prefill with an empty past, then one token per step with the cache the previous step returned. */
  private async greedyCached(prompts: readonly (readonly number[])[], count: number): Promise<number[][]> {
    const seqs = prompts.map((p) => [...p]);
    const fetch = [this.io.logits, ...this.io.cache.map((c) => c.present)];
    let past: Record<string, ArrayTensor> | undefined;
    for (let step = 0; step < count; step++) {
      const total = seqs[0]!.length;
      const fresh = past === undefined ? seqs.map((s) => [...s]) : seqs.map((s) => [s[s.length - 1]!]);
      const width = fresh[0]!.length;
      const first = past === undefined ? this.prefill : undefined;
      const feeds = first ? feedsFor(first.io, fresh, width, 0, true) : this.feeds(fresh, width, total - width, past === undefined);
      if (past) for (const c of this.io.cache) feeds[c.past] = past[c.present]!;
      const logitsName = first?.io.logits ?? this.io.logits;
      const results = await (first?.session ?? this.session).run(feeds, first ? [logitsName, ...fetch.slice(1)] : fetch);
      const logits = this.split(results[logitsName]!, seqs.length, width, width);
      logits.forEach((l, b) => seqs[b]!.push(argmaxRow(l, width - 1)));
      past = results;
    }
    return seqs.map((s) => s.slice(s.length - count));
  }

  /** Without a cache: the whole prefix again for every new token. */
  private async greedyFull(prompts: readonly (readonly number[])[], count: number): Promise<number[][]> {
    const seqs = prompts.map((p) => [...p]);
    for (let step = 0; step < count; step++) {
      const length = seqs[0]!.length;
      const logits = await this.forward(seqs);
      logits.forEach((l, b) => seqs[b]!.push(argmaxRow(l, length - 1)));
    }
    return seqs.map((s) => s.slice(s.length - count));
  }

  private batchLimit(): number {
    return Math.max(1, Math.min(MAX_BATCH, this.io.maxBatch));
  }

  /** Feeds for `rows` new tokens (padded to `width`) after `pastLength` cached ones. */
  private feeds(rows: readonly (readonly number[])[], width: number, pastLength: number, emptyPast: boolean): Record<string, ArrayTensor> {
    return feedsFor(this.io, rows, width, pastLength, emptyPast);
  }

  /** Splits [batch, width, vocab] logits into one entry per sequence, keeping the first `length` rows. */
  private split(t: ArrayTensor, batch: number, width: number, length: number): SequenceLogits[] {
    if (t.dims.length !== 3 || t.dims[0] !== batch || t.dims[1] !== width) {
      throw new UserError(`the ${this.io.who}'s output '${this.io.logits}' has shape [${t.dims.join(',')}]; a language model's logits are [batch, sequence, vocabulary] ([${batch},${width},V] here)`);
    }
    const vocab = t.dims[2]!;
    const values = floatLogits(t, this.io);
    return Array.from({ length: batch }, (_, b) => ({ vocab, data: values.subarray(b * width * vocab, (b * width + length) * vocab) }));
  }
}

/** Feeds for `rows` new tokens (padded to `width`) after `pastLength` cached ones, by the signature `io` read. */
function feedsFor(io: DecoderIo, rows: readonly (readonly number[])[], width: number, pastLength: number, emptyPast: boolean): Record<string, ArrayTensor> {
  const batch = rows.length;
  const feeds: Record<string, ArrayTensor> = { [io.ids]: integerMatrix(io.idsType, rows, width) };
  if (io.attentionMask) feeds[io.attentionMask.name] = filledMatrix(io.attentionMask.dtype, batch, pastLength + width, 1);
  if (io.positionIds) {
    const positions = Array.from({ length: width }, (_, i) => pastLength + i);
    feeds[io.positionIds.name] = integerMatrix(io.positionIds.dtype, Array.from({ length: batch }, () => positions), width);
  }
  if (emptyPast) for (const c of io.cache) feeds[c.past] = emptyCache(c, batch);
  if (io.useCacheBranch) feeds[io.useCacheBranch] = boolScalar(!emptyPast);
  return feeds;
}

/** The lowest id with the largest score in row `row`. */
export function argmaxRow(l: SequenceLogits, row: number): number {
  const base = row * l.vocab;
  let best = 0;
  for (let v = 1; v < l.vocab; v++) if (l.data[base + v]! > l.data[base + best]!) best = v;
  return best;
}

function floatLogits(t: ArrayTensor, io: DecoderIo): Float32Array {
  switch (t.dtype) {
    case DataType.FLOAT:
      return t.data as Float32Array;
    case DataType.FLOAT16:
      return Float32Array.from(t.data as Uint16Array, float16BitsToFloat);
    case DataType.BFLOAT16:
      return Float32Array.from(t.data as Uint16Array, bfloat16BitsToFloat);
    case DataType.DOUBLE:
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new UserError(`the ${io.who}'s output '${io.logits}' is ${dtypeName(t.dtype)}, not floating-point logits`);
  }
}
