import { UserError } from '../errors.js';
import { namePattern } from '../quantize/select.js';

/** How one option of a pass is checked, when the pass is built and when a recipe names it. */
export type OptionSpec = (
  | { type: 'enum'; values: readonly (string | number)[] }
  | { type: 'number'; min?: number; max?: number; integer?: boolean }
  | { type: 'boolean' }
  | { type: 'string' }
  | { type: 'string[]' }
  /** A mapping from layer-name patterns (globs or /regex/) to one of `values`. */
  | { type: 'pattern-map'; values: readonly (string | number)[] }
  /** Library-only values a recipe cannot write (an object, a plan): `want` says what fits. */
  | { type: 'custom'; want: string; test: (v: unknown) => boolean }
) & {
  required?: boolean;
  doc: string;
  /** false: accepted from code only, not in a recipe (a prune plan, a cache folder). */
  recipe?: false;
};

export type OptionSpecs = Record<string, OptionSpec>;

/**
 * Checks a pass's options against its specs, in option names (the CLI maps them to its flags).
 * `where` starts each message: "pass 'prune'" when a pass is built, "recipe.yaml step 2: pass
 * 'prune'" from a recipe. Options set to undefined count as absent.
 */
export function checkOptions(pass: string, specs: OptionSpecs, options: object, where = `pass '${pass}'`): void {
  const given = Object.entries(options).filter(([, v]) => v !== undefined);
  for (const [key] of given) {
    if (!(key in specs)) throw new UserError(`${where}: unknown option '${key}' (valid options: ${Object.keys(specs).join(', ') || 'none'})`);
  }
  const values = new Map(given);
  for (const [key, spec] of Object.entries(specs)) {
    const v = values.get(key);
    if (v === undefined) {
      if (spec.required) throw new UserError(`${where}: option '${key}' is required (${spec.doc})`);
      continue;
    }
    const bad = (want: string): UserError => new UserError(`${where}: option '${key}' must be ${want}, not ${JSON.stringify(v)}`);
    switch (spec.type) {
      case 'enum':
        if (!spec.values.includes(v as string | number)) throw bad(`one of ${spec.values.join(', ')}`);
        break;
      case 'number':
        if (typeof v !== 'number' || !Number.isFinite(v)) throw bad('a number');
        if (spec.integer && !Number.isInteger(v)) throw bad('a whole number');
        if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) throw bad(`a number in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]`);
        break;
      case 'boolean':
        if (typeof v !== 'boolean') throw bad('true or false');
        break;
      case 'string':
        if (typeof v !== 'string') throw bad('a string');
        break;
      case 'string[]':
        if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw bad('a list of strings');
        break;
      case 'custom':
        if (!spec.test(v)) throw bad(spec.want);
        break;
      case 'pattern-map': {
        if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length === 0) throw bad(`a mapping of layer patterns to ${spec.values.join(', ')} (like { 'blocks.3.*': 8 })`);
        for (const [p, x] of Object.entries(v)) {
          if (!spec.values.includes(x as string | number)) throw new UserError(`${where}: option '${key}': pattern '${p}' must map to one of ${spec.values.join(', ')}, not ${JSON.stringify(x)}`);
          try {
            namePattern(p);
          } catch (e) {
            throw new UserError(`${where}: option '${key}': ${(e as Error).message.replace('--exclude pattern', 'pattern')}`);
          }
        }
        break;
      }
    }
  }
}

/** The specs a recipe may use: those not marked library-only. */
export function recipeSpecs(specs: OptionSpecs): OptionSpecs {
  return Object.fromEntries(Object.entries(specs).filter(([, s]) => s.recipe !== false));
}
