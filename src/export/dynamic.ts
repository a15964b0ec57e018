import type { LinearLayer } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { transpose } from './linear-weight.js';

/**
 * Dynamic INT8 for one linear: the input is quantized at run time (DynamicQuantizeLinear),
 * multiplied with int8 weights (MatMulInteger) and rescaled; onnxruntime fuses the four nodes
 * into DynamicQuantizeMatMul. Standard ONNX ops, so other runtimes run it too. Returns the
 * value that now holds the layer's output.
 */
export function quantizeLinearDynamic(g: Graph, l: LinearLayer, q: QuantizedWeight): Value {
  if (q.bits !== 8 || !q.symmetric || q.groups !== 1) throw new Error(`dynamic weights must be int8 symmetric per channel (layer '${l.name}')`);
  const base = l.name;
  const at = { before: l.node };
  const name = (s: string): string => g.uniqueNodeName(`${base}/${s}`);
  // MatMulInteger wants [in, out]
  const wq = g.addInitializer(Tensor.fromBytes(`${base}.weight_quantized`, DataType.INT8, [l.inFeatures, l.outFeatures], new Uint8Array(transpose(Int8Array.from(q.levels), l.outFeatures, l.inFeatures).buffer)));
  const wScale = g.addInitializer(Tensor.from(`${base}.weight_scale`, DataType.FLOAT, [q.n], q.scales));
  const dq = g.addNode('DynamicQuantizeLinear', [l.node.input(0)!], [`${base}.input_quantized`, `${base}.input_scale`, `${base}.input_zero_point`], { name: name('DynamicQuantizeLinear'), ...at });
  const mm = g.addNode('MatMulInteger', [dq.output(0), wq, dq.output(2)], [`${base}.matmul_int32`], { name: name('MatMulInteger'), ...at });
  const asFloat = g.addNode('Cast', [mm.output(0)], [`${base}.matmul_float`], { name: name('Cast'), attributes: { to: { type: 'int', value: DataType.FLOAT } }, ...at });
  const scale = g.addNode('Mul', [dq.output(1), wScale], [`${base}.output_scale`], { name: name('ScaleMul'), ...at });
  let out = g.addNode('Mul', [asFloat.output(0), scale.output(0)], [`${base}.matmul_output`], { name: name('Mul'), ...at }).output(0);
  if (l.node.opType === 'Gemm' && l.node.input(2)) {
    out = g.addNode('Add', [out, l.node.input(2)!], [`${base}.gemm_output`], { name: name('BiasAdd'), ...at }).output(0);
  }
  const old = l.node.output(0);
  old.replaceAllUsesWith(out);
  g.removeNode(l.node);
  return l.biasAdd ? l.output : out;
}
