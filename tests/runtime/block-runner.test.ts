import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/autodiff/random.js';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { pairBatchSize, planSegments } from '../../src/runtime/block-runner.js';
import { inputGrams, inputGramsBlockwise } from '../../src/quantize/gptq.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { buildTransformer } from '../helpers/transformer-builder.js';
import { writeSamples } from '../helpers/samples.js';
import { tempDir } from '../helpers/tmp.js';

// The block runner cuts the graph into segments of bounded weight bytes and runs all batches
// through one segment before the next; the Gram matrices it yields must be those of a session
// over the whole model.
describe('block runner', () => {
  const built = buildTransformer({ blocks: 3, hidden: 32, heads: 4, mlpWidth: 64, seq: 8, placement: 'pre', norm: 'rmsnorm', rotary: true, activation: 'swiglu', mask: 'causal-where' });
  const model = built.model;
  const dir = tempDir();
  const rng = new Random(3);
  writeSamples(dir, () => ({ x: { dtype: built.feeds(1).x!.dtype, dims: [1, 8, 32], data: Float32Array.from({ length: 8 * 32 }, () => rng.normal()) } }), 10);
  const data = openDataset(path.join(dir));
  const linears = discoverStructure(model).linears;
  const tensors = [...new Map(linears.map((l) => [l.node.input(0)!.name, { name: l.node.input(0)!.name, k: l.inFeatures }])).values()];
  // a block's weights: 4 * 32*32 + 3 * 32*64 floats = 40 KiB; 16 KiB segments cut inside blocks too
  const small = 16 * 1024;

  it('cuts the graph into segments of at most the budget (or one weight) with the values crossing a cut as their inputs', () => {
    const plan = planSegments(model, tensors.map((t) => t.name), small)!;
    expect(plan.nodes.length).toBeGreaterThan(6);
    const biggest = Math.max(...model.graph.initializers.map((v) => v.initializer!.byteLength));
    for (const b of plan.bytes) expect(b).toBeLessThanOrEqual(Math.max(small, biggest));
    // every node once, and every wanted tensor in exactly one segment
    expect(plan.nodes.flat().length).toBe(model.graph.nodes.length);
    expect(plan.wanted.flat().sort()).toEqual(tensors.map((t) => t.name).sort());
    // later segments read the residual stream from earlier ones
    expect(plan.inputs.slice(1).every((names) => names.length > 0)).toBe(true);
  });

  it('ends a segment where the fewest values cross: with room for a block, only the residual stream between blocks', () => {
    // a 48 KiB budget holds one 40 KiB block; cut greedily at the budget, the cuts fell inside the
    // next block's attention and carried 3-4 of its values (for every batch) to the next segment
    const plan = planSegments(model, [], 48 * 1024)!;
    expect(plan.nodes.length).toBe(3);
    expect(plan.inputs.slice(1)).toEqual([['/blocks.0/Add_1_output_0'], ['/blocks.1/Add_1_output_0']]);
    for (const b of plan.bytes) expect(b).toBeLessThanOrEqual(48 * 1024);
  });

  it('gives the Gram matrices of a whole-model session (relative difference under 1e-5)', async () => {
    const whole = await inputGrams(model, data, tensors, { batchSize: 3 });
    const stream = await inputGramsBlockwise(model, data, tensors, { batchSize: 3, maxSegmentBytes: small });
    for (const t of tensors) {
      const a = whole.get(t.name)!;
      const b = await stream.take(t.name);
      // taken again (q, k and v read the same input): the same matrix
      expect(await stream.take(t.name)).toBe(b);
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < a.length; i++) {
        scale = Math.max(scale, Math.abs(a[i]!));
        diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
      }
      expect(scale).toBeGreaterThan(0);
      expect(diff / scale).toBeLessThan(1e-5);
    }
    // asked for out of order, after a later segment's: a clear error
    await expect(stream.take(tensors[0]!.name)).rejects.toThrow(/model's order/);
    await stream.close();
  });
});

