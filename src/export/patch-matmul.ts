import { matchLinear } from '../discover/linear.js';
import { constantTensor } from '../discover/constants.js';
import { NoMatch } from '../discover/match.js';
import type { LinearLayer } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import { Tensor } from '../ir/tensor.js';
import type { ConvLayer } from '../quantize/conv.js';
import { transpose } from './linear-weight.js';

/**
 * Rewrites a patch-embedding Conv (kernel == stride, no padding, dilation or groups) as the
 * same function over patches, so weight-only schemes (MatMulNBits has no Conv form), GPTQ and
 * FlexRound treat it as any other linear layer:
 *
 *   x [B, C, H, W] → Reshape [B, C, h, kh, w, kw] → Transpose → [B, h, w, C, kh, kw]
 *     → Reshape [B, h, w, C·kh·kw] → MatMul W[C·kh·kw, O] → Add bias → Transpose → [B, O, h, w]
 *
 * A patch row is laid out (c, i, j) like a row of the Conv weight [O, C, kh, kw], so W is that
 * weight seen as [O, K] and transposed. The result keeps the Conv output's name. Only the order
 * of the float sums differs from the Conv. Returns the new MatMul as a linear layer named like
 * the Conv.
 */
export function convToPatchMatMul(g: Graph, c: ConvLayer): LinearLayer {
  const p = c.patch;
  if (!p) throw new Error(`Conv '${c.node.name}' is not a patch embedding: ${c.notPatch}`);
  const h = p.height / p.kh;
  const w = p.width / p.kw;
  const at = { before: c.node };
  const base = c.name;
  const name = (s: string): string => g.uniqueNodeName(`/${base.replace(/\./g, '/')}/${s}`);
  const ints = (n: string, v: number[]) => g.addInitializer(Tensor.from(`${base}.${n}`, DataType.INT64, [v.length], v));
  const perm = (v: number[]) => ({ perm: { type: 'ints' as const, value: v } });
  const split = g.addNode('Reshape', [c.node.input(0)!, ints('patch_grid_shape', [0, p.channels, h, p.kh, w, p.kw])], [`${base}.patch_grid`], { name: name('Reshape'), ...at });
  const order = g.addNode('Transpose', [split.output(0)], [`${base}.patch_grid_hw`], { name: name('Transpose'), attributes: perm([0, 2, 4, 1, 3, 5]), ...at });
  const rows = g.addNode('Reshape', [order.output(0), ints('patches_shape', [0, h, w, c.k])], [`${base}.patches`], { name: name('Reshape_1'), ...at });
  const weight = constantTensor(c.weight)!.toFloat32();
  const wv = g.addInitializer(Tensor.from(`${base}.weight`, DataType.FLOAT, [c.k, c.outChannels], transpose(weight, c.outChannels, c.k)));
  const mm = g.addNode('MatMul', [rows.output(0), wv], [`${base}.patch_matmul`], { name: name('MatMul'), ...at });
  let y = mm.output(0);
  if (c.bias) y = g.addNode('Add', [y, c.bias], [`${base}.patch_matmul_bias`], { name: name('Add'), ...at }).output(0);
  const back = g.addNode('Transpose', [y], [`${base}.patch_output`], { name: name('Transpose_1'), attributes: perm([0, 3, 1, 2]), ...at });
  const old = c.node.output(0);
  const oldName = old.name;
  const isOutput = g.outputs.includes(old);
  old.replaceAllUsesWith(back.output(0));
  g.removeNode(c.node);
  if (!isOutput) g.renameValue(back.output(0), oldName);
  const l = matchLinear(mm);
  if (l instanceof NoMatch) throw new Error(`the MatMul written for Conv '${c.node.name}' is not a linear layer: ${l.reason}`);
  l.name = base;
  return l;
}
