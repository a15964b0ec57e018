// Layer-wise FlexRound captures its calibration rows a segment of the graph at a time (the
// block runner) instead of with one session over the whole model. On the zoo's trained Llama,
// cut into small segments, the rows must be those of a whole-model session, and the learned
// weights those of the whole-model path (captureRows, then flexRoundLayer per linear).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { weightOutIn } from '../../src/export/linear-weight.js';
import { loadModel } from '../../src/onnx/load.js';
import { flexRoundLayer } from '../../src/quantize/flexround.js';
import { captureRows, captureRowsBlockwise } from '../../src/quantize/flexround-rows.js';
import { flexRoundWeights } from '../../src/quantize/flexround-weights.js';
import { quantizeWeight, type QuantizedWeight } from '../../src/quantize/weight-quantizer.js';
import { Session } from '../../src/runtime/session.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const file = path.join(ROOT, 'fixtures/zoo/llama_moby.onnx');
const calib = path.join(ROOT, 'calibration/zoo/llama_moby/calib');
const present = fs.existsSync(file) && fs.existsSync(calib);
// llama_moby's blocks hold about 100 KiB of weights: 24 KiB segments cut inside every block
const SMALL = 24 * 1024;

/** Largest |a - b| over the largest |a|. */
function relativeDiff(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(a[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
  }
  return diff / scale;
}

describe.skipIf(!present)('FlexRound rows a segment at a time (llama_moby)', () => {
  const model = present ? loadModel(file) : undefined!;
  const data = present ? openDataset(calib) : undefined!;
  const linears = present ? discoverStructure(model).linears : [];
  const tensors = [...new Map(linears.map((l) => [l.node.input(0)!.name, { name: l.node.input(0)!.name, k: l.inFeatures }])).values()];
  const totalBytes = model ? model.graph.initializers.reduce((a, v) => a + v.initializer!.byteLength, 0) : 0;

  afterEach(() => {
    vi.restoreAllMocks();
    delete process.env.SLIMFORMER_SEGMENT_BYTES;
  });

  it('gives the rows of a whole-model session (relative difference under 1e-5), in several segments', async () => {
    // 100 rows of 16 samples: strided picks inside each batch of 3, the last batch smaller
    const options = { tokens: 100, batchSize: 3 };
    const whole = await captureRows(model, data, tensors, options);
    const stream = await captureRowsBlockwise(model, data, tensors, { ...options, maxSegmentBytes: SMALL });
    const segments = new Set(tensors.map((t) => stream.segmentOf(t.name)));
    expect(segments.size).toBeGreaterThanOrEqual(4);
    const ordered = tensors.slice().sort((a, b) => stream.segmentOf(a.name) - stream.segmentOf(b.name));
    for (const t of ordered) {
      const a = whole.get(t.name)!;
      const b = await stream.take(t.name);
      expect(b.length).toBe(a.length);
      expect(a.length / t.k).toBeGreaterThanOrEqual(100);
      expect(relativeDiff(a, b)).toBeLessThan(1e-5);
    }
    // asked for after a later segment's: a clear error
    await expect(stream.take(ordered[0]!.name)).rejects.toThrow(/model's order/);
    await stream.close();
  });

  it('learns the weights of the whole-model path (same levels on 99.9% of weights, loss within 1e-5 relative), with no session over all weights', async () => {
    expect(linears.length).toBeGreaterThan(8);
    const start: QuantizedWeight[] = [];
    for (const l of linears) start.push(await quantizeWeight(weightOutIn(l), l.outFeatures, l.inFeatures, { bits: 3, symmetric: true, blockSize: 16, search: 'mse' }));
    const settings = { iters: 40, mode: 'layer' as const, tokens: 256, batch: 64, seed: 1 };
    // the independent path: one whole-model session for the rows, then each linear on its own
    const rows = await captureRows(model, data, tensors, { tokens: 256 });
    const expected = [];
    for (const [i, l] of linears.entries()) expected.push(await flexRoundLayer(weightOutIn(l), start[i]!, rows.get(l.node.input(0)!.name)!, { iters: 40, batch: 64, seed: 1 }));

    process.env.SLIMFORMER_SEGMENT_BYTES = String(SMALL);
    const sessionBytes: number[] = [];
    const create = Session.create.bind(Session);
    vi.spyOn(Session, 'create').mockImplementation(async (m, o) => {
      sessionBytes.push(m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0));
      return create(m, o);
    });
    const r = await flexRoundWeights(model, data, linears, start, settings);
    // every session (segments, objectives) holds a small part of the model's weights
    expect(sessionBytes.length).toBeGreaterThan(linears.length);
    expect(Math.max(...sessionBytes)).toBeLessThan(totalBytes / 4);

    let same = 0;
    let total = 0;
    let learned = 0;
    for (const [i, l] of linears.entries()) {
      const got = r.weights[i]!;
      const want = expected[i]!.weight;
      for (let j = 0; j < want.levels.length; j++) if (got.levels[j] === want.levels[j]) same++;
      total += want.levels.length;
      const report = r.layers.find((x) => x.unit === l.name)!;
      expect(Math.abs(report.lossBefore - expected[i]!.lossBefore)).toBeLessThanOrEqual(1e-5 * expected[i]!.lossBefore);
      expect(Math.abs(report.lossAfter - expected[i]!.lossAfter)).toBeLessThanOrEqual(1e-5 * expected[i]!.lossAfter);
      if (report.kept === 'learned') learned++;
    }
    expect(same / total).toBeGreaterThanOrEqual(0.999);
    // learning did something to compare: most layers moved from the start
    expect(learned).toBeGreaterThan(linears.length / 2);
  });
});
