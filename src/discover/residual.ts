import type { Value } from '../ir/value.js';
import { isConstant } from './constants.js';
import { otherInput, soleConsumer } from './match.js';
import type { Residual } from './structure.js';

const LAYOUT = new Set(['Reshape', 'Transpose', 'Cast', 'Identity']);

/**
 * The Add that adds a sublayer's output (`branch`) to a non-constant stream value, looking
 * through layout ops that bring the output back to the stream's layout (torch
 * MultiheadAttention's view and transpose after its output projection).
 */
export function findResidual(branch: Value): Residual | undefined {
  for (let step = 0; step < 4; step++) {
    for (const add of branch.consumers()) {
      if (add.opType !== 'Add') continue;
      const skip = otherInput(add, branch);
      if (skip && skip !== branch && !isConstant(skip)) return { add, skip, branch };
    }
    const next = soleConsumer(branch);
    if (!next || !LAYOUT.has(next.opType) || next.input(0) !== branch) return undefined;
    branch = next.output(0);
  }
  return undefined;
}
