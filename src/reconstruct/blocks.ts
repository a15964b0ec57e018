import { UserError } from '../errors.js';
import type { Block, Structure } from '../discover/structure.js';

/** Where a transformer block starts and ends in the residual stream. */
export interface BlockSpan {
  index: number;
  /** The residual stream entering the block. */
  input: string;
  /** The residual stream leaving it (after the last residual add, or its norm in post-LN). */
  output: string;
  block: Block;
}

/**
 * Spans of the blocks discovery found, in order: from the stream entering the attention's
 * residual add to the stream leaving the MLP's (through the norm after it in post-LN blocks).
 */
export function blockSpans(structure: Structure): BlockSpan[] {
  return structure.blocks.map((block) => {
    const first = block.attentionResidual ?? block.mlpResidual;
    const lastResidual = block.mlpResidual ?? block.attentionResidual;
    if (!first || !lastResidual) throw new UserError(`block ${block.index} has no residual add, so its span in the residual stream cannot be told`);
    const lastNorm = block.mlpResidual ? block.mlpNorm : block.attentionNorm;
    const output = block.placement === 'post-ln' && lastNorm ? lastNorm.output : lastResidual.add.output(0);
    return { index: block.index, input: first.skip.name, output: output.name, block };
  });
}