// The quantize pass verifies (compareModels) and the pipeline checks the quality floor
// (measureQuality) block-wise above twice the segment size: the figures must be those of
// whole-model sessions.
describe('block-wise verification', () => {
  const built = buildTransformer({ blocks: 3, hidden: 32, heads: 4, mlpWidth: 64, seq: 8, placement: 'pre', norm: 'rmsnorm', rotary: true, activation: 'swiglu', mask: 'causal-where', seed: 5 });
  const dir = tempDir();
  const rng = new Random(4);
  writeSamples(dir, () => ({ x: { dtype: built.feeds(1).x!.dtype, dims: [1, 8, 32], data: Float32Array.from({ length: 8 * 32 }, () => rng.normal()) } }), 6);

  async function quantized(scheme: 'w4' | 'w8a8' | 'dynamic', method: 'rtn' | 'gptq', segmentBytes: string | undefined) {
    if (segmentBytes) process.env.SLIMFORMER_SEGMENT_BYTES = segmentBytes;
    try {
      const { model, report } = await pipeline([quantize({ scheme, method, ...(scheme === 'w4' ? { blockSize: 16 } : {}), outerBits: 'scheme' })]).apply(built.model, { calibration: openDataset(dir) });
      return { model, summary: report.summaryOf('quantize') as QuantizeSummary, quality: report.quality! };
    } finally {
      delete process.env.SLIMFORMER_SEGMENT_BYTES;
    }
  }

  // block-wise, the static schemes are verified one sample at a time (pairBatchSize) and dynamic
  // int8, whose activation scales span a batch, in batches of 4 as whole-model sessions run
  for (const [scheme, method] of [['w4', 'rtn'], ['w4', 'gptq'], ['w8a8', 'rtn'], ['dynamic', 'rtn']] as const) {
    it(`${scheme} ${method}: the layer and output SQNRs and the quality floor figures of whole-model sessions (within 0.01 dB)`, async () => {
      const whole = await quantized(scheme, method, undefined);
      const cut = await quantized(scheme, method, String(16 * 1024));
      expect(cut.summary.layers.length).toBe(whole.summary.layers.length);
      expect(whole.summary.layers.length).toBe(21);
      cut.summary.layers.forEach((l, i) => {
        expect(l.name).toBe(whole.summary.layers[i]!.name);
        expect(Number.isFinite(l.sqnr)).toBe(true);
        expect(Math.abs(l.sqnr! - whole.summary.layers[i]!.sqnr!)).toBeLessThan(0.01);
      });
      expect(Math.abs(cut.summary.outputs[0]!.sqnr - whole.summary.outputs[0]!.sqnr)).toBeLessThan(0.01);
      expect(cut.summary.verifiedSamples).toBe(whole.summary.verifiedSamples);
      expect(Math.abs(cut.quality.sqnr - whole.quality.sqnr)).toBeLessThan(0.01);
      expect(cut.quality.agreement).toBeCloseTo(whole.quality.agreement, 6);
      expect(pairBatchSize(cut.model, 4)).toBe(scheme === 'dynamic' ? 4 : 1);
      // the quantized model is cut like the float one: a weight's DequantizeLinear (w8a8) sits
      // with the MatMul that reads it, not in segment 0 with its output carried along
      const floatPlan = planSegments(built.model, [], 16 * 1024)!;
      const qPlan = planSegments(cut.model, [], 0, floatPlan)!;
      const segmentOf = new Map(qPlan.nodes.flatMap((list, i) => list.map((n) => [n, i] as const)));
      const dq = cut.model.graph.nodes.filter((n) => n.opType === 'DequantizeLinear' && n.input(0)!.initializer);
      expect(dq.length).toBe(scheme === 'w8a8' ? 21 : 0);
      for (const n of dq) for (const c of n.output(0).consumers()) expect(segmentOf.get(c)).toBe(segmentOf.get(n));
      expect(Math.max(...qPlan.bytes)).toBeLessThan(Math.max(...floatPlan.bytes));
    });
  }
});
