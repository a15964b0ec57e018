import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { discoverStructure } from '../../src/discover/index.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { tensorFromArray } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { writeTensorFile } from '../../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { Session } from '../../src/runtime/session.js';
import { buildLlama, cacheNames, llamaFeeds, type LlamaOptions } from '../helpers/llama-builder.js';
import { tempDir } from '../helpers/tmp.js';

// The 1B benchmark's decoder (tests/helpers/llama-builder.ts) at small dimensions: grouped-query
// attention (8 query heads / 2 key/value heads), embedding table, LM head, and the Optimum KV-cache
// signature. Independent computation: the no-cache graph of the same seed (the same weights),
// run once over the whole generated sequence, gives at each position the logits that the cached
// graph must give one token at a time.
const DIMS: LlamaOptions = { layers: 2, hidden: 64, heads: 8, kvHeads: 2, mlpWidth: 96, vocab: 50, seed: 3 };
const HEAD = 8;
const PROMPT = [3, 17, 41, 8, 25];
const STEPS = 8;
// Max |logit difference| measured: 9.5e-7 float, 1.2e-6 w4 (logits of magnitude ~1-5). float: the
// same float32 kernels on differently shaped inputs (summation order); w4: MatMulNBits
// (accuracy_level 4) also quantizes its input rows to int8 on the fly, where float noise between
// the two paths could round a value one level apart, hence the larger margin
const TOL = { float: 1e-5, w4: 1e-4 };

const dir = tempDir();

function emptyPast(layers: number): Record<string, ArrayTensor> {
  return Object.fromEntries(cacheNames('past_key_values', layers).map((n) => [n, { dtype: DataType.FLOAT, dims: [1, 2, 0, HEAD], data: new Float32Array(0) }]));
}

function writeCalibration(folder: string, kv: boolean): string {
  for (let i = 0; i < 4; i++) {
    const d = path.join(folder, `test_data_set_${i}`);
    fs.mkdirSync(d, { recursive: true });
    const feeds = { ...llamaFeeds(Array.from({ length: 12 }, (_, j) => (i * 13 + j * 7) % 50)), ...(kv ? emptyPast(2) : {}) };
    Object.entries(feeds).forEach(([name, t], k) => writeTensorFile(path.join(d, `input_${k}.pb`), tensorFromArray(name, t)));
  }
  return folder;
}

/** Greedy generation through the cache; the logits row of every new token's prediction. */
async function cachedGreedy(model: Model): Promise<{ tokens: number[]; rows: Float32Array[] }> {
  const s = await Session.create(model, { threads: 1 });
  try {
    const tokens = [...PROMPT];
    const rows: Float32Array[] = [];
    let past = emptyPast(2);
    let fresh = PROMPT;
    for (let step = 0; step < STEPS; step++) {
      const out = await s.run({ ...llamaFeeds(fresh, tokens.length - fresh.length), ...past });
      const logits = out.logits!.data as Float32Array;
      const row = logits.slice((fresh.length - 1) * 50, fresh.length * 50);
      rows.push(row);
      const next = row.indexOf(Math.max(...row));
      tokens.push(next);
      past = Object.fromEntries(cacheNames('past_key_values', 2).map((n) => [n, out[n.replace('past_key_values', 'present')]!]));
      fresh = [next];
    }
    return { tokens, rows };
  } finally {
    await s.release();
  }
}

/** Logits of the no-cache graph at the positions that predicted each generated token. */
async function fullRows(model: Model, tokens: number[]): Promise<Float32Array[]> {
  const s = await Session.create(model, { threads: 1 });
  try {
    const logits = (await s.run(llamaFeeds(tokens.slice(0, -1)))).logits!.data as Float32Array;
    return Array.from({ length: STEPS }, (_, i) => logits.slice((PROMPT.length - 1 + i) * 50, (PROMPT.length + i) * 50));
  } finally {
    await s.release();
  }
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i]![j]!)))));
  return m;
}

const signature = (m: Model): string[] => [...m.graph.inputs, ...m.graph.outputs].map((v) => `${v.name}:${v.dtype}[${(v.shape ?? []).join(',')}]`);

describe('Llama builder: grouped-query attention with a KV cache', () => {
  const kv = buildLlama({ ...DIMS, kvCache: true }).model;
  const nocache = buildLlama({ ...DIMS, kvCache: false }).model;
  const w4 = {} as { kv: Model; nocache: Model; summary: QuantizeSummary };

  beforeAll(async () => {
    const run = (m: Model, kvCache: boolean) =>
      pipeline([quantize({ scheme: 'w4', method: 'rtn', cacheDir: false, verifySamples: 4 })]).apply(m, { calibration: writeCalibration(path.join(dir, kvCache ? 'kv' : 'nocache'), kvCache), threads: 1 });
    const [a, b] = [await run(kv.clone(), true), await run(nocache.clone(), false)];
    w4.kv = a.model;
    w4.nocache = b.model;
    w4.summary = a.report.passes[0]!.summary as unknown as QuantizeSummary;
  });

  it('is discovered with 8 query heads, 2 key/value heads and a cache concat for k and v in each block', () => {
    const s = discoverStructure(kv);
    expect(s.blocks).toHaveLength(2);
    for (const b of s.blocks) {
      expect(b.attention?.numHeads).toBe(8);
      expect(b.attention?.numKvHeads).toBe(2);
      expect(b.attention?.headSize).toBe(HEAD);
      expect(b.attention?.cacheConcats).toHaveLength(2);
      expect(b.attention?.rotary).toBe(true);
    }
  });

  it('generates through the cache what the no-cache graph computes over the whole sequence (float)', async () => {
    const cached = await cachedGreedy(kv);
    expect(maxAbsDiff(cached.rows, await fullRows(nocache, cached.tokens))).toBeLessThan(TOL.float);
  });

  it('w4 RTN keeps the signature, quantizes every linear and the LM head, and its cached decode equals the w4 no-cache graph', async () => {
    expect(signature(w4.kv)).toEqual(signature(kv));
    // 2 x (q, k, v, o, gate, up, down) + lm_head, all MatMulNBits
    expect(w4.summary.layers).toHaveLength(15);
    expect(w4.kv.graph.nodes.filter((n) => n.opType === 'MatMulNBits')).toHaveLength(15);
    expect(w4.summary.layers.find((l) => l.name === 'lm_head')).toBeDefined();
    const cached = await cachedGreedy(w4.kv);
    const full = await fullRows(w4.nocache, cached.tokens);
    expect(maxAbsDiff(cached.rows, full)).toBeLessThan(TOL.w4);
    // and it is a different model from the float one (the check above could not pass by accident)
    expect(maxAbsDiff(cached.rows, await fullRows(nocache, cached.tokens))).toBeGreaterThan(1e-2);
  });
});
