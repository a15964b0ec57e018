import { UserError } from '../errors.js';

/**
 * A strict parser for the YAML subset recipes use (documented in docs/recipes.md):
 *  - block mappings `key: value` and block sequences `- item`, nested by spaces (no tabs);
 *  - a sequence item may start a mapping on its own line: `- pass: quantize`;
 *  - flow sequences of scalars `[a, "b", 3]`;
 *  - scalars: numbers, true/false, null, plain or quoted ('..' or "..") strings;
 *  - `#` comments and blank lines.
 * Anchors, aliases, tags, multi-line strings, flow mappings and multiple documents are
 * errors naming the line, not silently misread.
 */
export function parseYamlSubset(text: string, source = 'recipe'): unknown {
  interface Line { indent: number; text: string; no: number }
  const lines: Line[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const no = i + 1;
    if (/^\s*\t/.test(raw)) throw err(no, 'tabs are not allowed for indentation; use spaces');
    const t = stripComment(raw, no).replace(/\s+$/, '');
    if (t.trim() === '' || t.trim() === '---') return;
    if (/^\s*(\.\.\.|%)/.test(t)) throw err(no, 'YAML directives and document markers are not supported');
    lines.push({ indent: t.length - t.trimStart().length, text: t.trim(), no });
  });
  function err(no: number, msg: string): UserError {
    return new UserError(`${source} line ${no}: ${msg}`);
  }
  let pos = 0;

  function parseBlock(indent: number): unknown {
    const first = lines[pos]!;
    if (first.text.startsWith('- ') || first.text === '-') return parseSeq(first.indent);
    return parseMap(first.indent);
  }
  function parseSeq(indent: number): unknown[] {
    const out: unknown[] = [];
    while (pos < lines.length && lines[pos]!.indent === indent && (lines[pos]!.text.startsWith('- ') || lines[pos]!.text === '-')) {
      const line = lines[pos]!;
      const rest = line.text.slice(1).trimStart();
      if (rest === '') {
        pos++;
        if (pos >= lines.length || lines[pos]!.indent <= indent) throw err(line.no, 'empty sequence item');
        out.push(parseBlock(lines[pos]!.indent));
      } else if (isKeyLine(rest)) {
        // "- key: value" starts a mapping whose keys sit at the column after "- "
        const col = indent + (line.text.length - rest.length);
        lines[pos] = { indent: col, text: rest, no: line.no };
        out.push(parseMap(col));
      } else {
        out.push(scalar(rest, line.no));
        pos++;
      }
    }
    if (pos < lines.length && lines[pos]!.indent > indent) throw err(lines[pos]!.no, 'unexpected indentation');
    return out;
  }
  function parseMap(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    while (pos < lines.length && lines[pos]!.indent === indent) {
      const line = lines[pos]!;
      if (line.text.startsWith('- ')) throw err(line.no, 'a sequence item where a "key: value" was expected');
      const m = /^("[^"]*"|'[^']*'|[^:'"\s][^:]*?)\s*:(\s+(.*))?$/.exec(line.text);
      if (!m) throw err(line.no, `expected "key: value", found '${line.text}'`);
      if (/^[&*!|>?]/.test(m[1]!)) throw err(line.no, `'${m[1]![0]}' (anchors, aliases, tags, complex keys) is not supported in recipes`);
      const key = unquote(m[1]!);
      if (key in out) throw err(line.no, `duplicate key '${key}'`);
      const value = m[3];
      pos++;
      if (value === undefined || value === '') {
        if (pos < lines.length && lines[pos]!.indent > indent) out[key] = parseBlock(lines[pos]!.indent);
        else if (pos < lines.length && lines[pos]!.indent === indent && lines[pos]!.text.startsWith('- ')) out[key] = parseSeq(indent);
        else out[key] = null;
      } else {
        out[key] = scalar(value, line.no);
      }
    }
    if (pos < lines.length && lines[pos]!.indent > indent) throw err(lines[pos]!.no, 'unexpected indentation');
    return out;
  }
  function scalar(t: string, no: number): unknown {
    if (/^[&*!|>]/.test(t)) throw err(no, `'${t[0]}' (anchors, aliases, tags, block strings) is not supported in recipes`);
    if (t.startsWith('{')) throw err(no, 'flow mappings {...} are not supported; use indented "key: value" lines');
    if (t.startsWith('[')) {
      if (!t.endsWith(']')) throw err(no, 'a flow sequence must close on the same line');
      const inner = t.slice(1, -1).trim();
      if (inner === '') return [];
      return splitFlow(inner, no).map((x) => scalar(x, no));
    }
    if (/^".*"$/.test(t) || /^'.*'$/.test(t)) return unquote(t);
    if (t.startsWith('"') || t.startsWith("'")) throw err(no, `unterminated quoted string ${t}`);
    if (t === 'true') return true;
    if (t === 'false') return false;
    if (t === 'null' || t === '~') return null;
    if (/^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i.test(t)) return Number(t);
    return t;
  }
  function splitFlow(s: string, no: number): string[] {
    const out: string[] = [];
    let cur = '';
    let q: string | null = null;
    for (const ch of s) {
      if (q) {
        cur += ch;
        if (ch === q) q = null;
      } else if (ch === '"' || ch === "'") {
        q = ch;
        cur += ch;
      } else if (ch === ',') {
        out.push(cur.trim());
        cur = '';
      } else if (ch === '[' || ch === '{') {
        throw err(no, 'nested flow collections are not supported');
      } else cur += ch;
    }
    out.push(cur.trim());
    return out;
  }
  if (lines.length === 0) return null;
  if (lines[0]!.indent !== 0) throw err(lines[0]!.no, 'the first line must not be indented');
  const result = parseBlock(0);
  if (pos < lines.length) throw err(lines[pos]!.no, 'unexpected content');
  return result;
}

function isKeyLine(t: string): boolean {
  return /^("[^"]*"|'[^']*'|[^:'"\s\[][^:]*?)\s*:(\s|$)/.test(t);
}

function unquote(s: string): string {
  if (s.startsWith('"') && s.endsWith('"')) return JSON.parse(s) as string;
  if (s.startsWith("'") && s.endsWith("'")) return s.slice(1, -1).replace(/''/g, "'");
  return s;
}

/** Removes a # comment (outside quotes; a # must follow a space or start the line). */
function stripComment(line: string, _no: number): string {
  let q: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (q) {
      if (ch === q) q = null;
    } else if (ch === '"' || ch === "'") {
      // quotes only open a string at the start of a scalar
      const prev = line.slice(0, i).trimEnd();
      if (prev === '' || /[:\-\[,]$/.test(prev)) q = ch;
    } else if (ch === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return line.slice(0, i);
  }
  return line;
}
