import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Node } from '../../src/ir/node.js';
import { loadModel } from '../../src/onnx/index.js';
import { builtFixture } from './built-fixture.js';
import { quantize } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { parseGranularity, type QuantizeOptions } from '../../src/quantize/scheme.js';
import { Random } from '../../src/autodiff/random.js';
import { Session } from '../../src/runtime/session.js';

const { built, modelFile, calibration } = builtFixture({ blocks: 1, hidden: 64, heads: 4, mlpWidth: 128, seq: 8, opset: 17, mask: 'additive-input', seed: 9 }, 8);

async function quantized(options: QuantizeOptions): Promise<Model> {
  return (await pipeline([quantize({ cacheDir: false, verifySamples: 2, ...options })]).apply(loadModel(modelFile), { calibration })).model;
}

const attr = (n: Node, name: string): number => Number((n.attributes.get(name) as { value: number }).value);
const floats = (n: Node, input: number): Float32Array => n.input(input)!.initializer!.toFloat32();

describe('--granularity', () => {
  it('maps tensor, channel and block:N onto perChannel / blockSize, and refuses the rest in one sentence', () => {
    expect(parseGranularity('tensor', 'w4')).toEqual({ perChannel: false, blockSize: 0 });
    expect(parseGranularity('channel', 'w4')).toEqual({ perChannel: true, blockSize: 0 });
    expect(parseGranularity('block:64', 'w2')).toEqual({ perChannel: true, blockSize: 64 });
    expect(parseGranularity('tensor', 'w8a8')).toEqual({ perChannel: false });
    expect(parseGranularity('channel', 'w8a8')).toEqual({ perChannel: true });
    expect(() => parseGranularity('block:7', 'w4')).toThrow(/block:7 is not supported: N must be one of 16, 32, 64, 128/);
    expect(() => parseGranularity('row', 'w4')).toThrow(/unknown granularity 'row'/);
    expect(() => parseGranularity('block:32', 'w8a8')).toThrow(/needs a weight-only scheme/);
  });

  it('weight-only: block:N gives N inputs per scale, channel one scale per output channel, tensor one per tensor', async () => {
    const count = { 'block:16': 0, channel: 0, tensor: 0 };
    for (const g of ['block:16', 'channel', 'tensor'] as const) {
      const m = await quantized({ scheme: 'w4', ...parseGranularity(g, 'w4') });
      const nodes = m.graph.nodes.filter((n) => n.opType === 'MatMulNBits');
      expect(nodes).toHaveLength(6);
      for (const n of nodes) {
        const [N, K, bs] = [attr(n, 'N'), attr(n, 'K'), attr(n, 'block_size')];
        const scales = floats(n, 2);
        if (g === 'block:16') {
          expect(bs).toBe(16);
          expect(scales.length).toBe(N * Math.ceil(K / 16));
        } else {
          expect(bs).toBeGreaterThanOrEqual(K); // one block covers the whole row
          expect(scales.length).toBe(N);
          if (g === 'tensor') expect(new Set(scales).size).toBe(1);
          else expect(new Set(scales).size).toBeGreaterThan(N / 2);
        }
        count[g] += new Set(scales).size;
      }
    }
    expect(count['block:16']).toBeGreaterThan(count.channel);
    expect(count.channel).toBeGreaterThan(count.tensor);
  });

  it('static (w4a8): channel gives one weight scale per output channel, tensor one per tensor', async () => {
    for (const g of ['channel', 'tensor'] as const) {
      const m = await quantized({ scheme: 'w8a8', weightBits: 4, ...parseGranularity(g, 'w8a8') });
      const dq = m.graph.nodes.filter((n) => n.opType === 'DequantizeLinear' && n.input(0)!.initializer?.dtype === DataType.INT8);
      expect(dq).toHaveLength(6);
      for (const n of dq) {
        const scales = floats(n, 1);
        const out = n.input(0)!.initializer!.dims[attr(n, 'axis')]!;
        expect(scales.length).toBe(out);
        expect(new Set(scales).size).toBe(g === 'tensor' ? 1 : out);
      }
    }
  });
});

