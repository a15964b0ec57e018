import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { DEFAULT_RECIPE, checkRecipe, fromRecipe, parseRecipe } from '../../src/pipeline/recipe.js';
import { passNames } from '../../src/pipeline/registry.js';
import { parseYamlSubset } from '../../src/pipeline/yaml.js';

const yaml = `# a recipe
name: mixed
passes:
  - pass: quantize
    scheme: w8a8      # static int8
    exclude: ["classifier", 'blocks.0.*']
    perChannel: true
    verifySamples: 8
  - pass: pipeline
    name: tidy
    passes:
      - pass: cleanup
        identities: false
`;

describe('recipes', () => {
  it('registers cleanup, quantize and prune', () => {
    expect(passNames()).toEqual(expect.arrayContaining(['cleanup', 'quantize', 'prune']));
  });

  it('reads the YAML subset and JSON into the same recipe', () => {
    const fromYaml = parseRecipe(yaml, 'r.yaml');
    const json = JSON.stringify({ name: 'mixed', passes: [{ pass: 'quantize', scheme: 'w8a8', exclude: ['classifier', 'blocks.0.*'], perChannel: true, verifySamples: 8 }, { pass: 'pipeline', name: 'tidy', passes: [{ pass: 'cleanup', identities: false }] }] });
    expect(fromYaml).toEqual(parseRecipe(json, 'r.json'));
    const p = fromRecipe(fromYaml);
    expect(p.name).toBe('mixed');
    expect(p.passes.map((x) => x.name)).toEqual(['quantize', 'tidy']);
  });

  it('builds the default recipe', () => {
    expect(fromRecipe(DEFAULT_RECIPE).passes.map((x) => x.name)).toEqual(['quantize', 'cleanup']);
  });

  it('names an unknown pass and lists the valid ones', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'quantise', scheme: 'w8a8' }] }, 'r.json')).toThrow(/unknown pass 'quantise' \(valid passes: cleanup, flexround, gptq, prune, quantize, pipeline\)/);
  });

  it('names an unknown option and lists the valid ones', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'quantize', scheme: 'w8a8', bits: 4 }] }, 'r.json')).toThrow(/passes\[0\]: unknown option 'bits' for pass 'quantize' \(valid options: scheme, method/);
  });

  it('names an unknown top-level key', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'cleanup' }], step: 1 }, 'r.json')).toThrow(/unknown key 'step' \(valid keys: name, description, passes\)/);
  });

  it('checks option values and required options', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'quantize', scheme: 'w5' }] })).toThrow(/option 'scheme' of pass 'quantize' must be one of w8a8/);
    expect(() => checkRecipe({ passes: [{ pass: 'quantize' }] })).toThrow(/needs option 'scheme'/);
    expect(() => checkRecipe({ passes: [{ pass: 'quantize', scheme: 'w8a8', alpha: 2 }] })).toThrow(/must be a number in \[0, 1\]/);
    expect(() => checkRecipe({ passes: [] })).toThrow(UserError);
  });

  it('rejects YAML outside the subset with the line number', () => {
    expect(() => parseYamlSubset('passes:\n  - &a pass: cleanup\n', 'r.yaml')).toThrow(/r\.yaml line 2/);
    expect(() => parseYamlSubset('a: 1\n\tb: 2\n', 'r.yaml')).toThrow(/line 2: tabs/);
    expect(() => parseYamlSubset('a: {b: 1}\n', 'r.yaml')).toThrow(/flow mappings/);
    expect(() => parseYamlSubset('a: 1\na: 2\n', 'r.yaml')).toThrow(/duplicate key 'a'/);
    expect(parseYamlSubset('a: "x # y"\nb: [1, 2.5, true, null, s]\nc:\n  - 1\n  - two\n')).toEqual({ a: 'x # y', b: [1, 2.5, true, null, 's'], c: [1, 'two'] });
  });
});
