import { constantTensor } from '../discover/constants.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import type { ConvLayer } from '../quantize/conv.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { type ActivationParams, dequantizedInput } from './qdq.js';

function int8Weight(g: Graph, c: ConvLayer, q: QuantizedWeight, suffix: string): Value {
  if (q.bits > 8 || !q.symmetric || q.groups !== 1 || q.n !== c.outChannels || q.blockSize !== c.k) throw new Error(`Conv weights must be symmetric per output channel with at most 8 bits (layer '${c.name}')`);
  // levels are [out, k]: the Conv weight [out, in/group, kh, kw] in its own order
  const levels = Int8Array.from(q.levels);
  return g.addInitializer(Tensor.fromBytes(`${c.name}.weight_${suffix}`, DataType.INT8, constantTensor(c.weight)!.dims, new Uint8Array(levels.buffer)));
}

/**
 * Static INT8 for a Conv, in the QDQ form onnxruntime fuses into QLinearConv: the input through
 * QuantizeLinear → DequantizeLinear, the int8 weight through a DequantizeLinear with one scale
 * per output channel (axis 0), and the output through QuantizeLinear → DequantizeLinear. The
 * output pair is what the fusion needs (measured with onnxruntime-node 1.30 CPU: with Q/DQ on
 * input and weight only, the Conv stays float). The float bias stays: onnxruntime quantizes it
 * to int32 at scale input·weight itself when it fuses. Used for Convs that are not patch
 * embeddings (those become a MatMul over patches, whose output is not requantized). Returns
 * the dequantized output.
 */
export function quantizeConvStatic(g: Graph, c: ConvLayer, q: QuantizedWeight, input: ActivationParams, output: ActivationParams, sharedQ: Map<Value, Value>): Value {
  const wq = int8Weight(g, c, q, 'quantized');
  const scale = g.addInitializer(Tensor.from(`${c.name}.weight_scale`, DataType.FLOAT, [q.n], q.scales));
  const zp = g.addInitializer(Tensor.from(`${c.name}.weight_zero_point`, DataType.INT8, [q.n], new Array(q.n).fill(0)));
  const wd = g.addNode('DequantizeLinear', [wq, scale, zp], [`${c.name}.weight_dequantized`], {
    name: g.uniqueNodeName(`${c.name}.weight/DequantizeLinear`),
    attributes: { axis: { type: 'int', value: 0 } },
    before: c.node,
  }).output(0);
  const xd = dequantizedInput(g, c.node, c.name, input, sharedQ);
  c.node.setInput(0, xd);
  c.node.setInput(1, wd);
  const y = c.node.output(0);
  const yScale = g.addInitializer(Tensor.from(`${c.name}.output_scale`, DataType.FLOAT, [], [output.scale]));
  const yZp = g.addInitializer(Tensor.from(`${c.name}.output_zero_point`, DataType.UINT8, [], [output.zeroPoint]));
  const readers = [...y.uses()];
  const isOutput = g.outputs.includes(y);
  const yq = g.addNode('QuantizeLinear', [y, yScale, yZp], [`${c.name}.output_quantized`], { name: g.uniqueNodeName(`${c.name}/output/QuantizeLinear`), after: c.node });
  const yd = g.addNode('DequantizeLinear', [yq.output(0), yScale, yZp], [`${c.name}.output_dequantized`], { name: g.uniqueNodeName(`${c.name}/output/DequantizeLinear`), after: yq });
  for (const u of readers) u.node.setInput(u.index, yd.output(0));
  if (isOutput) {
    g.outputs = g.outputs.map((v) => (v === y ? yd.output(0) : v));
    const name = y.name;
    g.renameValue(y, g.uniqueName(`${name}_float`));
    g.renameValue(yd.output(0), name);
  }
  return yd.output(0);
}
