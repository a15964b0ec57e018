import type { Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import type { Selection } from './select.js';

/**
 * Bits of the layers outside the transformer blocks (embedding tables, patch embedding, pooler,
 * classifier and LM heads) when the scheme's weight bits are below 8. Chosen on the zoo and the
 * bundled models (docs/flexround.md, "Defaults chosen on the zoo"): with the tables at 3 bits by rounding they dominate
 * the error of every method on the language models; the peers leave them alone or at 8 bits
 * (llm-compressor ignores lm_head, onnxruntime's 4-bit quantizer leaves Gather).
 */
export const OUTER_BITS = 8;

/**
 * The bits `outerBits` gives the layers outside the blocks (those `layerBits` does not set), and
 * a line for the report. Nothing when the scheme's bits are 8 or more, when outerBits is
 * 'scheme', or when discovery found no block (then every linear would be "outside").
 */
export function outerLayers(structure: Structure, sel: Selection, bits: number, outerBits: number | 'scheme', set: ReadonlyMap<string, number>): { bits: Map<string, number>; note: string | null } {
  const out = new Map<string, number>();
  checkOuterBits(outerBits);
  if (outerBits === 'scheme' || bits >= outerBits || structure.blocks.length === 0) return { bits: out, note: null };
  const inBlocks = new Set(
    structure.blocks.flatMap(({ attention: a, mlp: m }) => [...(a ? [a.q, a.k, a.v, a.o] : []), ...(m ? [m.fc1, ...(m.gate ? [m.gate] : []), m.fc2] : [])].map((l) => l.name)),
  );
  for (const l of sel.linears) if (!inBlocks.has(l.name) && !set.has(l.name)) out.set(l.name, outerBits);
  for (const e of sel.embeddings) if (!set.has(e.table.name)) out.set(e.table.name, outerBits);
  if (out.size === 0) return { bits: out, note: null };
  return { bits: out, note: `${out.size} layer(s) outside the transformer blocks (embedding tables, heads) kept at ${outerBits} bits: ${[...out.keys()].slice(0, 6).join(', ')}${out.size > 6 ? ', ...' : ''} (outerBits 'scheme' or layerBits changes that)` };
}

/** A user error unless `outerBits` is a whole number from 2 to 8 or 'scheme'. */
export function checkOuterBits(outerBits: unknown): void {
  if (!(outerBits === 'scheme' || (typeof outerBits === 'number' && Number.isInteger(outerBits) && outerBits >= 2 && outerBits <= 8))) {
    throw new UserError(`outerBits must be a whole number from 2 to 8 or 'scheme', not ${JSON.stringify(outerBits)}`);
  }
}
