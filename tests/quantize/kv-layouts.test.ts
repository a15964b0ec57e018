import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { type Dataset, openDataset } from '../../src/data/dataset.js';
import { discoverStructure, findMergedDecoder } from '../../src/discover/index.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel } from '../../src/onnx/load.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import type { MergedQuantizeSummary } from '../../src/passes/quantize-merged.js';
import { DecoderRunner } from '../../src/validate/decoder-runner.js';
import { compareGeneration, type GenerationComparison } from '../../src/validate/generation-agreement.js';
import { cli } from '../helpers/cli.js';
import { expectOneSentence } from '../helpers/cli-checks.js';
import { tempDir } from '../helpers/tmp.js';

// The three KV-cache layouts of the zoo's Llama (one graph; Optimum's pair; Optimum's If-merged
// decoder), quantized to w4 with GPTQ and FlexRound, against the no-cache export of the same
// weights quantized the same way: greedy generation through the cache vs the float model.
const ROOT = path.resolve(import.meta.dirname, '../..');
const ZOO = path.join(ROOT, 'fixtures/zoo');
const DATA = path.join(ROOT, 'calibration/zoo');
const OPT = path.join(ZOO, 'llama_moby_optimum');
const file = {
  nocache: path.join(ZOO, 'llama_moby.onnx'),
  kv: path.join(ZOO, 'llama_moby_kv.onnx'),
  first: path.join(OPT, 'decoder_model.onnx'),
  withPast: path.join(OPT, 'decoder_with_past_model.onnx'),
  merged: path.join(OPT, 'decoder_model_merged.onnx'),
};
const calib = {
  nocache: path.join(DATA, 'llama_moby/calib'),
  kv: path.join(DATA, 'llama_moby_kv/calib'),
  first: path.join(DATA, 'llama_moby_optimum/decoder_model/calib'),
  withPast: path.join(DATA, 'llama_moby_optimum/decoder_with_past_model/calib'),
  merged: path.join(DATA, 'llama_moby_optimum/decoder_model_merged/calib'),
};
const MERGED_EVAL = path.join(DATA, 'llama_moby_optimum/decoder_model_merged/eval');
const present = Object.values(file).every((f) => fs.existsSync(f));
type Key = keyof typeof file;
const METHODS = ['gptq', 'flexround'] as const;
type Method = (typeof METHODS)[number];
// FlexRound kept short so the file stays fast (the CLI default is 500)
const FLEX_ITERS = 100;
const dir = tempDir();
const ids = (d: Dataset, i: number): number => Number(d.read(i).inputs.find((a) => a.name === 'use_cache_branch')!.data[0]);

async function quantized(key: Key, method: Method): Promise<{ model: Model; summary: QuantizeSummary }> {
  const r = await pipeline([quantize({ scheme: 'w4', method, flexround: { iters: FLEX_ITERS }, cacheDir: false, verifySamples: 4 })]).apply(loadModel(file[key]), { calibration: calib[key], threads: 1 });
  return { model: r.model, summary: r.report.passes[0]!.summary as unknown as QuantizeSummary };
}

/** input_ids of the eval samples laid end to end, cut into 8 prompts of 16 tokens (as gate does). */
function prompts(): number[][] {
  const d = openDataset(path.join(DATA, 'llama_moby/eval'));
  const stream: number[] = [];
  for (let i = 0; i < d.size; i++) for (const v of d.read(i).inputs.find((a) => a.name === 'input_ids')!.data as BigInt64Array) stream.push(Number(v));
  const part = Math.floor(stream.length / 8);
  return Array.from({ length: 8 }, (_, i) => stream.slice(i * part, i * part + 16));
}

async function generation(baseline: DecoderRunner, candidate: DecoderRunner): Promise<GenerationComparison> {
  try {
    return await compareGeneration(baseline, candidate, { prompts: prompts(), newTokens: 32, topK: 5 });
  } finally {
    await candidate.release();
  }
}

function signature(m: Model): string[] {
  return [...m.graph.inputs, ...m.graph.outputs].map((v) => `${v.name}:${v.dtype}[${(v.shape ?? []).join(',')}]`);
}

