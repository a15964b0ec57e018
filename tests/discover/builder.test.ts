import { describe, expect, it } from 'vitest';
import { modelFromBytes, modelToBytes } from '../../src/onnx/index.js';
import { Session } from '../../src/runtime/session.js';
import { buildTransformer, type TransformerOptions } from '../helpers/transformer-builder.js';

// The built graphs must be real ONNX: onnxruntime loads and runs them, and they round-trip.
const CONFIGS: TransformerOptions[] = [
  { opset: 13, placement: 'pre', activation: 'gelu', mask: 'causal-where' },
  { opset: 14, placement: 'post', activation: 'gelu_tanh', mask: 'additive-input' },
  { opset: 17, placement: 'pre', activation: 'relu', mask: 'causal-add', shapes: 'constant' },
  { opset: 17, placement: 'post', activation: 'silu', linear: 'gemm', mask: 'additive-input' },
  { opset: 18, placement: 'pre', activation: 'swiglu', norm: 'rmsnorm', scale: 'mul-qk', kTranspose: 'double' },
  { opset: 13, placement: 'pre', linear: 'gemm', shapes: 'constant', scale: 'mul-q' },
  { opset: 17, norm: 'rmsnorm', normForm: 'fused', activation: 'swiglu' },
  { opset: 14, rotary: true, norm: 'rmsnorm', activation: 'swiglu', mask: 'causal-add' },
];

describe('transformer builder', () => {
  it.each(CONFIGS.map((c) => [JSON.stringify(c), c] as const))('runs in onnxruntime: %s', async (_label, config) => {
    const built = buildTransformer(config);
    const model = modelFromBytes(modelToBytes(built.model));
    const session = await Session.create(model);
    try {
      const out = await session.run(built.feeds(2));
      const y = out.y!;
      expect(y.dims).toEqual([2, built.options.seq, built.options.hidden]);
      expect([...(y.data as Float32Array)].every(Number.isFinite)).toBe(true);
    } finally {
      await session.release();
    }
  });

  it('is deterministic for a seed', () => {
    const a = modelToBytes(buildTransformer({ seed: 3 }).model);
    const b = modelToBytes(buildTransformer({ seed: 3 }).model);
    const c = modelToBytes(buildTransformer({ seed: 4 }).model);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(c))).toBe(false);
  });
});
