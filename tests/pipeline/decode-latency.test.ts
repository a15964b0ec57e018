import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/index.js';
import { decodeStepFeeds, measureDecodeLatency } from '../../src/pipeline/decode-latency.js';
import { Session } from '../../src/runtime/session.js';
import { fixtures } from '../helpers/fixtures.js';
import { zooPath } from '../helpers/zoo.js';

const KV = zooPath('fixtures/zoo/llama_moby_kv.onnx');
const MERGED = zooPath('fixtures/zoo/llama_moby_optimum/decoder_model_merged.onnx');

describe.skipIf(!fs.existsSync(KV))('decode-step latency of a decoder with a key/value cache', () => {
  it.each([KV, MERGED])('feeds one token after a cache of the stated length (%s)', async (file) => {
    const model = loadModel(file);
    const feeds = decodeStepFeeds(model, 7)!;
    expect(feeds.input_ids!.dims).toEqual([1, 1]);
    expect(feeds.attention_mask!.dims).toEqual([1, 8]);
    const s = await Session.create(model);
    try {
      const out = await s.run(feeds);
      // the cache grew by the one new token; the logits are for that token
      expect(out['present.0.key']!.dims[2]).toBe(8);
      expect(out.logits!.dims.slice(0, 2)).toEqual([1, 1]);
    } finally {
      await s.release();
    }
  });

  it('times both models, and gives nothing for a model without a cache', async () => {
    const kv = loadModel(KV);
    const r = await measureDecodeLatency(kv, kv, 16, 3);
    expect(r).toMatchObject({ runs: 3, cacheLength: 16 });
    expect(r!.beforeMs).toBeGreaterThan(0);
    const plain = loadModel(fixtures().find((f) => f.name === 'gpt_moby')!.model);
    expect(decodeStepFeeds(plain, 16)).toBeUndefined();
    expect(await measureDecodeLatency(plain, plain, 16, 3)).toBeNull();
  });
});
