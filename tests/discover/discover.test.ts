import { describe, expect, it } from 'vitest';
import { discoverStructure, summarizeStructure } from '../../src/discover/index.js';
import { modelFromBytes, modelToBytes } from '../../src/onnx/index.js';
import { buildTransformer, expectedArchitecture, type TransformerOptions } from '../helpers/transformer-builder.js';

const ACTIVATIONS = ['gelu', 'gelu_tanh', 'relu', 'silu', 'swiglu'] as const;
const MASKS = ['none', 'additive-input', 'causal-where', 'causal-add'] as const;
const SIZES = [
  { hidden: 32, heads: 4, mlpWidth: 64, blocks: 2 },
  { hidden: 48, heads: 3, mlpWidth: 96, blocks: 1 },
  { hidden: 64, heads: 8, mlpWidth: 128, blocks: 3 },
  { hidden: 24, heads: 1, mlpWidth: 40, blocks: 2 },
];

/** Every opset x placement x activation, with masks, shapes, linears and norms rotated through. */
function matrix(): TransformerOptions[] {
  const out: TransformerOptions[] = [];
  let i = 0;
  for (const opset of [13, 14, 17] as const) {
    for (const placement of ['pre', 'post'] as const) {
      for (const activation of ACTIVATIONS) {
        out.push({
          opset,
          placement,
          activation,
          ...SIZES[i % SIZES.length],
          mask: MASKS[i % MASKS.length],
          shapes: i % 3 === 2 ? 'constant' : 'dynamic',
          linear: i % 4 === 3 ? 'gemm' : 'matmul',
          norm: i % 5 === 4 ? 'rmsnorm' : 'layernorm',
          seed: i,
        });
        i++;
      }
    }
  }
  return out;
}

const EXTRA: TransformerOptions[] = [
  { opset: 18, norm: 'layernorm', normForm: 'decomposed' },
  { opset: 18, norm: 'rmsnorm', activation: 'swiglu' },
  { opset: 17, norm: 'rmsnorm', normForm: 'fused', activation: 'swiglu' },
  { opset: 17, normForm: 'decomposed', placement: 'post' },
  { opset: 13, scale: 'mul-q', kTranspose: 'double' },
  { opset: 14, scale: 'mul-qk', mask: 'causal-where', linear: 'gemm' },
  { opset: 17, scale: 'mul-qk', kTranspose: 'double', shapes: 'constant', mask: 'additive-input' },
  { opset: 14, rotary: true, norm: 'rmsnorm', activation: 'swiglu', mask: 'causal-add', blocks: 3 },
  { opset: 17, rotary: true, mask: 'additive-input', linear: 'gemm' },
];

function label(o: TransformerOptions): string {
  return Object.entries(o)
    .filter(([k]) => k !== 'seed')
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

describe('discoverStructure on built transformers', () => {
  it.each([...matrix(), ...EXTRA].map((o) => [label(o), o] as const))('%s', (_label, options) => {
    const built = buildTransformer(options);
    const o = built.options;
    // discover what a saved file holds, not the builder's in-memory graph
    const model = modelFromBytes(modelToBytes(built.model));
    const s = discoverStructure(model);
    const summary = summarizeStructure(model, s);
    const want = expectedArchitecture(o);

    expect(summary.unmatched).toEqual([]);
    expect(summary.opset).toBe(o.opset);
    expect(summary.hidden).toBe(want.hidden);
    expect(summary.blocks).toEqual(
      Array.from({ length: want.blocks }, (_, index) => ({
        index,
        heads: want.heads,
        kvHeads: want.heads,
        headSize: want.headSize,
        projections: 'separate',
        rotaryDims: o.rotary ? want.headSize : 0,
        hidden: want.hidden,
        mlpWidth: want.mlpWidth,
        activation: want.activation,
        norm: want.norm,
        normKind: want.normKind,
        normForm: want.normForm,
      })),
    );
    const perBlock = o.activation === 'swiglu' ? 7 : 6;
    expect(summary.linears).toBe(o.blocks * perBlock);
    expect(summary.norms).toBe(o.blocks * 2 + (o.placement === 'pre' ? 1 : 0));

    for (const a of s.attentions) {
      expect(a.scale).toBeCloseTo(1 / Math.sqrt(want.headSize), 6);
      expect(a.causal).toBe(o.mask === 'causal-where' || o.mask === 'causal-add');
      expect(a.rotary).toBe(o.rotary);
      expect(a.nodes.filter((n) => n.opType === 'Neg')).toHaveLength(o.rotary ? 2 : 0);
      if (o.mask === 'none') expect(a.mask).toBeUndefined();
      else expect(a.mask?.kind).toBe(o.mask === 'causal-where' ? 'where' : 'additive');
      expect(a.mask?.source).toBe(o.mask === 'additive-input' ? 'attention_mask' : undefined);
    }
    for (const b of s.blocks) {
      expect(b.attentionResidual?.branch).toBe(b.attention!.output);
      expect(b.mlpResidual?.branch).toBe(b.mlp!.output);
      // the MLP's residual adds to the stream after the attention's residual (and norm, post-ln)
      const stream = o.placement === 'pre' ? b.attentionResidual!.add.output(0) : b.attentionNorm!.output;
      expect(b.mlpResidual?.skip).toBe(stream);
      expect(b.attentionNorm?.epsilon).toBeCloseTo(1e-5, 10);
    }
    for (const m of s.mlps) expect(m.gate !== undefined).toBe(o.activation === 'swiglu');
  });
});
