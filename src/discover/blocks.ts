import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { skipCastsUp, skipLayoutUp } from './match.js';
import type { Attention, Block, Mlp, NormLayer, Placement, Residual } from './structure.js';

interface Sublayer {
  input: Value;
  residual: Residual | undefined;
}

/**
 * Groups attentions and MLPs into blocks in graph order (an attention opens a block, the MLP
 * after it joins it) and tells each sublayer's norm placement: pre-ln when the sublayer reads
 * a norm of the stream that its residual adds to, post-ln when it reads the stream itself and
 * a norm follows its residual add.
 */
export function assembleBlocks(
  attentions: readonly Attention[],
  mlps: readonly Mlp[],
  norms: readonly NormLayer[],
  residualOf: (output: Value) => Residual | undefined,
  position: (node: Node) => number,
): Block[] {
  const byOutput = new Map<Value, NormLayer>();
  const byInput = new Map<Value, NormLayer>();
  for (const n of norms) {
    byOutput.set(n.output, n);
    byInput.set(skipCastsUp(n.input), n);
  }
  const placed = (s: Sublayer): { placement: Placement; norm?: NormLayer } => {
    const pre = byOutput.get(skipCastsUp(s.input)) ?? byOutput.get(skipLayoutUp(s.input));
    if (pre && s.residual && skipLayoutUp(pre.input) === skipLayoutUp(s.residual.skip)) return { placement: 'pre-ln', norm: pre };
    if (s.residual && skipLayoutUp(s.input) === skipLayoutUp(s.residual.skip)) {
      const post = byInput.get(s.residual.add.output(0));
      if (post) return { placement: 'post-ln', norm: post };
    }
    return { placement: 'unknown' };
  };

  const items = [
    ...attentions.map((a) => ({ at: position(a.softmax), attention: a, mlp: undefined })),
    ...mlps.map((m) => ({ at: position((m.gate ?? m.fc1).node), attention: undefined, mlp: m })),
  ].sort((a, b) => a.at - b.at);
  const blocks: Block[] = [];
  for (const item of items) {
    let block = blocks[blocks.length - 1];
    if (item.attention || !block || block.mlp) {
      block = { index: blocks.length, placement: 'unknown' };
      blocks.push(block);
    }
    if (item.attention) {
      block.attention = item.attention;
      block.attentionResidual = residualOf(item.attention.output);
      const p = placed({ input: item.attention.input, residual: block.attentionResidual });
      block.attentionNorm = p.norm;
      block.placement = p.placement;
    } else if (item.mlp) {
      block.mlp = item.mlp;
      block.mlpResidual = residualOf(item.mlp.output);
      const shared = block.attention && skipCastsUp(block.attention.input) === skipCastsUp(item.mlp.input) ? byOutput.get(skipCastsUp(item.mlp.input)) : undefined;
      if (shared) {
        // one norm feeds both sublayers, whose outputs are added to the stream together
        block.attentionNorm = shared;
        block.mlpNorm = shared;
        block.placement = 'parallel';
        continue;
      }
      const p = placed({ input: item.mlp.input, residual: block.mlpResidual });
      block.mlpNorm = p.norm;
      block.placement = block.attention ? (block.placement === p.placement ? p.placement : 'unknown') : p.placement;
    }
  }
  return blocks;
}
