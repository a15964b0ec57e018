import type { LinearLayer } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { transpose } from './linear-weight.js';
import { quantParams } from '../calibrate/qparams.js';

/** Per-tensor activation quantization parameters (uint8, asymmetric). */
export interface ActivationParams {
  scale: number;
  zeroPoint: number;
  /** Largest code (default 255). Below 255 a Clip keeps the uint8 codes in [0, qmax] (6- and 4-bit grids). */
  qmax?: number;
}

/**
 * Replaces a linear's float weight by int8 levels and a DequantizeLinear (per output channel),
 * written in the weight's own layout so the MatMul/Gemm reads it unchanged.
 */
export function dequantizedWeight(g: Graph, l: LinearLayer, q: QuantizedWeight): Value {
  if (q.bits > 8 || !q.symmetric || q.groups !== 1) throw new Error(`QDQ weights must be symmetric per channel with at most 8 bits (layer '${l.name}')`);
  const levels = Int8Array.from(q.levels);
  // levels are [out, in]; MatMul stores [in, out]
  const data = l.transB ? levels : transpose(levels, l.outFeatures, l.inFeatures);
  const dims = l.transB ? [l.outFeatures, l.inFeatures] : [l.inFeatures, l.outFeatures];
  const base = `${l.name}.weight`;
  const wq = g.addInitializer(Tensor.fromBytes(`${base}_quantized`, DataType.INT8, dims, new Uint8Array(data.buffer)));
  const scale = g.addInitializer(Tensor.from(`${base}_scale`, DataType.FLOAT, [q.n], q.scales));
  const zp = g.addInitializer(Tensor.from(`${base}_zero_point`, DataType.INT8, [q.n], new Array(q.n).fill(0)));
  return g.addNode('DequantizeLinear', [wq, scale, zp], [`${base}_dequantized`], {
    name: g.uniqueNodeName(`${base}/DequantizeLinear`),
    attributes: { axis: { type: 'int', value: l.transB ? 0 : 1 } },
    before: l.node,
  }).output(0);
}

/**
 * Static INT8 (w8a8) for one linear: int8 weight with its DequantizeLinear, and the input
 * through QuantizeLinear → DequantizeLinear. The Q of an input tensor is shared by every
 * layer reading it; each layer gets its own DQ, since onnxruntime fuses a DQ → MatMul pair
 * into an integer kernel only when the DQ has one reader.
 */
export function quantizeLinearStatic(g: Graph, l: LinearLayer, q: QuantizedWeight, act: ActivationParams, sharedQ: Map<Value, Value>): void {
  const wd = dequantizedWeight(g, l, q);
  const xd = dequantizedInput(g, l.node, l.name, act, sharedQ);
  l.node.setInput(0, xd);
  l.node.setInput(1, wd);
}

/**
 * The first input of `reader` through QuantizeLinear → DequantizeLinear: the Q is shared by
 * every reader of the tensor (`sharedQ`), the DQ is the reader's own (named after `label`).
 */
export function dequantizedInput(g: Graph, reader: Node, label: string, act: ActivationParams, sharedQ: Map<Value, Value>): Value {
  const input = reader.input(0)!;
  let xq = sharedQ.get(input);
  const scale = (): Value => g.addInitializer(Tensor.from(`${input.name}_scale`, DataType.FLOAT, [], [act.scale]));
  const zp = (): Value => g.addInitializer(Tensor.from(`${input.name}_zero_point`, DataType.UINT8, [], [act.zeroPoint]));
  if (!xq) {
    const producer = input.producer();
    const qn = g.addNode('QuantizeLinear', [input, scale(), zp()], [`${input.name}_quantized`], {
      name: g.uniqueNodeName(`${input.name}/QuantizeLinear`),
      ...(producer && producer.graph === g ? { after: producer } : { before: g.nodes[0] }),
    });
    xq = qn.output(0);
    const qmax = act.qmax ?? 255;
    if (qmax < 255) {
      const lo = g.addInitializer(Tensor.from(`${input.name}_qmin`, DataType.UINT8, [], [0]));
      const hi = g.addInitializer(Tensor.from(`${input.name}_qmax`, DataType.UINT8, [], [qmax]));
      xq = g.addNode('Clip', [xq, lo, hi], [`${input.name}_quantized_clipped`], { name: g.uniqueNodeName(`${input.name}/Clip`), after: qn }).output(0);
    }
    sharedQ.set(input, xq);
  }
  const qNode = quantizeNodeOf(xq);
  return g.addNode('DequantizeLinear', [xq, qNode.input(1), qNode.input(2)], [`${label}.input_dequantized`], {
    name: g.uniqueNodeName(`${label}/input/DequantizeLinear`),
    before: reader,
  }).output(0);
}

function quantizeNodeOf(xq: Value) {
  let p = xq.producer()!;
  if (p.opType === 'Clip') p = p.input(0)!.producer()!;
  return p;
}

/** Activation range → unsigned scale and zero point on a `bits`-bit grid (the calibration module's convention). */
export function activationParams(min: number, max: number, bits = 8): ActivationParams {
  const q = quantParams(min, max, { bits, symmetric: false, signed: false });
  return { scale: Math.fround(q.scale), zeroPoint: q.zeroPoint, ...(bits < 8 ? { qmax: q.qmax } : {}) };
}