describe.skipIf(!present)('w4 GPTQ and FlexRound on every KV-cache layout vs the no-cache export', () => {
  const figures: Record<string, Record<Method, GenerationComparison>> = {};
  const models: Record<string, Record<Method, Model>> = {};
  const summaries: Partial<Record<Method, QuantizeSummary>> = {};

  beforeAll(async () => {
    for (const method of METHODS) {
      const q = {} as Record<Key, Model>;
      for (const key of Object.keys(file) as Key[]) {
        const r = await quantized(key, method);
        q[key] = r.model;
        if (key === 'merged') summaries[method] = r.summary;
      }
      for (const key of Object.keys(file) as Key[]) (models[key] ??= {} as Record<Method, Model>)[method] = q[key];
      const float = (key: Key, options?: { prefill?: Model }): Promise<DecoderRunner> => DecoderRunner.create(loadModel(file[key]), `float ${key}`, 1, options);
      const cand = (key: Key, options?: { prefill?: Model }): Promise<DecoderRunner> => DecoderRunner.create(q[key], `w4 ${method} ${key}`, 1, options);
      const layouts: [string, () => Promise<DecoderRunner>, () => Promise<DecoderRunner>][] = [
        ['no cache', () => float('nocache'), () => cand('nocache')],
        ['one graph', () => float('kv'), () => cand('kv')],
        // the pair: decoder_model.onnx runs the prompt, decoder_with_past_model.onnx every later token
        ['pair', () => float('withPast', { prefill: loadModel(file.first) }), () => cand('withPast', { prefill: q.first })],
        ['merged', () => float('merged'), () => cand('merged')],
      ];
      for (const [name, b, c] of layouts) {
        const baseline = await b();
        try {
          (figures[name] ??= {} as Record<Method, GenerationComparison>)[method] = await generation(baseline, await c());
        } finally {
          await baseline.release();
        }
      }
    }
    const f = (g: GenerationComparison): string => `${g.tokenAgreement.toFixed(4)} (${g.tokenAgreement * g.prompts * g.newTokens}/${g.prompts * g.newTokens}), first divergence ${g.firstDivergence}, top-5 ${g.topkAgreement.toFixed(4)}`;
    for (const [name, byMethod] of Object.entries(figures)) for (const m of METHODS) console.log(`${name.padEnd(9)} w4 ${m.padEnd(9)} gen-agreement ${f(byMethod[m])}`);
  }, 600_000);

  for (const layout of ['one graph', 'pair', 'merged']) {
    for (const method of METHODS) {
      it(`${layout}, w4 ${method}: generation through the cache agrees with float on at least as many tokens as on the no-cache export`, () => {
        const got = figures[layout]![method];
        const reference = figures['no cache']![method];
        expect(got.tokenAgreement).toBeGreaterThanOrEqual(reference.tokenAgreement);
        // and the quantization did change something (otherwise the comparison says nothing)
        expect(reference.tokenAgreement).toBeLessThan(1);
      });
    }
  }

  it('every quantized layout keeps its exact input/output signature and holds no float MatMul weight', () => {
    for (const key of ['kv', 'first', 'withPast', 'merged'] as const) {
      for (const method of METHODS) {
        const m = models[key]![method];
        expect(signature(m)).toEqual(signature(loadModel(file[key])));
        const floatWeights = [...m.graph.allNodes()].filter((n) => n.opType === 'MatMul' && n.input(1)?.initializer);
        expect(floatWeights.map((n) => n.name)).toEqual([]);
      }
    }
  });

  it('the merged decoder: both branches read one set of packed weights stored in the outer graph, equal to the with-past file quantized alone', () => {
    for (const method of METHODS) {
      const m = models.merged![method];
      const merged = findMergedDecoder(m)!;
      const packedReads = (b: typeof merged.withPast): string[] =>
        b.nodes
          .filter((n) => n.opType === 'MatMulNBits')
          .map((n) => {
            // the packed weight and scales are values of the outer graph, not of the branch
            expect(n.input(1)!.graph).toBe(m.graph);
            expect(n.input(2)!.graph).toBe(m.graph);
            return n.input(1)!.name;
          })
          .sort();
      const withPast = packedReads(merged.withPast);
      expect(withPast).toHaveLength(15);
      expect(packedReads(merged.noPast)).toEqual(withPast);
      expect(merged.withPast.initializers.length + merged.noPast.initializers.length).toBe(0);
      const summary = (summaries[method] as unknown as { merged: MergedQuantizeSummary }).merged;
      expect(summary.rewritten).toEqual([
        { branch: 'then_branch', linears: 15, embeddings: 1 },
        { branch: 'else_branch', linears: 15, embeddings: 1 },
      ]);
      // 15 packed weights + 15 scales + the embedding table at 8 bits (outerBits' default): int8
      // table, scales and zero points
      expect(summary.sharedInitializers).toBe(33);
      expect(summary.withPastOutputs.map((o) => o.name)).toEqual(['logits', 'present.0.key', 'present.0.value', 'present.1.key', 'present.1.value']);
      // the decisions are those the with-past file gets on its own (same weights, same windows)
      const alone = models.withPast![method];
      const bytes = (model: Model, name: string): Uint8Array => model.graph.value(name)!.initializer!.bytes;
      const aloneByNode = new Map(alone.graph.nodes.filter((n) => n.opType === 'MatMulNBits').map((n) => [n.name, n.input(1)!.name]));
      for (const n of merged.withPast.nodes.filter((x) => x.opType === 'MatMulNBits')) {
        expect(Buffer.from(bytes(m, n.input(1)!.name)).equals(Buffer.from(bytes(alone, aloneByNode.get(n.name)!))), n.name).toBe(true);
      }
    }
  });
});

