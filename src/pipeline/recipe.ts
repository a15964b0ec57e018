import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Pass } from '../passes/pass.js';
import { pipeline, type Pipeline } from './pipeline.js';
import { checkOptions, passEntry, passNames } from './registry.js';
import { parseYaml } from './yaml.js';

/** One step of a recipe: a registered pass and its options, or a nested pipeline. */
export type RecipeStep = { pass: string; [option: string]: unknown } | { pass: 'pipeline'; name?: string; passes: RecipeStep[] };

/**
 * A recipe: the schema the CLI (--recipe FILE) and the API (`fromRecipe`) share.
 * ```json
 * { "name": "w8a8", "passes": [ { "pass": "quantize", "scheme": "w8a8" }, { "pass": "cleanup" } ] }
 * ```
 */
export interface Recipe {
  name?: string;
  description?: string;
  passes: RecipeStep[];
}

const RECIPE_KEYS = ['name', 'description', 'passes'];

/** The recipe `npm start` and `slimformer compress` use when no --recipe is given. */
export const DEFAULT_RECIPE: Recipe = {
  name: 'w8a8',
  description: 'static INT8 weights and activations (integer kernels in onnxruntime), then cleanup',
  passes: [{ pass: 'quantize', scheme: 'w8a8' }, { pass: 'cleanup' }],
};

/** Parses recipe text: JSON when it starts with `{`, otherwise YAML (docs/recipes.md). */
export function parseRecipe(text: string, source = 'recipe'): Recipe {
  let data: unknown;
  const t = text.trim();
  if (t.startsWith('{')) {
    try {
      data = JSON.parse(t);
    } catch (e) {
      throw new UserError(`${source} is not valid JSON: ${(e as Error).message}`);
    }
  } else {
    data = parseYaml(text, source);
  }
  return checkRecipe(data, source);
}

/** Reads and checks a recipe file (.json, .yaml or .yml). */
export function loadRecipe(file: string): Recipe {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read recipe ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') {
    try {
      return checkRecipe(JSON.parse(text), file);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`recipe ${file} is not valid JSON: ${(e as Error).message}`);
    }
  }
  return parseRecipe(text, file);
}

/** Checks untyped data against the recipe schema; every error names the step and key. */
export function checkRecipe(data: unknown, source = 'recipe'): Recipe {
  if (!isObject(data)) throw new UserError(`${source} must be a mapping with a 'passes' list`);
  for (const k of Object.keys(data)) {
    if (!RECIPE_KEYS.includes(k)) throw new UserError(`${source}: unknown key '${k}' (valid keys: ${RECIPE_KEYS.join(', ')})`);
  }
  if (data.name !== undefined && typeof data.name !== 'string') throw new UserError(`${source}: 'name' must be a string`);
  if (data.description !== undefined && typeof data.description !== 'string') throw new UserError(`${source}: 'description' must be a string`);
  const passes = checkSteps(data.passes, source, 'passes');
  return { ...(data.name !== undefined ? { name: data.name as string } : {}), ...(data.description !== undefined ? { description: data.description as string } : {}), passes };
}

function checkSteps(list: unknown, source: string, where: string): RecipeStep[] {
  if (!Array.isArray(list) || list.length === 0) throw new UserError(`${source}: '${where}' must be a non-empty list of steps like { pass: quantize, scheme: w8a8 }`);
  return list.map((step, i) => {
    const at = `${source}: ${where}[${i}]`;
    if (typeof step === 'string') step = { pass: step };
    if (!isObject(step) || typeof step.pass !== 'string') throw new UserError(`${at} must name its pass ('pass: NAME'; valid passes: ${[...passNames(), 'pipeline'].join(', ')})`);
    if (step.pass === 'pipeline') {
      for (const k of Object.keys(step)) if (!['pass', 'name', 'passes'].includes(k)) throw new UserError(`${at}: unknown key '${k}' for a nested pipeline (valid keys: pass, name, passes)`);
      return { pass: 'pipeline', ...(typeof step.name === 'string' ? { name: step.name } : {}), passes: checkSteps(step.passes, source, `${where}[${i}].passes`) };
    }
    if (!passNames().includes(step.pass)) throw new UserError(`${at}: unknown pass '${step.pass}' (valid passes: ${[...passNames(), 'pipeline'].join(', ')})`);
    const { pass, ...options } = step;
    checkOptions(passEntry(pass), options, at);
    return { pass, ...options };
  });
}

/** Builds the pipeline a recipe describes (the same passes the API's factories build). */
export function fromRecipe(recipe: Recipe | string, source?: string): Pipeline {
  const r = typeof recipe === 'string' ? parseRecipe(recipe, source) : checkRecipe(recipe, source);
  return pipeline(r.passes.map(buildStep), r.name ?? 'pipeline');
}

function buildStep(step: RecipeStep): Pass {
  if (step.pass === 'pipeline' && Array.isArray((step as { passes?: unknown }).passes)) {
    const s = step as { name?: string; passes: RecipeStep[] };
    return pipeline(s.passes.map(buildStep), s.name ?? 'pipeline');
  }
  const { pass, ...options } = step;
  return passEntry(pass).create(options);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