describe('w2 (2-bit MatMulNBits)', () => {
  for (const grid of ['symmetric', 'asymmetric'] as const) {
    it(`w2, ${grid} grid: onnxruntime computes x · Ŵ with Ŵ unpacked here from the 2-bit codes, scales${grid === 'asymmetric' ? ' and zero points' : ''} (tolerance 2% of the largest output: accuracy_level 4 rounds x to int8 per block)`, async () => {
      const rng = new Random(4);
      const [rows, K, N] = [5, 96, 24];
      const g = new Graph('linear');
      const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [rows, K] });
      const w = Float32Array.from({ length: K * N }, () => 0.1 * rng.normal());
      g.outputs.push(g.addNode('MatMul', [x, g.addInitializer(Tensor.from('w', DataType.FLOAT, [K, N], w))], ['y']).output(0));
      const float = new Model(g);
      float.opsetImports = new Map([['', 17]]);
      // w2's default grid is asymmetric; symmetric is asked for explicitly
      const { model } = await pipeline([quantize({ scheme: 'w2', blockSize: 32, cacheDir: false, ...(grid === 'symmetric' ? { weightSymmetric: true } : {}) })]).apply(float, {});
      const node = model.graph.nodes.find((n) => n.opType === 'MatMulNBits')!;
      expect(attr(node, 'bits')).toBe(2);
      const bs = attr(node, 'block_size');
      const blocks = Math.ceil(K / bs);
      const packed = node.input(1)!.initializer!.bytes;
      const scales = floats(node, 2);
      const zpBytes = node.input(3)?.initializer?.bytes;
      expect(zpBytes !== undefined).toBe(grid === 'asymmetric');
      // zero points: four 2-bit values per byte, a row of blocks padded to whole bytes; default 2
      const zp = (n: number, b: number): number => (zpBytes ? (zpBytes[n * Math.ceil(blocks / 4) + (b >> 2)]! >> ((b & 3) * 2)) & 3 : 2);
      // unpack: four 2-bit codes per byte, lowest bits first
      const wq = new Float64Array(N * K);
      const codes = new Set<number>();
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const i = n * blocks * bs + k;
          const code = (packed[i >> 2]! >> ((i & 3) * 2)) & 3;
          codes.add(code - zp(n, Math.floor(k / bs)));
          wq[n * K + k] = (code - zp(n, Math.floor(k / bs))) * scales[n * blocks + Math.floor(k / bs)]!;
        }
      }
      if (grid === 'symmetric') {
        // codes -2..1, but round to nearest on absmax/1 reaches only -1, 0, 1
        expect([...codes].every((l) => l >= -1 && l <= 1)).toBe(true);
        expect(codes.size).toBe(3);
      } else {
        // every block spans min..max with 4 levels: some level sits 2 or 3 steps from the zero point
        expect(Math.max(...[...codes].map(Math.abs))).toBeGreaterThanOrEqual(2);
      }
      const xs = Float32Array.from({ length: rows * K }, () => rng.normal());
      const s = await Session.create(model);
      try {
        const y = (await s.run({ x: { dtype: DataType.FLOAT, dims: [rows, K], data: xs } })).y!.data as Float32Array;
        let max = 0;
        const want = new Float64Array(rows * N);
        for (let r = 0; r < rows; r++) for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) acc += xs[r * K + k]! * wq[n * K + k]!;
          want[r * N + n] = acc;
          max = Math.max(max, Math.abs(acc));
        }
        for (let i = 0; i < want.length; i++) expect(Math.abs(y[i]! - want[i]!)).toBeLessThanOrEqual(0.02 * max);
      } finally {
        await s.release();
      }
    });
  }

  it('w2: the asymmetric grid (default) has a lower weight error than the symmetric one; static schemes refuse an asymmetric grid', async () => {
    const errorOf = async (weightSymmetric: boolean): Promise<number> => {
      const m = await quantized({ scheme: 'w2', weightSymmetric });
      const q = (await pipeline([quantize({ scheme: 'w2', cacheDir: false, verifySamples: 2, weightSymmetric })]).apply(loadModel(modelFile), { calibration })).report.passes[0]!.summary as unknown as { outputs: { sqnr: number }[] };
      expect(m.graph.nodes.filter((n) => n.opType === 'MatMulNBits').every((n) => (n.input(3)?.initializer !== undefined) === !weightSymmetric)).toBe(true);
      return q.outputs[0]!.sqnr;
    };
    const asym = await errorOf(false);
    const sym = await errorOf(true);
    expect(asym).toBeGreaterThan(sym + 1);
    await expect(quantized({ scheme: 'w8a8', weightSymmetric: false })).rejects.toThrow(/asymmetric weight grids need a weight-only scheme .*not w8a8/);
  });
});
