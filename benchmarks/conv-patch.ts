// Conv patch embeddings, measured in one run:
//  1. each ViT with a Conv patch embedding (the zoo's torchvision ViT, HF ViT and DeiT, the
//     bundled vit_mnist): float against w8a8, dynamic and w4 (the patch Conv as a MatMul over
//     patches): the patch layer's SQNR, the output SQNR, top-1 on the evaluation set, and the
//     median latency of float and w8a8 at batch 1 and 16;
//  2. w8a8 with the patch Conv written in the QDQ form onnxruntime fuses into QLinearConv
//     instead (its output requantized to 8 bits per tensor): the output SQNR that costs;
//  3. a ViT-B/16-sized patch embedding alone (3x224x224 -> 768 x 14x14): float Conv, QLinearConv,
//     ConvInteger (static input grid, float output), and the MatMul over patches static
//     (MatMulIntegerToFloat) and dynamic.
//
//   npm run build && node dist/benchmarks/conv-patch.js [--rounds 200]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { calibrate } from '../src/calibrate/index.js';
import { batches, bindDataset } from '../src/data/bind.js';
import { openDataset } from '../src/data/dataset.js';
import { convToPatchMatMul } from '../src/export/patch-matmul.js';
import { quantizeConvStatic } from '../src/export/conv.js';
import { quantizeLinearDynamic } from '../src/export/dynamic.js';
import { activationParams, quantizeLinearStatic } from '../src/export/qdq.js';
import { DataType } from '../src/ir/dtype.js';
import { Graph } from '../src/ir/graph.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/index.js';
import { quantize, type QuantizeSummary } from '../src/passes/quantize.js';
import { pipeline } from '../src/pipeline/pipeline.js';
import { findConvs } from '../src/quantize/conv.js';
import type { Scheme } from '../src/quantize/scheme.js';
import { compareModels } from '../src/quantize/verify.js';
import { quantizeWeight } from '../src/quantize/weight-quantizer.js';
import { medianLatencies } from '../src/runtime/latency.js';
import { evaluate } from '../src/validate/evaluate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const rounds = Number(args.includes('--rounds') ? args[args.indexOf('--rounds') + 1] : 200);
const vits = [
  ['tv_vit_mnist', 'fixtures/zoo/tv_vit_mnist.onnx', 'calibration/zoo/tv_vit_mnist'],
  ['hf_vit', 'fixtures/zoo/hf_vit.onnx', 'calibration/zoo/hf_vit'],
  ['hf_deit', 'fixtures/zoo/hf_deit.onnx', 'calibration/zoo/hf_deit'],
  ['vit_mnist', 'fixtures/vit_mnist.onnx', 'calibration/vit_mnist'],
] as const;

const db = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : x.toFixed(1));
const pct = (x: number): string => (100 * x).toFixed(1);

console.log('| model | scheme | patch layer SQNR dB | output SQNR dB | top-1 % (float) | latency ms b1 float / w8a8 | b16 float / w8a8 |');
console.log('|---|---|---|---|---|---|---|');
for (const [name, file, data] of vits) {
  if (!fs.existsSync(path.join(ROOT, file))) continue;
  const calib = openDataset(path.join(ROOT, data, 'calib'));
  const evalData = openDataset(path.join(ROOT, data, 'eval'));
  const float = loadModel(path.join(ROOT, file));
  const floatTop1 = (await evaluate(float, evalData, { metrics: ['top1'], batchSize: 64 })).metrics.top1!;
  let w8a8: Model | undefined;
  for (const scheme of ['w8a8', 'dynamic', 'w4'] as Scheme[]) {
    const { model, report } = await pipeline([quantize({ scheme, cacheDir: false })]).apply(loadModel(path.join(ROOT, file)), { calibration: calib });
    const s = report.passes[0]!.summary as unknown as QuantizeSummary;
    const patch = s.layers.find((l) => l.name === s.convs[0]?.name);
    const top1 = (await evaluate(model, evalData, { metrics: ['top1'], batchSize: 64 })).metrics.top1!;
    let lat = '';
    if (scheme === 'w8a8') {
      w8a8 = model;
      const cells: string[] = [];
      for (const bs of [1, 16]) {
        const feeds = batches(bindDataset(evalData, float), bs).next().value!.feeds;
        const [a, b] = await medianLatencies([float, model], feeds, { rounds });
        cells.push(`${a!.toFixed(3)} / ${b!.toFixed(3)}`);
      }
      lat = cells.join(' | ');
    }
    console.log(`| ${name} | ${scheme} (${s.convs[0]?.form}) | ${db(patch?.sqnr)} | ${db(s.outputs[0]?.sqnr)} | ${pct(top1)} (${pct(floatTop1)}) | ${lat || '|'} |`);
  }
  // the alternative: the patch Conv as QLinearConv (QDQ with its output requantized), the rest as in w8a8
  const { model: alt } = await pipeline([quantize({ scheme: 'w8a8', cacheDir: false, exclude: [findConvs(float).convs[0]!.name] })]).apply(loadModel(path.join(ROOT, file)), { calibration: calib });
  const conv = findConvs(alt).convs[0]!;
  const x = conv.node.input(0)!.name;
  const y = conv.node.output(0).name;
  const r = (await calibrate(float, calib, { tensors: [x, y], observer: { kind: 'minmax', symmetric: false, bits: 8 }, cacheDir: false })).ranges;
  const q = await quantizeWeight(conv.weight.initializer!.toFloat32(), conv.outChannels, conv.k, { bits: 8, symmetric: true, blockSize: 0, search: 'minmax' });
  const yd = quantizeConvStatic(alt.graph, conv, q, activationParams(r.get(x)!.min[0]!, r.get(x)!.max[0]!), activationParams(r.get(y)!.min[0]!, r.get(y)!.max[0]!), new Map());
  const c = await compareModels(float, alt, calib, [{ name: 'patch', float: y, quantized: yd.name }], { samples: 16 });
  const altTop1 = (await evaluate(alt, evalData, { metrics: ['top1'], batchSize: 64 })).metrics.top1!;
  const feeds = batches(bindDataset(evalData, float), 16).next().value!.feeds;
  const [, mine, theirs] = await medianLatencies([float, w8a8!, alt], feeds, { rounds });
  console.log(`| ${name} | w8a8 (QLinearConv instead) | ${db(c.layers[0]!.sqnr)} | ${db(c.outputs[0]!.sqnr)} | ${pct(altTop1)} (${pct(floatTop1)}) | | b16 patch MatMul ${mine!.toFixed(3)} / QLinearConv ${theirs!.toFixed(3)} |`);
}

