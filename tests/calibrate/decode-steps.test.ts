import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withDecodeSteps } from '../../src/calibrate/decode-steps.js';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import { loadModel } from '../../src/onnx/index.js';
import { Session } from '../../src/runtime/session.js';
import { fixtures } from '../helpers/fixtures.js';
import { zooPath } from '../helpers/zoo.js';

const KV = zooPath('fixtures/zoo/llama_moby_kv.onnx');
const CALIB = zooPath('calibration/zoo/llama_moby_kv/calib');

describe.skipIf(!fs.existsSync(KV))('calibration through the key/value cache', () => {
  it('adds one decode-step sample per prompt whose logits equal the prompt run whole (tolerance 1e-4)', async () => {
    const model = loadModel(KV);
    const data = openDataset(CALIB);
    const { dataset, summary } = await withDecodeSteps(model, data);
    expect(dataset.size).toBe(2 * data.size);
    expect(summary!.prompts).toBe(data.size);
    const prompt = data.read(0);
    const step = dataset.read(data.size);
    const T = prompt.inputs.find((x) => x.name === 'input_ids')!.dims[1]!;
    const half = Math.floor(T / 2);
    expect(step.inputs.find((x) => x.name === 'past_key_values.0.key')!.dims).toEqual([1, 2, half, 16]);
    expect(step.inputs.find((x) => x.name === 'input_ids')!.dims).toEqual([1, T - half]);
    expect(dataset.where(data.size)).toMatch(/decoded through a cache of its first 32 tokens/);
    // independent check: the whole prompt in one pass (empty past) scores the second half the same
    const s = await Session.create(model);
    try {
      const feed = (inputs: typeof prompt.inputs) => Object.fromEntries(inputs.map((x) => [x.name, { dtype: x.dtype, dims: x.dims, data: x.data }]));
      const whole = (await s.run(feed(prompt.inputs), ['logits'])).logits!;
      const part = (await s.run(feed(step.inputs), ['logits'])).logits!;
      const V = whole.dims[2]!;
      const a = (whole.data as Float32Array).subarray(half * V);
      const b = part.data as Float32Array;
      expect(b.length).toBe(a.length);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (Math.abs(a[i]!) + 1));
      expect(worst).toBeLessThan(1e-4);
    } finally {
      await s.release();
    }
    // the label follows the decoded half
    expect(step.label!.dims).toEqual([1, T - half]);
    expect(step.label!.dtype).toBe(DataType.INT64);
  });

  it('leaves the data of a model without a cache as it is', async () => {
    const f = fixtures().find((x) => x.name === 'gpt_moby')!;
    const data = openDataset(f.calibration);
    const r = await withDecodeSteps(loadModel(f.model), data);
    expect(r.dataset).toBe(data);
    expect(r.summary).toBeUndefined();
  });
});
