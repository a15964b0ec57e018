import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { EmbeddingTable } from '../quantize/select.js';
import type { QuantizedWeight } from '../quantize/weight-quantizer.js';
import { packLevels } from './matmul-nbits.js';

/**
 * An int8 embedding table: Gather reads int8 rows, a DequantizeLinear with one scale per
 * hidden channel (the last axis) turns the gathered rows back into floats. `q` holds the
 * table transposed ([width, rows]), one symmetric scale per hidden channel.
 */
export function quantizeEmbeddingInt8(g: Graph, e: EmbeddingTable, q: QuantizedWeight): void {
  const levels = new Int8Array(e.rows * e.width);
  for (let c = 0; c < e.width; c++) for (let r = 0; r < e.rows; r++) levels[r * e.width + c] = q.levels[c * q.groups * q.blockSize + r]!;
  const base = e.table.name;
  const tq = g.addInitializer(Tensor.fromBytes(`${base}_quantized`, DataType.INT8, [e.rows, e.width], new Uint8Array(levels.buffer)));
  const scale = g.addInitializer(Tensor.from(`${base}_scale`, DataType.FLOAT, [e.width], q.scales));
  const zp = g.addInitializer(Tensor.from(`${base}_zero_point`, DataType.INT8, [e.width], new Array(e.width).fill(0)));
  const rows = g.addNode('Gather', [tq, e.node.input(1)!], [`${e.node.output(0).name}_quantized`], { name: g.uniqueNodeName(`${e.node.name}_quantized`), before: e.node, attributes: { axis: { type: 'int', value: 0 } } });
  const dq = g.addNode('DequantizeLinear', [rows.output(0), scale, zp], [`${e.node.output(0).name}_dequantized`], { name: g.uniqueNodeName(`${e.node.name}/DequantizeLinear`), before: e.node, attributes: { axis: { type: 'int', value: -1 } } });
  e.node.output(0).replaceAllUsesWith(dq.output(0));
  g.removeNode(e.node);
}

/**
 * A 4-bit (or 3-bit, in 4-bit slots) embedding table as com.microsoft GatherBlockQuantized:
 * blocks run along the hidden axis, so each row keeps its own scales. `q` holds the table in
 * its own layout ([rows, width]).
 */
export function quantizeEmbeddingBlocked(g: Graph, e: EmbeddingTable, q: QuantizedWeight): void {
  if (q.bits > 4 || !q.symmetric) throw new Error(`blocked embeddings are symmetric 4-bit (table '${e.table.name}')`);
  if (q.groups * q.blockSize !== e.width) throw new Error(`embedding width ${e.width} of '${e.table.name}' is not a multiple of the block size ${q.blockSize}`);
  const base = e.table.name;
  const data = g.addInitializer(Tensor.fromBytes(`${base}_packed`, DataType.UINT8, [e.rows, e.width / 2], packLevels(q, 4)));
  const scales = g.addInitializer(Tensor.from(`${base}_scales`, DataType.FLOAT, [e.rows, q.groups], q.scales));
  const node = g.addNode('GatherBlockQuantized', [data, e.node.input(1)!, scales], [`${e.node.output(0).name}_dequantized`], {
    name: g.uniqueNodeName(`${e.node.name}_quantized`),
    domain: 'com.microsoft',
    before: e.node,
    attributes: {
      gather_axis: { type: 'int', value: 0 },
      quantize_axis: { type: 'int', value: 1 },
      block_size: { type: 'int', value: q.blockSize },
      bits: { type: 'int', value: 4 },
    },
  });
  e.node.output(0).replaceAllUsesWith(node.output(0));
  g.removeNode(e.node);
}