// ---- 3. a ViT-B/16 patch embedding alone ----
// (a Conv weight [O, C, kh, kw] is row-major [O, k]: the layout quantizeWeight takes)
const [C, H, O, P] = [3, 224, 768, 16];
function patchEmbedding(): Model {
  const g = new Graph('patch_embedding');
  const x = g.addInput('pixel_values', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', C, H, H] });
  let s = 1;
  const rnd = (): number => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
  const w = g.addInitializer(Tensor.from('pe.weight', DataType.FLOAT, [O, C, P, P], Float32Array.from({ length: O * C * P * P }, () => rnd() * 0.05)));
  const b = g.addInitializer(Tensor.from('pe.bias', DataType.FLOAT, [O], Float32Array.from({ length: O }, () => rnd() * 0.1)));
  const y = g.addNode('Conv', [x, w, b], ['embeddings'], { name: '/pe/Conv', attributes: { kernel_shape: { type: 'ints', value: [P, P] }, strides: { type: 'ints', value: [P, P] } } });
  g.outputs.push(y.output(0));
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}
const xAct = activationParams(-2.2, 2.7);
const forms: [string, Model][] = [['float Conv', patchEmbedding()]];
for (const form of ['QLinearConv', 'ConvInteger', 'patch MatMul static', 'patch MatMul dynamic']) {
  const m = patchEmbedding();
  const g = m.graph;
  const conv = findConvs(m).convs[0]!;
  const q = await quantizeWeight(conv.weight.initializer!.toFloat32(), O, conv.k, { bits: 8, symmetric: true, blockSize: 0, search: 'minmax' });
  if (form === 'QLinearConv') quantizeConvStatic(g, conv, q, xAct, activationParams(-6, 6), new Map());
  else if (form === 'ConvInteger') {
    // static input grid, int8 weight, int32 sums rescaled to float (no output requantization)
    const xq = g.addNode('QuantizeLinear', [conv.node.input(0)!, g.addInitializer(Tensor.from('xs', DataType.FLOAT, [], [xAct.scale])), g.addInitializer(Tensor.from('xz', DataType.UINT8, [], [xAct.zeroPoint]))], ['xq'], { before: conv.node });
    const wq = g.addInitializer(Tensor.fromBytes('wq', DataType.INT8, [O, C, P, P], new Uint8Array(Int8Array.from(q.levels).buffer)));
    const ci = g.addNode('ConvInteger', [xq.output(0), wq, xq.input(2)], ['acc'], { before: conv.node, attributes: { kernel_shape: { type: 'ints', value: [P, P] }, strides: { type: 'ints', value: [P, P] } } });
    const f = g.addNode('Cast', [ci.output(0)], ['accf'], { before: conv.node, attributes: { to: { type: 'int', value: DataType.FLOAT } } });
    const sc = g.addInitializer(Tensor.from('sc', DataType.FLOAT, [1, O, 1, 1], Float32Array.from(q.scales, (v) => v * xAct.scale)));
    const mul = g.addNode('Mul', [f.output(0), sc], ['scaled'], { before: conv.node });
    const add = g.addNode('Add', [mul.output(0), g.addInitializer(Tensor.from('bc', DataType.FLOAT, [1, O, 1, 1], conv.bias!.initializer!.toFloat32()))], ['biased'], { before: conv.node });
    conv.node.output(0).replaceAllUsesWith(add.output(0));
    g.removeNode(conv.node);
  } else {
    const l = convToPatchMatMul(g, conv);
    if (form === 'patch MatMul static') quantizeLinearStatic(g, l, q, xAct, new Map());
    else quantizeLinearDynamic(g, l, q);
  }
  g.removeDeadNodes();
  g.removeUnusedInitializers();
  forms.push([form, m]);
}
for (const bs of [1, 8]) {
  const feeds = { pixel_values: { dtype: DataType.FLOAT, dims: [bs, C, H, H], data: Float32Array.from({ length: bs * C * H * H }, (_, i) => Math.sin(i * 0.37) * 2) } };
  const ms = await medianLatencies(
    forms.map(([, m]) => m),
    feeds,
    { rounds: Math.max(10, Math.floor(rounds / 10)) },
  );
  console.log(`ViT-B/16 patch embedding, batch ${bs}: ${forms.map(([n], i) => `${n} ${ms[i]!.toFixed(2)} ms`).join(', ')}`);
}
