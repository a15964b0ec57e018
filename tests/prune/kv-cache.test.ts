import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/index.js';
import { prune } from '../../src/passes/prune.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { DecoderRunner } from '../../src/validate/decoder-runner.js';
import { zooPath } from '../helpers/zoo.js';

const KV = zooPath('fixtures/zoo/llama_moby_kv.onnx');
const CALIB = zooPath('calibration/zoo/llama_moby_kv/calib');

describe.skipIf(!fs.existsSync(KV))('pruning a decoder with a key/value cache', () => {
  it('removes a key/value group per block, declares the smaller cache, and generates through it as it does without it', async () => {
    const { model, report } = await pipeline([prune({ method: 'optin', headRatio: 0.5, samples: 4 })]).apply(loadModel(KV), { calibration: openDataset(CALIB), threads: 1 });
    const summary = report.passes[0]!.summary as { headsRemoved: number; flopsAfter: number | null; flopsBefore: number | null };
    expect(summary.headsRemoved).toBe(4);
    expect(summary.flopsAfter).toBeLessThan(summary.flopsBefore!);
    for (const v of model.graph.inputs.filter((x) => x.name.startsWith('past_key_values'))) expect(v.shape?.[1]).toBe(1);
    for (const v of model.graph.outputs.filter((x) => x.name.startsWith('present'))) expect(v.shape?.[1]).toBe(1);
    expect(report.quality?.verdict).not.toBe('below-floor');
    // independent check: greedy generation through the pruned cache equals re-running the whole prefix
    const runner = await DecoderRunner.create(model, 'pruned', 1);
    try {
      const prompt = [10, 11, 12, 13, 14, 15];
      const [cached] = await runner.greedy([prompt], 8);
      const seq = [...prompt];
      for (let i = 0; i < 8; i++) {
        const [logits] = await runner.forward([seq]);
        const row = logits!.data.subarray((seq.length - 1) * logits!.vocab, seq.length * logits!.vocab);
        seq.push(row.indexOf(Math.max(...row)));
      }
      expect(cached).toEqual(seq.slice(prompt.length));
    } finally {
      await runner.release();
    }
  });
});
