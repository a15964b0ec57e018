import type { Value } from '../ir/value.js';
import { isConstant } from './constants.js';
import { otherInput } from './match.js';
import type { Residual } from './structure.js';

/** The Add that adds a sublayer's output (`branch`) to a non-constant stream value. */
export function findResidual(branch: Value): Residual | undefined {
  for (const add of branch.consumers()) {
    if (add.opType !== 'Add') continue;
    const skip = otherInput(add, branch);
    if (skip && skip !== branch && !isConstant(skip)) return { add, skip, branch };
  }
  return undefined;
}
