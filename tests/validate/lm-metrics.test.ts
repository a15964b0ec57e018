import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel } from '../../src/onnx/load.js';
import { Session } from '../../src/runtime/session.js';
import { DecoderRunner } from '../../src/validate/decoder-runner.js';
import { gate } from '../../src/validate/gate.js';
import { compareGeneration, continuationAgreement } from '../../src/validate/generation-agreement.js';
import { MetricAccumulator } from '../../src/validate/metrics.js';
import { slidingPerplexity, slidingWindows } from '../../src/validate/sliding-perplexity.js';
import { cli } from '../helpers/cli.js';
import { expectOneSentence } from '../helpers/cli-checks.js';
import { npyBytes } from '../helpers/npy.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const GPT = path.join(ROOT, 'fixtures/gpt_moby.onnx');
const GPT_EVAL = path.join(ROOT, 'calibration/gpt_moby/eval');
const ZOO = path.join(ROOT, 'fixtures/zoo');
const LLAMA_KV = path.join(ZOO, 'llama_moby_kv.onnx');
const LLAMA = path.join(ZOO, 'llama_moby.onnx');
const LLAMA_KV_EVAL = path.join(ROOT, 'calibration/zoo/llama_moby_kv/eval');
const dir = tempDir();

/** input_ids of every sample, laid end to end (the documented stream of a dataset). */
function datasetStream(folder: string): number[] {
  const d = openDataset(folder);
  const out: number[] = [];
  for (let i = 0; i < d.size; i++) {
    const ids = d.read(i).inputs.find((a) => a.name === 'input_ids')!;
    for (const v of ids.data as BigInt64Array) out.push(Number(v));
  }
  return out;
}

/** Prompt i: the first `length` tokens of the i-th of `count` equal parts of the stream. */
function prompts(stream: number[], count: number, length: number): number[][] {
  const part = Math.floor(stream.length / count);
  return Array.from({ length: count }, (_, i) => stream.slice(i * part, i * part + length));
}

/**
 * The reference the library is checked against: a plain loop that runs one sequence at a time,
 * always over the whole prefix (empty cache, use_cache_branch false), with its own feeds.
 * `fixed` pads the prefix on the right to the graph's fixed length.
 */
class FullPrefix {
  private constructor(
    private readonly session: Session,
    private readonly model: Model,
    private readonly fixed: number | undefined,
  ) {}
  static async open(model: Model): Promise<FullPrefix> {
    const seq = model.graph.inputs.find((v) => v.name === 'input_ids')!.shape![1];
    return new FullPrefix(await Session.create(model, { threads: 1 }), model, typeof seq === 'number' ? seq : undefined);
  }
  /** Logits rows (one per position of `ids`) as plain arrays. */
  async logits(ids: number[]): Promise<number[][]> {
    const width = this.fixed ?? ids.length;
    const i64 = (values: number[]): ArrayTensor => ({ dtype: DataType.INT64, dims: [1, values.length], data: BigInt64Array.from(values.map(BigInt)) });
    const feeds: Record<string, ArrayTensor> = { input_ids: i64([...ids, ...new Array<number>(width - ids.length).fill(0)]) };
    for (const v of this.model.graph.inputs) {
      if (v.name === 'attention_mask') feeds[v.name] = i64(new Array<number>(width).fill(1));
      if (v.name === 'position_ids') feeds[v.name] = i64(Array.from({ length: width }, (_, i) => i));
      if (v.name.startsWith('past_key_values.')) feeds[v.name] = { dtype: DataType.FLOAT, dims: [1, v.shape![1] as number, 0, v.shape![3] as number], data: new Float32Array(0) };
      if (v.name === 'use_cache_branch') feeds[v.name] = { dtype: DataType.BOOL, dims: [1], data: Uint8Array.of(0) };
    }
    const out = (await this.session.run(feeds, ['logits'])).logits!;
    const vocab = out.dims[2]!;
    return Array.from({ length: ids.length }, (_, p) => Array.from((out.data as Float32Array).subarray(p * vocab, (p + 1) * vocab)));
  }
  async greedy(prompt: number[], count: number): Promise<number[]> {
    const seq = [...prompt];
    for (let i = 0; i < count; i++) {
      const rows = await this.logits(seq);
      const last = rows[rows.length - 1]!;
      seq.push(last.indexOf(Math.max(...last)));
    }
    return seq.slice(prompt.length);
  }
  release(): Promise<void> {
    return this.session.release();
  }
}

/** The k largest ids by repeated selection (ties to the lower id). */
function topK(row: number[], k: number): number[] {
  const left = row.map((v, i) => ({ v, i }));
  const out: number[] = [];
  for (let n = 0; n < k; n++) {
    let best = 0;
    for (let j = 1; j < left.length; j++) if (left[j]!.v > left[best]!.v) best = j;
    out.push(left.splice(best, 1)[0]!.i);
  }
  return out;
}

