// Whole transformer blocks, cut out of torch-style graphs and out of the bundled fixtures,
// checked against finite differences with respect to every weight and the block input.
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkGradients } from '../../src/autodiff/check.js';
import { buildGradientGraph } from '../../src/autodiff/gradient.js';
import { extractSubgraph } from '../../src/autodiff/subgraph.js';
import { batches, bindDataset } from '../../src/data/bind.js';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { isFloatType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { loadModel } from '../../src/onnx/index.js';
import { blockSpans } from '../../src/reconstruct/blocks.js';
import { Session } from '../../src/runtime/session.js';
import { fixtures } from '../helpers/fixtures.js';
import { buildTransformer, type TransformerOptions } from '../helpers/transformer-builder.js';

/** Cuts block `index` out and checks d(projection of its output) / d(input, every float weight). */
async function checkBlock(model: Model, feeds: Record<string, ArrayTensor>, index: number, budget: { coordinates: number; directions: number }) {
  const span = blockSpans(discoverStructure(model))[index]!;
  const piece = extractSubgraph(model, { inputs: [span.input], outputs: [span.output] });
  const s = await Session.create(model, { expose: piece.inputs });
  const captured = await s.run(feeds, piece.inputs);
  await s.release();
  const weights = piece.model.graph.initializers.filter((v) => v.initializer && isFloatType(v.initializer.dtype) && v.initializer.size > 1).map((v) => v.name);
  const r = await checkGradients(piece.model, { wrt: [span.input, ...weights], feeds: captured, ...budget, threads: 2 });
  return { r, weights, piece };
}

const configs: [string, TransformerOptions][] = [
  ['pre-LN, fused LayerNorm, erf GELU (opset 17)', { opset: 17 }],
  ['post-LN, decomposed LayerNorm, tanh GELU, additive mask (opset 14)', { opset: 14, placement: 'post', activation: 'gelu_tanh', mask: 'additive-input' }],
  ['pre-LN, causal Where mask, ReLU, constant shapes (opset 13)', { opset: 13, mask: 'causal-where', activation: 'relu', shapes: 'constant' }],
  ['Gemm linears on a 2-D stream, causal add mask, scale on q (opset 17)', { opset: 17, linear: 'gemm', mask: 'causal-add', scale: 'mul-q' }],
  ['RMSNorm, SwiGLU, rotary, scale on q and k (opset 18)', { opset: 18, norm: 'rmsnorm', activation: 'swiglu', rotary: true, scale: 'mul-qk' }],
  ['fused RMSNorm, SiLU (opset 17)', { opset: 17, norm: 'rmsnorm', normForm: 'fused', activation: 'silu' }],
];

describe('gradients of whole blocks (float64 finite differences)', () => {
  for (const [name, options] of configs) {
    it(name, async () => {
      const built = buildTransformer({ ...options, blocks: 2, hidden: 16, heads: 2, mlpWidth: 32, seq: 6 });
      const { r, weights } = await checkBlock(built.model, built.feeds(2), 1, { coordinates: 3, directions: 1 });
      console.log(`${name}: max relative error ${r.maxError.toExponential(2)} over ${r.entries.length} checks`);
      if (r.maxError > 1e-3 || r.fallbackReason) console.log(name, r.worst, r.fallbackReason);
      expect(weights.length).toBeGreaterThanOrEqual(8);
      expect(r.precision).toBe('double');
      expect(r.maxError).toBeLessThanOrEqual(1e-3);
    });
  }

  const present = fixtures().filter((f) => fs.existsSync(f.model) && fs.existsSync(f.calibration));
  it.skipIf(present.length === 0)('one full block of each bundled fixture', async () => {
    for (const f of present) {
      const model = loadModel(f.model);
      const bound = bindDataset(openDataset(f.calibration), model);
      const batch = batches(bound, 2).next().value!;
      const index = Math.floor(f.architecture.blocks / 2);
      const { r } = await checkBlock(model, batch.feeds, index, { coordinates: 2, directions: 1 });
      console.log(`${f.name} block ${index}: max relative error ${r.maxError.toExponential(2)} over ${r.entries.length} checks (${r.precision})`);
      if (r.maxError > 1e-3) console.log(f.name, r.worst);
      expect(r.precision).toBe('double');
      expect(r.maxError).toBeLessThanOrEqual(1e-3);
    }
  });

  it.skipIf(present.length === 0)('whole fixture models: the gradient at an MLP activation (Taylor importance) and at the head', async () => {
    for (const f of present) {
      const model = loadModel(f.model);
      const g = model.graph;
      // loss = sum(logits^2) / 2
      const logits = g.outputs[0]!;
      const sq = g.addNode('Mul', [logits, logits], ['taylor_sq']).output(0);
      const loss = g.addNode('ReduceSum', [sq], ['taylor_loss'], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0);
      g.outputs.push(loss);
      const structure = discoverStructure(model);
      const mlp = structure.mlps[structure.mlps.length - 1]!;
      const act = mlp.fc2.input.name;
      const head = structure.linears[structure.linears.length - 1]!.weight.name;
      const bound = bindDataset(openDataset(f.calibration), model);
      const batch = batches(bound, 2).next().value!;
      // the model from the activation on, checked against finite differences
      const piece = extractSubgraph(model, { inputs: [act], outputs: [loss.name] });
      const s = await Session.create(model, { expose: piece.inputs });
      const captured = await s.run(batch.feeds, piece.inputs);
      await s.release();
      const r = await checkGradients(piece.model, { wrt: [act, head, mlp.fc2.weight.name], feeds: captured, loss: loss.name, coordinates: 3, directions: 1 });
      console.log(`${f.name} from '${act}' to the loss: max relative error ${r.maxError.toExponential(2)} (${r.precision})`);
      expect(r.maxError).toBeLessThanOrEqual(1e-3);
      // the whole model's gradient at the activation is the piece's
      const whole = buildGradientGraph(model, { loss: loss.name, wrt: [act] });
      const ws = await Session.create(whole.model);
      const gw = (await ws.run(batch.feeds))[whole.gradients[act]!]!.data as Float32Array;
      await ws.release();
      const part = buildGradientGraph(piece.model, { loss: loss.name, wrt: [act] });
      const ps = await Session.create(part.model);
      const gp = (await ps.run(captured))[part.gradients[act]!]!.data as Float32Array;
      await ps.release();
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < gw.length; i++) {
        worst = Math.max(worst, Math.abs(gw[i]! - gp[i]!));
        scale = Math.max(scale, Math.abs(gp[i]!));
      }
      expect(worst).toBeLessThanOrEqual(1e-5 * scale);
    }
  });
});