describe.skipIf(!present)('merged decoder: discovery, data, and what is refused', () => {
  it('discovery describes the with-past branch in place: 2 blocks whose weights are the outer graph initializers both branches read', () => {
    const model = loadModel(file.merged);
    const s = discoverStructure(model);
    expect(s.branch).toMatch(/then_branch of If 'optimum::if'/);
    expect(s.blocks.map((b) => [b.attention?.numHeads, b.attention?.numKvHeads, b.mlp?.width])).toEqual([
      [4, 2, 176],
      [4, 2, 176],
    ]);
    expect(s.linears).toHaveLength(15);
    const merged = findMergedDecoder(model)!;
    for (const l of s.linears) {
      expect(l.node.graph).toBe(merged.withPast);
      expect(l.weight.graph).toBe(model.graph);
      // the no-past branch reads the same weight value
      expect(l.weight.uses().some((u) => u.node.graph === merged.noPast)).toBe(true);
    }
  });

  it('batches feed use_cache_branch [1] once and never mix samples with different flags', () => {
    const model = loadModel(file.merged);
    const data = openDataset(MERGED_EVAL);
    const flipped: Dataset = {
      ...data,
      read(i) {
        const s = data.read(i);
        // odd samples say "with past" (the past is empty, which the with-past branch takes)
        return { ...s, inputs: s.inputs.map((a) => (a.name === 'use_cache_branch' ? { ...a, data: Uint8Array.of(i % 4 < 2 ? 0 : 1) } : a)) };
      },
    };
    const bound = bindDataset(flipped, model);
    expect([...bound.unbatched]).toEqual(['use_cache_branch']);
    let total = 0;
    for (const b of batches(bound, 32)) {
      expect(b.feeds.use_cache_branch!.dims).toEqual([1]);
      expect(b.feeds.input_ids!.dims).toEqual([b.count, 64]);
      const flag = b.feeds.use_cache_branch!.data[0];
      for (let i = 0; i < b.count; i++) expect(ids(flipped, b.start + i)).toBe(Number(flag));
      total += b.count;
    }
    expect(total).toBe(data.size);
  });

  it('eval runs the merged decoder at the default batch size', () => {
    const r = cli('eval', file.merged, '--data', MERGED_EVAL, '--metric', 'top1,nll');
    expect(r.code, r.stderr).toBe(0);
    // the README's figures for every layout of these weights
    expect(r.stdout).toMatch(/top1\s+0\.501221/);
    expect(r.stdout).toMatch(/nll\s+1\.6178/);
  });

  it('dynamic int8: both branches read the same int8 weights and the output stays close to float', async () => {
    const r = await pipeline([quantize({ scheme: 'dynamic', cacheDir: false, verifySamples: 4 })]).apply(loadModel(file.merged), { calibration: calib.merged, threads: 1 });
    const m = r.model;
    const merged = findMergedDecoder(m)!;
    const weights = (b: typeof merged.withPast): string[] => b.nodes.filter((n) => n.opType === 'MatMulInteger').map((n) => n.input(1)!.name).sort();
    expect(weights(merged.withPast)).toHaveLength(15);
    expect(weights(merged.noPast)).toEqual(weights(merged.withPast));
    expect(signature(m)).toEqual(signature(loadModel(file.merged)));
    const summary = r.report.passes[0]!.summary as unknown as QuantizeSummary & { merged: MergedQuantizeSummary };
    // measured 26.6 dB (no-past branch, the data's flag) and 26.3 dB (with-past branch) on logits
    expect(summary.outputs.find((o) => o.name === 'logits')!.sqnr).toBeGreaterThan(20);
    expect(summary.merged.withPastOutputs.find((o) => o.name === 'logits')!.sqnr).toBeGreaterThan(20);
  });

  it('prune, analyze and static schemes refuse a merged decoder in one sentence (exit 2), writing nothing', () => {
    const out = path.join(dir, 'refused.onnx');
    for (const args of [
      ['prune', file.merged, '-o', out, '--calib', calib.merged],
      ['analyze', file.merged, '--calib', calib.merged],
      ['quantize', file.merged, '-o', out, '--scheme', 'w8a8', '--calib', calib.merged],
    ]) {
      expectOneSentence(cli(...args), /is a merged decoder \(If 'optimum::if' on 'use_cache_branch'\)/);
      expect(fs.existsSync(out)).toBe(false);
    }
  });
});
