import type { LinearLayer } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';

/** Bits of the MatMulNBits slot that holds `bits`-bit levels (onnxruntime takes 2, 4 or 8). */
export function slotBits(bits: number): number {
  return bits <= 2 ? 2 : bits <= 4 ? 4 : 8;
}

/**
 * Packs levels into MatMulNBits' layout: [N, blocks, blockSize * slot / 8] bytes, lowest bits
 * first. Signed levels are offset by 2^(slot-1), the kernel's default zero point.
 */
export function packLevels(q: QuantizedWeight, slot: number): Uint8Array {
  const perByte = 8 / slot;
  const padded = q.groups * q.blockSize;
  const out = new Uint8Array((q.n * padded) / perByte);
  const offset = q.symmetric ? 2 ** (slot - 1) : 0;
  const mask = (1 << slot) - 1;
  for (let i = 0; i < q.n * padded; i++) out[Math.floor(i / perByte)]! |= ((q.levels[i]! + offset) & mask) << ((i % perByte) * slot);
  return out;
}

/** Zero points packed per row, [N, ceil(blocks * slot / 8)] bytes. */
function packZeroPoints(q: QuantizedWeight, slot: number): Uint8Array {
  const perByte = 8 / slot;
  const rowBytes = Math.ceil(q.groups / perByte);
  const out = new Uint8Array(q.n * rowBytes);
  for (let r = 0; r < q.n; r++) {
    for (let b = 0; b < q.groups; b++) out[r * rowBytes + Math.floor(b / perByte)]! |= (q.zeroPoints[r * q.groups + b]! & ((1 << slot) - 1)) << ((b % perByte) * slot);
  }
  return out;
}

/**
 * Weight-only quantization of one linear as com.microsoft MatMulNBits (block-wise levels and
 * scales; accuracy_level 4 lets onnxruntime compute with int8 activations internally, its
 * fastest CPU path). Returns the value that now holds the layer's output.
 */
export function quantizeLinearNBits(g: Graph, l: LinearLayer, q: QuantizedWeight): Value {
  const slot = slotBits(q.bits);
  const base = l.name;
  const blocks = q.groups;
  const B = g.addInitializer(Tensor.fromBytes(`${base}.weight_packed`, DataType.UINT8, [q.n, blocks, (q.blockSize * slot) / 8], packLevels(q, slot)));
  const S = g.addInitializer(Tensor.from(`${base}.weight_scales`, DataType.FLOAT, [q.n * blocks], q.scales));
  const inputs: (Value | undefined)[] = [l.node.input(0)!, B, S];
  if (!q.symmetric) inputs.push(g.addInitializer(Tensor.fromBytes(`${base}.weight_zero_points`, DataType.UINT8, [q.n * Math.ceil(blocks / (8 / slot))], packZeroPoints(q, slot))));
  const node = g.addNode('MatMulNBits', inputs, [`${base}.matmul_nbits_output`], {
    name: g.uniqueNodeName(`${base}/MatMulNBits`),
    domain: 'com.microsoft',
    before: l.node,
    attributes: {
      K: { type: 'int', value: l.inFeatures },
      N: { type: 'int', value: l.outFeatures },
      bits: { type: 'int', value: slot },
      block_size: { type: 'int', value: q.blockSize },
      accuracy_level: { type: 'int', value: 4 },
    },
  });
  let out = node.output(0);
  if (l.node.opType === 'Gemm' && l.node.input(2)) {
    out = g.addNode('Add', [out, l.node.input(2)!], [`${base}.gemm_output`], { name: g.uniqueNodeName(`${base}/BiasAdd`), before: l.node }).output(0);
  }
  const old = l.node.output(0);
  old.replaceAllUsesWith(out);
  g.removeNode(l.node);
  return l.biasAdd ? l.output : out;
}
