import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import { escapeXmlAttribute, escapeXmlText, junitXml, writeFileAtomic, writeJunit } from '../../src/report/junit.js';
import { gate } from '../../src/validate/gate.js';
import { gateJunitSuite } from '../../src/validate/gate-report.js';
import { CLASSES, FEATURES, tinyClassifier, tinySamples, writeTestData } from '../helpers/tiny-classifier.js';
import { tempDir } from '../helpers/tmp.js';

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/**
 * A strict little XML parser, independent of the writer: one root, matched tags, quoted
 * attributes without '<' or duplicates, only the five predefined entities and character
 * references, no characters XML 1.0 forbids. Throws on anything else.
 */
function parseXml(src: string): XmlElement {
  // end-of-line handling, as every XML parser does before anything else: a literal \r is lost
  src = src.replace(/\r\n?/g, '\n');
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`not well-formed XML: ${why} at offset ${i}: ${JSON.stringify(src.slice(i, i + 30))}`);
  };
  if (/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u.test(src)) fail('a character XML 1.0 forbids');
  const ws = (): void => {
    while (/\s/.test(src[i] ?? '')) i++;
  };
  const name = (): string => {
    const m = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
    m.lastIndex = i;
    const r = m.exec(src) ?? fail('a name expected');
    i += r[0].length;
    return r[0];
  };
  const decode = (s: string): string =>
    s.replace(/&[^;]*;?/g, (e) => {
      const m = /^&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);$/.exec(e) ?? fail(`bad entity ${e}`);
      const k = m[1]!;
      if (k.startsWith('#x')) return String.fromCodePoint(parseInt(k.slice(2), 16));
      if (k.startsWith('#')) return String.fromCodePoint(Number(k.slice(1)));
      return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[k]!;
    });
  const element = (): XmlElement => {
    if (src[i] !== '<') fail("'<' expected");
    i++;
    const el: XmlElement = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      ws();
      if (src.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      const key = name();
      if (key in el.attrs) fail(`duplicate attribute ${key}`);
      ws();
      if (src[i] !== '=') fail("'=' expected");
      i++;
      ws();
      const q = src[i];
      if (q !== '"' && q !== "'") fail('a quoted value expected');
      const end = src.indexOf(q!, i + 1);
      if (end < 0) fail('unterminated attribute');
      const raw = src.slice(i + 1, end);
      if (raw.includes('<')) fail("'<' in an attribute");
      // attribute value normalization: literal tabs and line breaks become spaces
      el.attrs[key] = decode(raw.replace(/[\t\n\r]/g, ' '));
      i = end + 1;
    }
    for (;;) {
      if (i >= src.length) fail(`unclosed <${el.name}>`);
      if (src.startsWith('</', i)) {
        i += 2;
        if (name() !== el.name) fail(`mismatched end tag for <${el.name}>`);
        ws();
        if (src[i] !== '>') fail("'>' expected");
        i++;
        return el;
      }
      if (src.startsWith('<!--', i)) {
        const end = src.indexOf('-->', i);
        if (end < 0) fail('unterminated comment');
        i = end + 3;
      } else if (src.startsWith('<![CDATA[', i)) {
        const end = src.indexOf(']]>', i);
        if (end < 0) fail('unterminated CDATA');
        el.text += src.slice(i + 9, end);
        i = end + 3;
      } else if (src[i] === '<') {
        el.children.push(element());
      } else {
        const end = src.indexOf('<', i);
        const raw = src.slice(i, end < 0 ? src.length : end);
        if (raw.includes(']]>')) fail("']]>' in text");
        el.text += decode(raw);
        i += raw.length;
      }
    }
  };
  if (src.startsWith('<?xml')) {
    const end = src.indexOf('?>');
    if (end < 0) fail('unterminated declaration');
    i = end + 2;
  }
  ws();
  const root = element();
  ws();
  if (i !== src.length) fail('content after the root element');
  return root;
}

const kids = (e: XmlElement, name: string): XmlElement[] => e.children.filter((c) => c.name === name);

describe('the test XML parser itself', () => {
  it('rejects what is not well-formed', () => {
    for (const bad of ['<a>', '<a></b>', '<a x="1" x="2"/>', '<a>&nbsp;</a>', '<a>x < y</a>', '<a x="<"/>', '<a/><b/>', '<a>\u0001</a>', '<a>]]></a>']) {
      expect(() => parseXml(bad), bad).toThrow(/not well-formed/);
    }
    expect(parseXml('<?xml version="1.0"?>\n<a k=\'&quot;&#10;\'>&lt;&amp;&#x41;<b/></a>\n')).toEqual({ name: 'a', attrs: { k: '"\n' }, children: [{ name: 'b', attrs: {}, children: [], text: '' }], text: '<&A' });
  });
});