/** Every generation metric from the reference loop, by its definition. */
async function referenceGeneration(baseline: Model, candidate: Model, ps: number[][], count: number, k: number) {
  const b = await FullPrefix.open(baseline);
  const c = await FullPrefix.open(candidate);
  try {
    const tb: number[][] = [];
    const tc: number[][] = [];
    let same = 0;
    let divergence = 0;
    let overlap = 0;
    for (const p of ps) {
      const gb = await b.greedy(p, count);
      const gc = await c.greedy(p, count);
      tb.push(gb);
      tc.push(gc);
      same += gb.filter((t, i) => t === gc[i]).length;
      const first = gb.findIndex((t, i) => t !== gc[i]);
      divergence += first < 0 ? count : first;
      const context = [...p, ...gb.slice(0, count - 1)];
      const lb = await b.logits(context);
      const lc = await c.logits(context);
      for (let i = 0; i < count; i++) {
        const sb = new Set(topK(lb[p.length - 1 + i]!, k));
        overlap += topK(lc[p.length - 1 + i]!, k).filter((id) => sb.has(id)).length / k;
      }
    }
    const n = ps.length;
    return { tb, tc, agreement: same / (n * count), divergence: divergence / n, topk: overlap / (n * count) };
  } finally {
    await b.release();
    await c.release();
  }
}

describe('continuationAgreement', () => {
  it('counts equal tokens and the first differing position, K when none differs', () => {
    const r = continuationAgreement(
      [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
      ],
      [
        [1, 9, 3, 4],
        [5, 6, 7, 8],
      ],
    );
    expect(r.tokenAgreement).toBe(7 / 8);
    expect(r.firstDivergence).toBe((1 + 4) / 2);
  });
});

describe('slidingWindows', () => {
  it('scores every token after the first exactly once when the stride is below the window', () => {
    for (const [n, w, s] of [
      [1000, 64, 24],
      [100, 64, 32],
      [64, 64, 1],
      [10, 64, 32],
    ] as const) {
      const seen = new Array<number>(n).fill(0);
      for (const win of slidingWindows(n, w, s)) {
        expect(win.end - win.begin).toBeLessThanOrEqual(w);
        expect(win.scoreFrom).toBeGreaterThan(win.begin);
        for (let j = win.scoreFrom; j < win.end; j++) seen[j]!++;
      }
      expect(seen.slice(1).every((x) => x === 1), `${n}/${w}/${s}`).toBe(true);
      expect(seen[0]).toBe(0);
    }
  });
  it('leaves out each window first token when the stride equals the window', () => {
    const ws = slidingWindows(640, 64, 64);
    expect(ws).toHaveLength(10);
    expect(ws.reduce((a, w) => a + w.end - w.scoreFrom, 0)).toBe(640 - 10);
  });
});

describe('stream perplexity (gpt_moby)', () => {
  it('with window = stride = 64 equals the labelled nll of the eval windows without their last position', async () => {
    // independent path: the eval set's own labels through MetricAccumulator, last position masked
    const model = loadModel(GPT);
    const data = openDataset(GPT_EVAL);
    const session = await Session.create(model, { threads: 1 });
    const acc = new MetricAccumulator();
    for (let i = 0; i < data.size; i++) {
      const s = data.read(i);
      const label = Int32Array.from(s.label!.data as BigInt64Array, Number);
      label[63] = -100;
      const out = await session.run({ input_ids: s.inputs[0]! }, ['logits']);
      acc.add(out.logits!, { dtype: DataType.INT32, dims: [1, 64], data: label }, 'logits');
    }
    await session.release();
    const runner = await DecoderRunner.create(model, 'model');
    const r = await slidingPerplexity(runner, datasetStream(GPT_EVAL), { window: 64, stride: 64 });
    await runner.release();
    expect(r.tokens).toBe(acc.count);
    expect(r.tokens).toBe(500 * 63);
    // batched (8 windows) and single-sample runs differ in float32 rounding only
    expect(Math.abs(r.nll - acc.result(['nll']).nll!)).toBeLessThan(1e-6);
  });

  it('with a stride below the window equals the recipe written out window by window; --tokens reads a .npy', async () => {
    const stream = datasetStream(GPT_EVAL).slice(0, 1500);
    const file = path.join(dir, 'stream.npy');
    fs.writeFileSync(file, npyBytes('<i8', [stream.length], BigInt64Array.from(stream.map(BigInt))));
    // the recipe of Hugging Face's perplexity guide, one window per run, token-weighted mean
    const ref = await FullPrefix.open(loadModel(GPT));
    let nll = 0;
    let count = 0;
    let prevEnd = 0;
    for (let begin = 0; begin < stream.length; begin += 24) {
      const end = Math.min(begin + 64, stream.length);
      const rows = await ref.logits(stream.slice(begin, end));
      for (let j = Math.max(prevEnd, begin + 1); j < end; j++) {
        const row = rows[j - 1 - begin]!;
        const max = Math.max(...row);
        nll += Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) + max - row[stream[j]!]!;
        count++;
      }
      prevEnd = end;
      if (end === stream.length) break;
    }
    await ref.release();
    const r = cli('eval', GPT, '--tokens', file, '--metric', 'stream-nll,stream-perplexity', '--window', '64', '--stride', '24', '--json');
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout);
    expect(json.lm.scoredTokens).toBe(count);
    expect(count).toBe(stream.length - 1);
    expect(Math.abs(json.metrics['stream-nll'] - nll / count)).toBeLessThan(1e-6);
    expect(json.metrics['stream-perplexity']).toBeCloseTo(Math.exp(nll / count), 5);
  });
});

