// Gram matrices of inputs wider than 2048, summed a band of rows at a time (upper triangle, then
// mirrored), against XᵀX computed here in float64 from the same float32 inputs.
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/autodiff/random.js';
import type { Dataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { inputGrams } from '../../src/quantize/gptq.js';

describe('Gram matrices of wide inputs', () => {
  it('a 2100-wide input summed by bands equals XᵀX, both triangles (relative 1e-6)', async () => {
    const k = 2100;
    const tokens = 24;
    const g = new Graph('wide');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['n', tokens, k] });
    g.outputs.push(g.addNode('Relu', [x], ['y']).output(0));
    const model = new Model(g);
    model.opsetImports = new Map([['', 17]]);
    const rng = new Random(4);
    const samples = Array.from({ length: 3 }, () => Float32Array.from({ length: tokens * k }, () => rng.normal() + 0.3));
    const data: Dataset = { path: 'memory', size: samples.length, read: (i) => ({ inputs: [{ name: 'x', dtype: DataType.FLOAT, dims: [1, tokens, k], data: samples[i]! }], label: undefined, expected: [] }), where: (i) => `sample ${i}` };
    const gram = (await inputGrams(model, data, [{ name: 'y', k }], { batchSize: 2 })).get('y')!;
    const want = new Float64Array(k * k);
    for (const s of samples) {
      for (let t = 0; t < tokens; t++) {
        const row = s.subarray(t * k, (t + 1) * k).map((v) => Math.max(0, v));
        for (let i = 0; i < k; i++) {
          const a = row[i]!;
          if (a === 0) continue;
          for (let j = 0; j < k; j++) want[i * k + j] += a * row[j]!;
        }
      }
    }
    let diff = 0;
    let size = 0;
    for (let i = 0; i < want.length; i++) {
      diff += (gram[i]! - want[i]!) ** 2;
      size += want[i]! ** 2;
    }
    expect(Math.sqrt(diff / size)).toBeLessThan(1e-6);
    // the lower triangle is there (mirrored), not left at zero
    expect(gram[(k - 1) * k]).toBeCloseTo(want[(k - 1) * k]!, 3);
    expect(gram[(k - 1) * k]).not.toBe(0);
  });
});
