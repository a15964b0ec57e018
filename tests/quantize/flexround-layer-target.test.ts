// Block-wise FlexRound learns the linears outside the blocks (here the LM head) one at a time,
// and fits them as sequential GPTQ does: on the inputs the quantized model gives them, against
// the float model's outputs. On the zoo's trained Llama export the head is the graph's last op,
// so its starting error on that objective is the mean squared difference between the logits of
// the model GPTQ quantized and the float model's: checked against the two models run in
// onnxruntime (relative 1e-4: float32 sums over 1024 tokens x 76 outputs, and MatMulNBits in
// float against a MatMul of the same dequantized weights).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel } from '../../src/onnx/load.js';
import { flexRound, gptq } from '../../src/passes/flexround.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { Session } from '../../src/runtime/session.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const file = path.join(ROOT, 'fixtures/zoo/llama_moby.onnx');
const calib = path.join(ROOT, 'calibration/zoo/llama_moby/calib');
const phiFile = path.join(ROOT, 'fixtures/zoo/phi_moby.onnx');
const phiCalib = path.join(ROOT, 'calibration/zoo/phi_moby/calib');
const present = [file, calib, phiFile, phiCalib].every((f) => fs.existsSync(f));

/** Mean squared difference of two runs' outputs. */
function mse(a: Float32Array[], b: Float32Array[]): { value: number; count: number } {
  let sum = 0;
  let count = 0;
  a.forEach((x, i) => x.forEach((v, j) => ((sum += (v - b[i]![j]!) ** 2), count++)));
  return { value: sum / count, count };
}

/** The written MatMulNBits compute with int8 activations (accuracy_level 4); the objectives use the float weights the levels stand for. */
function floatCompute(model: Model): Model {
  for (const n of model.graph.nodes) if (n.opType === 'MatMulNBits') n.attributes.set('accuracy_level', { type: 'int', value: 0 });
  return model;
}

async function logits(model: Model, data: ReturnType<typeof openDataset>): Promise<Float32Array[]> {
  const session = await Session.create(model, { threads: 1 });
  const out: Float32Array[] = [];
  try {
    for (const b of batches(bindDataset(data, model), 8)) out.push((await session.run(b.feeds, ['logits'])).logits!.data as Float32Array);
  } finally {
    await session.release();
  }
  return out;
}

describe.skipIf(!present)('FlexRound after the blocks: the sequential-GPTQ target (llama_moby)', () => {
  it("the head's starting error is that of the GPTQ model's logits against the float model's", async () => {
    const data = openDataset(calib);
    // embedding tables left float: the head's inputs then differ from the float model's through the quantized blocks alone
    const opts = { bits: 3 as const, embeddings: false, cacheDir: false as const, verifySamples: 2 };
    const fr = await pipeline([flexRound({ ...opts, iters: 20 })]).apply(loadModel(file), { calibration: data });
    const head = fr.report.summaryOf('flexround')!.flexround!.units.find((u) => u.unit === 'lm.lm_head')!;
    const quantized = await pipeline([gptq(opts)]).apply(loadModel(file), { calibration: data });
    const d = mse(await logits(floatCompute(quantized.model), data), await logits(loadModel(file), data));
    expect(d.count).toBe(16 * 64 * 76); // 16 samples of 64 tokens, 76 characters; all rows taken (fewer than the 4096 kept per layer)
    expect(Math.abs(head.lossBefore - d.value) / d.value).toBeLessThan(1e-4);
  });

  it('a layer learned alone reads what the layers learned alone before it give as learned (phi_moby: MLPs outside the blocks, then the head)', async () => {
    const data = openDataset(phiCalib);
    // from round to nearest every unit learns; the head is learned last, so its final error is that of the written model's logits
    const fr = await pipeline([flexRound({ bits: 3, embeddings: false, start: 'rtn', iters: 20, cacheDir: false, verifySamples: 2 })]).apply(loadModel(phiFile), { calibration: data });
    const units = fr.report.summaryOf('flexround')!.flexround!.units;
    expect(units.filter((u) => /mlp\.fc[12]$/.test(u.unit) && u.kept === 'learned').length).toBeGreaterThan(0);
    const head = units.find((u) => u.unit === 'lm.lm_head')!;
    expect(units.at(-1)).toBe(head);
    expect(head.kept).toBe('learned');
    const d = mse(await logits(floatCompute(fr.model), data), await logits(loadModel(phiFile), data));
    // relative 1e-3: the written levels are rounded in JavaScript from the learned scales, the objective's in onnxruntime
    expect(Math.abs(head.lossAfter - d.value) / d.value).toBeLessThan(1e-3);
  });
});
