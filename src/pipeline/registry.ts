import { UserError } from '../errors.js';
import { cleanup } from '../passes/cleanup.js';
import type { Pass } from '../passes/pass.js';
import { quantize, type QuantizePassOptions } from '../passes/quantize.js';
import { flexRound, type FlexRoundOptions } from '../passes/flexround.js';
import { gptq, type GptqOptions } from '../passes/gptq.js';
import { smoothQuant, type SmoothQuantPassOptions } from '../passes/smoothquant.js';
import { repQuant, type RepQuantPassOptions } from '../passes/repquant.js';
import type { CleanupOptions } from '../passes/cleanup.js';
import { prune, type PruneOptions } from '../passes/prune.js';
import { CLEANUP_OPTIONS, FLEXROUND_OPTIONS, GPTQ_OPTIONS, PRUNE_OPTIONS, QUANTIZE_OPTIONS, REPQUANT_OPTIONS, SMOOTHQUANT_OPTIONS } from '../passes/option-specs.js';
import { checkOptions as checkSpecs, recipeSpecs, type OptionSpec } from '../passes/options.js';

export type { OptionSpec } from '../passes/options.js';

/** A pass the recipes and the CLI can name: its options and the factory that builds it. */
export interface PassEntry {
  name: string;
  doc: string;
  options: Record<string, OptionSpec>;
  create(options: Record<string, unknown>): Pass;
}

const registry = new Map<string, PassEntry>();

/** Adds a pass to the registry (later registration of the same name replaces the earlier). */
export function registerPass(entry: PassEntry): void {
  registry.set(entry.name, entry);
}

/** The registered pass names, sorted. */
export function passNames(): string[] {
  return [...registry.keys()].sort();
}

export function passEntry(name: string): PassEntry {
  const e = registry.get(name);
  if (!e) throw new UserError(`unknown pass '${name}' (valid passes: ${passNames().join(', ')})`);
  return e;
}

/** Checks untyped options from a recipe against a pass's specs; `where` names the recipe step in messages. */
export function checkOptions(entry: PassEntry, options: Record<string, unknown>, where: string): Record<string, unknown> {
  checkSpecs(entry.name, entry.options, options, `${where}: pass '${entry.name}'`);
  return options;
}

registerPass({
  name: 'cleanup',
  doc: 'removes Identity nodes, dead nodes and unused initializers; sorts the graph',
  options: recipeSpecs(CLEANUP_OPTIONS),
  create: (o) => cleanup(o as CleanupOptions),
});

registerPass({
  name: 'quantize',
  doc: 'quantizes linear layers and embeddings under a scheme, checked against the float model',
  options: recipeSpecs(QUANTIZE_OPTIONS),
  create: (o) => quantize(o as unknown as QuantizePassOptions),
});

registerPass({
  name: 'prune',
  doc: 'structured pruning of MLP neurons, attention heads or attention sublayers',
  options: recipeSpecs(PRUNE_OPTIONS),
  create: (o) => prune(o as unknown as PruneOptions),
});

registerPass({
  name: 'flexround',
  doc: 'learnable rounding by element-wise division, reconstructed block by block (starts from the levels an earlier pass decided; writes them unless a later pass does)',
  options: recipeSpecs(FLEXROUND_OPTIONS),
  create: (o) => flexRound(o as unknown as FlexRoundOptions),
});

registerPass({
  name: 'gptq',
  doc: 'GPTQ: Hessian-aware rounding from calibration inputs (writes its levels unless a later pass does)',
  options: recipeSpecs(GPTQ_OPTIONS),
  create: (o) => gptq(o as unknown as GptqOptions),
});

registerPass({ name: 'smoothquant', doc: 'SmoothQuant: activation outliers moved into the following weights (float model, same function)', options: recipeSpecs(SMOOTHQUANT_OPTIONS), create: (o) => smoothQuant(o as SmoothQuantPassOptions) });

registerPass({ name: 'repquant', doc: "RepQuant: per-channel activation grids folded into the norms, their per-tensor grids left for the quantize pass", options: recipeSpecs(REPQUANT_OPTIONS), create: (o) => repQuant(o as RepQuantPassOptions) });
