import { afterEach, describe, expect, it, vi } from 'vitest';
import { calibrate } from '../../src/calibrate/calibrate.js';
import type { ObserverSpec } from '../../src/calibrate/observer.js';
import type { Dataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Session } from '../../src/runtime/session.js';
import { buildTransformer } from '../helpers/transformer-builder.js';
import { normals } from './reference.js';

// Above two segments of weights (SLIMFORMER_SEGMENT_BYTES here) calibration runs the model a
// segment at a time (runtime/block-runner.ts). The ranges must be those of the whole-model
// pass, and no session may hold all the weights.
describe('block-wise calibration', () => {
  const built = buildTransformer({ blocks: 3, hidden: 32, heads: 4, mlpWidth: 64, seq: 8, placement: 'pre', norm: 'rmsnorm', rotary: true, activation: 'swiglu', mask: 'causal-where', seed: 9 });
  const model = built.model;
  const samples = Array.from({ length: 10 }, (_, i) => [{ name: 'x', dims: [1, 8, 32], data: normals(8 * 32, 300 + i) }]);
  const dataset: Dataset = { path: 'memory', size: samples.length, where: (i) => `sample ${i}`, read: (i) => ({ inputs: samples[i]!.map((a) => ({ ...a, dtype: DataType.FLOAT })), label: undefined, expected: [] }) };
  const tensors = [...new Set(discoverStructure(model).linears.map((l) => l.input.name))];
  const weightBytes = model.graph.initializers.reduce((a, v) => a + v.initializer!.byteLength, 0);
  // a block's weights are 40 KiB: 16 KiB segments cut inside blocks too
  const small = 16 * 1024;

  afterEach(() => {
    delete process.env.SLIMFORMER_SEGMENT_BYTES;
    vi.restoreAllMocks();
  });

  /** Ranges, and the most weight bytes any session created during the run held. */
  async function run(spec: ObserverSpec, segmentBytes: number | undefined) {
    if (segmentBytes) process.env.SLIMFORMER_SEGMENT_BYTES = String(segmentBytes);
    const create = Session.create.bind(Session);
    let largest = 0;
    vi.spyOn(Session, 'create').mockImplementation((m: Model, o) => {
      largest = Math.max(largest, m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0));
      return create(m, o);
    });
    const r = await calibrate(model, dataset, { tensors, observer: spec, batchSize: 3, cacheDir: false });
    vi.restoreAllMocks();
    delete process.env.SLIMFORMER_SEGMENT_BYTES;
    return { r, largest };
  }

  // minmax reduces in the graph (the statistics graph cut like the model); percentile copies
  // whole tensors out (a group of tensors per pass)
  for (const spec of [{ kind: 'minmax' }, { kind: 'minmax', perChannel: true, channelAxis: -1 }, { kind: 'percentile', symmetric: true, percentile: 99.9 }] as ObserverSpec[]) {
    it(`${spec.kind}${spec.perChannel ? ' per channel' : ''}: the ranges of the whole-model pass (relative 1e-6), with no session over all the weights`, async () => {
      const whole = await run(spec, undefined);
      const cut = await run(spec, small);
      expect(whole.largest).toBeGreaterThanOrEqual(weightBytes);
      expect(cut.largest).toBeLessThan(weightBytes / 2);
      expect(cut.r.forwardPasses).toBe(whole.r.forwardPasses);
      expect([...cut.r.ranges.keys()].sort()).toEqual([...whole.r.ranges.keys()].sort());
      for (const [name, a] of whole.r.ranges) {
        const b = cut.r.ranges.get(name)!;
        const scale = Math.max(...Array.from(a.max, Math.abs), ...Array.from(a.min, Math.abs));
        expect(scale).toBeGreaterThan(0);
        for (let c = 0; c < a.min.length; c++) {
          // float32 kernels fused across a cut may round differently: 1e-6 of the range
          expect(Math.abs(a.min[c]! - b.min[c]!)).toBeLessThanOrEqual(1e-6 * scale);
          expect(Math.abs(a.max[c]! - b.max[c]!)).toBeLessThanOrEqual(1e-6 * scale);
        }
      }
    });
  }
});