describe('junitXml', () => {
  it('escapes text and attributes so any message round-trips', () => {
    const nasty = `top1 < 0.9 & "quoted" 'single' ]]> tab\tnew\nline\r\n ≥ é 𝔘`;
    const xml = junitXml({ name: 'suite & <co>', properties: { 'a"b': nasty }, cases: [{ name: nasty, classname: 'c<d>', failure: { message: nasty, type: 'T"', text: nasty }, systemOut: nasty }] });
    const root = parseXml(xml);
    expect(root.name).toBe('testsuites');
    const suite = kids(root, 'testsuite')[0]!;
    expect(suite.attrs.name).toBe('suite & <co>');
    expect(kids(kids(suite, 'properties')[0]!, 'property')[0]!.attrs).toEqual({ name: 'a"b', value: nasty });
    const tc = kids(suite, 'testcase')[0]!;
    expect(tc.attrs.name).toBe(nasty);
    expect(tc.attrs.classname).toBe('c<d>');
    expect(kids(tc, 'failure')[0]!.attrs.message).toBe(nasty);
    expect(kids(tc, 'failure')[0]!.attrs.type).toBe('T"');
    expect(kids(tc, 'failure')[0]!.text).toBe(nasty);
    expect(kids(tc, 'system-out')[0]!.text).toBe(nasty);
  });

  it('replaces characters XML 1.0 cannot hold (controls, lone surrogates) instead of writing a broken file', () => {
    const s = `a\u0000b\u001bc\ud800d\ufffee`;
    expect(escapeXmlText(s)).toBe('a\ufffdb\ufffdc\ufffdd\ufffde');
    expect(escapeXmlAttribute('x"\ty')).toBe('x&quot;&#9;y');
    const root = parseXml(junitXml({ name: s, cases: [{ name: s, classname: 'c', systemOut: s }] }));
    expect(kids(root, 'testsuite')[0]!.attrs.name).toBe('a\ufffdb\ufffdc\ufffdd\ufffde');
  });

  it('counts tests, failures and skipped cases at both levels', () => {
    const root = parseXml(
      junitXml({
        name: 's',
        time: 1.5,
        cases: [
          { name: 'a', classname: 'c' },
          { name: 'b', classname: 'c', failure: { message: 'm' } },
          { name: 'd', classname: 'c', skipped: 'why' },
        ],
      }),
    );
    for (const el of [root, kids(root, 'testsuite')[0]!]) {
      expect(el.attrs).toMatchObject({ tests: '3', failures: '1', errors: '0', skipped: '1', time: '1.500' });
    }
  });
});

describe('writeJunit and the gate suite', () => {
  const dir = tempDir();
  const { x, labels } = tinySamples(30);
  writeTestData(path.join(dir, 'eval'), x, labels);

  it('one test case per metric; a failure element with the message when its limit fails; skipped without a limit', async () => {
    const candidate = tinyClassifier();
    const w = candidate.graph.value('W')!;
    w.initializer = Tensor.from('W', DataType.FLOAT, [FEATURES, CLASSES], Array.from(w.initializer!.toFloat32(), (v, i) => v + Math.cos(i * 7.3)));
    const r = await gate({
      baseline: tinyClassifier(),
      candidate,
      dataset: openDataset(path.join(dir, 'eval')),
      metrics: ['top1', 'nll', 'agreement', 'sqnr'],
      limits: { top1: { kind: 'max-drop', value: 0.5, relative: false }, nll: { kind: 'max-drop', value: 0.01, relative: true }, sqnr: { kind: 'min', value: 30 } },
    });
    const file = path.join(dir, 'gate.xml');
    writeJunit(file, gateJunitSuite(r, new Date('2026-01-02T03:04:05.678Z')));
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const root = parseXml(fs.readFileSync(file, 'utf8'));
    const suite = kids(root, 'testsuite')[0]!;
    expect(suite.attrs).toMatchObject({ name: 'slimformer gate', tests: '4', failures: '2', skipped: '1', timestamp: '2026-01-02T03:04:05' });
    const props = Object.fromEntries(kids(kids(suite, 'properties')[0]!, 'property').map((p) => [p.attrs.name, p.attrs.value]));
    expect(props).toMatchObject({ samples: '30', positions: '30', output: 'logits' });
    const cases = kids(suite, 'testcase');
    expect(cases.map((c) => c.attrs.name)).toEqual(['top1', 'nll', 'agreement', 'sqnr']);
    expect(cases.map((c) => c.attrs.classname)).toEqual(Array(4).fill('slimformer.gate'));
    expect(kids(cases[0]!, 'failure')).toEqual([]);
    const nll = r.metrics.find((m) => m.metric === 'nll')!;
    expect(kids(cases[1]!, 'failure')[0]!.attrs).toEqual({ message: nll.message, type: 'LimitExceeded' });
    expect(kids(cases[1]!, 'failure')[0]!.text).toContain('limit max-drop 1%');
    expect(kids(cases[2]!, 'skipped')[0]!.attrs.message).toMatch(/no limit/);
    expect(kids(cases[3]!, 'failure')[0]!.attrs.message).toMatch(/^sqnr [-\d.]+ is below the floor 30$/);
  });

  it('writes atomically and fails, leaving nothing, when the folder is missing', () => {
    const file = path.join(dir, 'atomic.xml');
    fs.writeFileSync(file, 'old');
    writeFileAtomic(file, 'new');
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(() => writeFileAtomic(path.join(dir, 'missing', 'r.xml'), 'x')).toThrow(/cannot write the report/);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
