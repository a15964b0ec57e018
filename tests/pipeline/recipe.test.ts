import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { DEFAULT_RECIPE, checkRecipe, fromRecipe, parseRecipe } from '../../src/pipeline/recipe.js';
import { passNames } from '../../src/pipeline/registry.js';
import { parseYaml } from '../../src/pipeline/yaml.js';

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

  it('reads YAML and JSON into the same recipe', () => {
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
    expect(() => checkRecipe({ passes: [{ pass: 'quantise', scheme: 'w8a8' }] }, 'r.json')).toThrow(/unknown pass 'quantise' \(valid passes: cleanup, flexround, gptq, prune, quantize, repquant, smoothquant, pipeline\)/);
  });

  it('names an unknown option and lists the valid ones', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'quantize', scheme: 'w8a8', bits: 4 }] }, 'r.json')).toThrow(/passes\[0\]: pass 'quantize': unknown option 'bits' \(valid options: scheme, method/);
  });

  it('names an unknown top-level key', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'cleanup' }], step: 1 }, 'r.json')).toThrow(/unknown key 'step' \(valid keys: name, description, passes\)/);
  });

  it('checks option values and required options', () => {
    expect(() => checkRecipe({ passes: [{ pass: 'quantize', scheme: 'w5' }] })).toThrow(/pass 'quantize': option 'scheme' must be one of w8a8/);
    expect(() => checkRecipe({ passes: [{ pass: 'quantize' }] })).toThrow(/option 'scheme' is required/);
    expect(() => checkRecipe({ passes: [{ pass: 'quantize', scheme: 'w8a8', alpha: 2 }] })).toThrow(/must be a number in \[0, 1\]/);
    expect(() => checkRecipe({ passes: [] })).toThrow(UserError);
  });

  it('reads YAML the old hand-written subset rejected: anchors, aliases, merge keys, flow mappings, block strings', () => {
    const text = `name: shared-exclude
description: >
  static INT8, then 4-bit FlexRound,
  the same layers kept in float
passes:
  - pass: quantize
    scheme: w8a8
    exclude: &keep [classifier, 'blocks.0.*']
  - {pass: pipeline, name: tidy, passes: [{pass: cleanup, identities: false}]}
  - &fr
    pass: flexround
    bits: 4
    exclude: *keep
  - <<: *fr
    bits: 3
`;
    const keep = ['classifier', 'blocks.0.*'];
    expect(parseRecipe(text, 'r.yaml')).toEqual({
      name: 'shared-exclude',
      description: 'static INT8, then 4-bit FlexRound, the same layers kept in float\n',
      passes: [
        { pass: 'quantize', scheme: 'w8a8', exclude: keep },
        { pass: 'pipeline', name: 'tidy', passes: [{ pass: 'cleanup', identities: false }] },
        { pass: 'flexround', bits: 4, exclude: keep },
        { pass: 'flexround', bits: 3, exclude: keep },
      ],
    });
  });

  it('reads every YAML example in docs/recipes.md as a valid recipe', () => {
    const blocks = [...fs.readFileSync('docs/recipes.md', 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBe(5);
    for (const block of blocks) expect(() => fromRecipe(parseRecipe(block, 'docs/recipes.md')), block).not.toThrow();
    // the anchor example: the copied step keeps the shared exclude list and overrides bits
    expect(parseRecipe(blocks[4]!).passes[1]).toEqual({ pass: 'pipeline', passes: [{ pass: 'flexround', bits: 3, exclude: ['classifier', 'blocks.0.*'] }] });
  });

  it('turns a YAML syntax error into one sentence naming the file, line and column', () => {
    const cases: [string, RegExp][] = [
      ['passes:\n  - pass: quantize\n   scheme: w8a8\n', /^r\.yaml line 3, column 1: YAML syntax error: Sequence item without - indicator$/],
      ['a: 1\n\tb: 2\n', /^r\.yaml line 2, column 1: YAML syntax error: Tabs are not allowed as indentation$/],
      ['passes: [cleanup\n', /^r\.yaml line 2, column 1: YAML syntax error: Flow sequence .* end with a \]$/],
      ['name: a\nname: b\n', /^r\.yaml line 2, column 1: YAML syntax error: Map keys must be unique$/],
      ['passes: [cleanup]\n---\nname: b\n', /^r\.yaml line 2, column 1: YAML syntax error: Source contains multiple documents/],
      ['name: "w8a8\npasses: [cleanup]\n', /^r\.yaml line 3, column 1: YAML syntax error: Missing closing "quote$/],
      ['passes:\n  - !quant cleanup\n', /^r\.yaml line 2, column 5: Unresolved tag: !quant$/],
      ['passes:\n  - pass: quantize\n    scheme: *s\n', /^r\.yaml line 3, column 13: alias \*s has no anchor &s before it$/],
      ['passes:\n  - ? [a, b]\n    : 1\n', /^r\.yaml line 2, column 7: a list or mapping cannot be a key; keys are names$/],
    ];
    for (const [text, message] of cases) {
      let error: unknown;
      try {
        parseYaml(text, 'r.yaml');
      } catch (e) {
        error = e;
      }
      expect(error, text).toBeInstanceOf(UserError);
      expect((error as Error).message, text).toMatch(message);
    }
  });

  it('keeps checking the shape after YAML parsing, naming the file and the key', () => {
    expect(() => parseRecipe('passes:\n  - pass: quantize\n    scheme: w8a8\n    bits: 4\n', 'r.yaml')).toThrow(/^r\.yaml: passes\[0\]: pass 'quantize': unknown option 'bits'/);
    expect(() => parseRecipe('name: [a]\npasses: [cleanup]\n', 'r.yaml')).toThrow(/^r\.yaml: 'name' must be a string$/);
    expect(() => parseRecipe('# nothing but a comment\n', 'r.yaml')).toThrow(/^r\.yaml must be a mapping with a 'passes' list$/);
    // YAML 1.2 core schema: yes/no stay strings, so a boolean option given as 'yes' is caught
    expect(() => parseRecipe('passes:\n  - pass: cleanup\n    identities: yes\n', 'r.yaml')).toThrow(/r\.yaml: passes\[0\].*identities/);
  });
});
