import { LineCounter, isCollection, parseDocument, visit } from 'yaml';
import { UserError } from '../errors.js';

/**
 * Reads one YAML 1.2 document (core schema) into plain data with the `yaml` package: anchors
 * and aliases, `<<` merge keys, flow and block collections, quoted and block strings.
 * Duplicate keys, several documents, tabs as indentation, unknown tags, aliases without an
 * anchor and collections used as keys are errors: the first one becomes one sentence naming
 * the source and the line.
 */
export function parseYaml(text: string, source = 'recipe'): unknown {
  const lineCounter = new LineCounter();
  // prettyErrors off: the message stays one line, the position comes from lineCounter
  const doc = parseDocument(text, { uniqueKeys: true, merge: true, prettyErrors: false, lineCounter });
  const at = (offset: number): string => {
    const { line, col } = lineCounter.linePos(offset);
    return `${source} line ${line}, column ${col}`;
  };
  const sentence = (msg: string): string => msg.replace(/\.?\s*$/, '');
  const syntax = doc.errors[0];
  if (syntax) throw new UserError(`${at(syntax.pos[0])}: YAML syntax error: ${sentence(syntax.message)}`);
  // an unresolved tag is only a warning to `yaml`: the value would silently become a string
  const warning = doc.warnings[0];
  if (warning) throw new UserError(`${at(warning.pos[0])}: ${sentence(warning.message)}`);
  // toJS would throw for these without a position, or turn the key into a string with a process warning
  visit(doc, {
    Alias(_, alias) {
      if (!alias.resolve(doc)) throw new UserError(`${at(alias.range?.[0] ?? 0)}: alias *${alias.source} has no anchor &${alias.source} before it`);
    },
    Pair(_, pair) {
      if (isCollection(pair.key)) throw new UserError(`${at(pair.key.range?.[0] ?? 0)}: a list or mapping cannot be a key; keys are names`);
    },
  });
  try {
    return doc.toJS();
  } catch (e) {
    // toJS throws when aliases expand too far (yaml's maxAliasCount guard against alias bombs)
    throw new UserError(`${source}: YAML cannot be read: ${sentence((e as Error).message)}`);
  }
}