describe('generation agreement (gpt_moby against its w4 RTN copy)', () => {
  const candidateFile = path.join(dir, 'gpt_w4.onnx');
  beforeAll(() => {
    const q = cli('quantize', GPT, '-o', candidateFile, '--scheme', 'w4');
    expect(q.code, q.stderr).toBe(0);
  });

  it('equals an independent greedy loop over full prefixes, and gate reports the same figures', async () => {
    const baseline = loadModel(GPT);
    const candidate = loadModel(candidateFile);
    const ps = prompts(datasetStream(GPT_EVAL), 4, 8);
    const ref = await referenceGeneration(baseline, candidate, ps, 24, 5);
    // the candidate is worse but not useless: the metric must sit strictly between its bounds
    expect(ref.agreement).toBeGreaterThan(0);
    expect(ref.agreement).toBeLessThan(1);

    const rb = await DecoderRunner.create(baseline, 'baseline');
    const rc = await DecoderRunner.create(candidate, 'candidate');
    const got = await compareGeneration(rb, rc, { prompts: ps, newTokens: 24, topK: 5 });
    await rb.release();
    await rc.release();
    expect(got.baselineTokens).toEqual(ref.tb);
    expect(got.candidateTokens).toEqual(ref.tc);
    expect(got.tokenAgreement).toBe(ref.agreement);
    expect(got.firstDivergence).toBe(ref.divergence);
    expect(got.topkAgreement).toBeCloseTo(ref.topk, 12);

    const g = await gate({
      baseline,
      candidate,
      dataset: openDataset(GPT_EVAL),
      metrics: ['gen-agreement', 'gen-divergence', 'topk-agreement'],
      limits: { 'gen-agreement': { kind: 'min', value: ref.agreement + 0.01 } },
      lm: { prompts: 4, promptLength: 8, newTokens: 24, topK: 5 },
    });
    const value = (m: string) => g.metrics.find((x) => x.metric === m)!;
    expect(value('gen-agreement').candidate).toBe(ref.agreement);
    expect(value('gen-divergence').candidate).toBe(ref.divergence);
    expect(value('gen-divergence').baseline).toBe(24);
    expect(value('topk-agreement').candidate).toBeCloseTo(ref.topk, 12);
    expect(g.pass).toBe(false);
  });

  it('gate CLI: a generation limit fails with exit 1, and holds with exit 0', () => {
    const args = ['gate', '--baseline', GPT, '--candidate', candidateFile, '--data', GPT_EVAL, '--prompts', '4', '--prompt-length', '8', '--new-tokens', '24', '--json'];
    const fail = cli(...args, '--min', 'gen-agreement=0.99');
    expect(fail.code, fail.stderr).toBe(1);
    expect(JSON.parse(fail.stdout).failed).toEqual(['gen-agreement']);
    const pass = cli(...args, '--min', 'gen-agreement=0.01', '--max-drop', 'stream-perplexity=50%');
    expect(pass.code, pass.stderr).toBe(0);
    const json = JSON.parse(pass.stdout);
    expect(json.lm).toMatchObject({ window: 64, stride: 32, prompts: 4, promptLength: 8, newTokens: 24, topK: 5 });
    expect(json.metrics['stream-perplexity'].candidate).toBeGreaterThan(json.metrics['stream-perplexity'].baseline);
  });

  it('refuses bad language-model options with one sentence and exit 2', () => {
    expectOneSentence(cli('eval', GPT, '--data', GPT_EVAL, '--metric', 'stream-nll', '--window', '65'), /--window 65 is longer than the model .*gpt_moby\.onnx takes \(64 tokens/);
    expectOneSentence(cli('eval', GPT, '--data', GPT_EVAL, '--metric', 'gen-agreement'), /unknown metric 'gen-agreement'.*slimformer gate/);
    expectOneSentence(cli('gate', '--baseline', GPT, '--candidate', candidateFile, '--min', 'gen-agreement=0.5'), /give --data DATASET, --data-text FILE or --data-images DIR \(or, for the language-model metrics only, --tokens/);
    expectOneSentence(cli('gate', '--baseline', GPT, '--candidate', candidateFile, '--data', GPT_EVAL, '--min', 'gen-agreement=0.5', '--prompt-length', '40', '--new-tokens', '30'), /takes 64 tokens at most.*shorten --prompt-length or --new-tokens/);
    const bad = path.join(dir, 'bad.npy');
    fs.writeFileSync(bad, npyBytes('<i8', [100], BigInt64Array.from({ length: 100 }, (_, i) => BigInt(i))));
    expectOneSentence(cli('eval', GPT, '--tokens', bad, '--metric', 'stream-nll'), /bad\.npy holds token id 76 at position 76, outside the 76 rows of the model .*embedding table/);
  });
});

describe.skipIf(!fs.existsSync(LLAMA_KV))('KV-cache decoder (fixtures/zoo/llama_moby_kv.onnx)', () => {
  const candidateFile = path.join(dir, 'llama_kv_w4.onnx');
  beforeAll(() => {
    const q = cli('quantize', LLAMA_KV, '-o', candidateFile, '--scheme', 'w4');
    expect(q.code, q.stderr).toBe(0);
  });

  it('generation through the cache equals the full-prefix greedy loop, against a w4 copy', async () => {
    const baseline = loadModel(LLAMA_KV);
    const candidate = loadModel(candidateFile);
    const ps = prompts(datasetStream(LLAMA_KV_EVAL), 4, 12);
    const ref = await referenceGeneration(baseline, candidate, ps, 20, 5);
    expect(ref.agreement).toBeLessThan(1);
    const rb = await DecoderRunner.create(baseline, 'baseline');
    const rc = await DecoderRunner.create(candidate, 'candidate');
    expect(rb.io.cache).toHaveLength(4);
    const got = await compareGeneration(rb, rc, { prompts: ps, newTokens: 20, topK: 5 });
    await rb.release();
    await rc.release();
    expect(got.baselineTokens).toEqual(ref.tb);
    expect(got.candidateTokens).toEqual(ref.tc);
    expect(got.tokenAgreement).toBe(ref.agreement);
    expect(got.firstDivergence).toBe(ref.divergence);
    expect(got.topkAgreement).toBeCloseTo(ref.topk, 12);
  });

  it.skipIf(!fs.existsSync(LLAMA))('agrees fully with the no-cache export of the same weights (different inputs are fine)', async () => {
    const g = await gate({
      baseline: loadModel(LLAMA_KV),
      candidate: loadModel(LLAMA),
      dataset: openDataset(LLAMA_KV_EVAL),
      metrics: ['stream-nll', 'gen-agreement', 'gen-divergence', 'topk-agreement'],
      limits: { 'gen-agreement': { kind: 'min', value: 1 }, 'gen-divergence': { kind: 'min', value: 32 }, 'topk-agreement': { kind: 'min', value: 1 } },
    });
    expect(g.pass, JSON.stringify(g.metrics)).toBe(true);
    const nll = g.metrics.find((m) => m.metric === 'stream-nll')!;
    expect(Math.abs(nll.candidate - nll.baseline)).toBeLessThan(1e-5);
  });

  for (const layout of ['decoder_with_past_model', 'decoder_model_merged', 'decoder_model']) {
    const file = path.join(ZOO, 'llama_moby_optimum', `${layout}.onnx`);
    it.skipIf(!fs.existsSync(file) || !fs.existsSync(LLAMA))(`Optimum's ${layout}.onnx generates what the no-cache export does`, async () => {
      const model = loadModel(file);
      const runner = await DecoderRunner.create(model, layout);
      // with_past and merged generate through the cache (merged: use_cache_branch false, then true); decoder_model has no past inputs
      expect(runner.io.cache.length > 0).toBe(layout !== 'decoder_model');
      expect(runner.io.useCacheBranch !== undefined).toBe(layout === 'decoder_model_merged');
      await runner.release();
      const g = await gate({
        baseline: loadModel(LLAMA),
        candidate: model,
        dataset: openDataset(LLAMA_KV_EVAL),
        metrics: ['gen-agreement', 'topk-agreement'],
        limits: { 'gen-agreement': { kind: 'min', value: 1 }, 'topk-agreement': { kind: 'min', value: 1 } },
        lm: { prompts: 4, newTokens: 24 },
      });
      expect(g.pass, JSON.stringify(g.metrics)).toBe(true);
    });
  }
});
