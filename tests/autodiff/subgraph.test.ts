import { describe, expect, it } from 'vitest';
import { extractSubgraph } from '../../src/autodiff/subgraph.js';
import { discoverStructure } from '../../src/discover/index.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { modelFromBytes, modelToBytes } from '../../src/onnx/index.js';
import { blockSpans } from '../../src/reconstruct/blocks.js';
import { Session } from '../../src/runtime/session.js';
import { sameOutputs } from '../helpers/compare.js';
import { buildTransformer, type TransformerOptions } from '../helpers/transformer-builder.js';
import { TinyGraph } from './helpers.js';

async function checkPiece(options: TransformerOptions, index: number) {
  const built = buildTransformer({ blocks: 2, hidden: 16, heads: 2, mlpWidth: 32, seq: 6, ...options });
  const span = blockSpans(discoverStructure(built.model))[index]!;
  const piece = extractSubgraph(built.model, { inputs: [span.input], outputs: [span.output] });
  const feeds = built.feeds(3);
  const full = await Session.create(built.model, { expose: [...piece.inputs, span.output] });
  const all = await full.run(feeds, [...piece.inputs, span.output]);
  await full.release();
  const s = await Session.create(modelFromBytes(modelToBytes(piece.model)));
  const ins = Object.fromEntries(piece.inputs.map((n) => [n, all[n]!]));
  const out = await s.run(ins);
  await s.release();
  expect(sameOutputs({ y: out[span.output]! }, { y: all[span.output]! })).toBe(true);
  return { piece, span, model: built.model };
}

describe('extractSubgraph', () => {
  it('cuts block 0 of a BERT-style graph: the mask is computed inside from the attention_mask input', async () => {
    const { piece, span } = await checkPiece({ placement: 'post', mask: 'additive-input', opset: 14 }, 0);
    expect(piece.inputs).toEqual([span.input, 'attention_mask']);
    expect(piece.sideInputs).toEqual(['attention_mask']);
  });

  it('cuts block 1: the float mask computed before it is a side input', async () => {
    const { piece } = await checkPiece({ placement: 'post', mask: 'additive-input', opset: 14 }, 1);
    expect(piece.sideInputs).toHaveLength(1);
    expect(piece.model.graph.value(piece.sideInputs[0]!)!.type).toMatchObject({ kind: 'tensor', dtype: DataType.FLOAT });
    expect(piece.model.graph.nodes.some((n) => n.opType === 'Cast')).toBe(false);
  });

  it('recomputes shape arithmetic read from a model input (Gemm-style 2-D stream)', async () => {
    const { piece } = await checkPiece({ linear: 'gemm', opset: 17 }, 1);
    expect(piece.sideInputs).toEqual(['x']);
    expect(piece.model.graph.nodes.filter((n) => n.opType === 'Shape').length).toBeGreaterThan(0);
  });

  it('copies constant expressions (an Identity of a shared initializer) instead of feeding them', () => {
    const t = new TinyGraph(17);
    const x = t.input('x', [2, 3]);
    const w = t.g.addInitializer(Tensor.from('shared', DataType.FLOAT, [3, 3], Array.from({ length: 9 }, (_, i) => i)));
    const wi = t.op('Identity', [w]);
    const h = t.op('MatMul', [x, wi]);
    const y = t.op('MatMul', [t.op('Relu', [h]), wi]);
    const m = t.model(y);
    const piece = extractSubgraph(m, { inputs: [h.name], outputs: [y.name] });
    expect(piece.sideInputs).toEqual([]);
    expect(piece.model.graph.nodes.map((n) => n.opType).sort()).toEqual(['Identity', 'MatMul', 'Relu']);
    expect(piece.model.graph.value('shared')!.initializer).toBe(w.initializer);
  });

  it('names missing tensors and refuses an output that is also an input', () => {
    const t = new TinyGraph(17);
    const x = t.input('x', [2]);
    const y = t.op('Neg', [x]);
    const m = t.model(y);
    expect(() => extractSubgraph(m, { inputs: ['nope'], outputs: [y.name] })).toThrow(/no tensor named 'nope'/);
    expect(() => extractSubgraph(m, { inputs: [x.name], outputs: [x.name] })).toThrow(/both an input and an output/);
  });
});
