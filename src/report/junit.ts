import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';

/** One check, as CI systems (Jenkins, GitLab, GitHub test reporters) show it. */
export interface JunitCase {
  name: string;
  classname: string;
  /** Seconds. */
  time?: number;
  /** Present when the check failed: `message` is the one-line reason, `text` the details. */
  failure?: { message: string; type?: string; text?: string };
  /** Present when the check was not run; the reason. */
  skipped?: string;
  systemOut?: string;
}

export interface JunitSuite {
  name: string;
  /** Seconds. */
  time?: number;
  timestamp?: Date;
  properties?: Record<string, string>;
  cases: JunitCase[];
}

/** JUnit XML (the de-facto schema Jenkins and GitLab read): one <testsuites> root. */
export function junitXml(suites: JunitSuite | readonly JunitSuite[], name = 'slimformer'): string {
  const list = Array.isArray(suites) ? (suites as readonly JunitSuite[]) : [suites as JunitSuite];
  const count = (f: (c: JunitCase) => boolean, s: readonly JunitSuite[]): number => s.reduce((a, x) => a + x.cases.filter(f).length, 0);
  const totals = (s: readonly JunitSuite[]): string =>
    `tests="${count(() => true, s)}" failures="${count((c) => c.failure !== undefined, s)}" errors="0" skipped="${count((c) => c.failure === undefined && c.skipped !== undefined, s)}"`;
  const time = (t: number | undefined): string => (t === undefined ? '' : ` time="${t.toFixed(3)}"`);
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const totalTime = list.every((s) => s.time !== undefined) ? list.reduce((a, s) => a + s.time!, 0) : undefined;
  lines.push(`<testsuites name="${attr(name)}" ${totals(list)}${time(totalTime)}>`);
  for (const suite of list) {
    const stamp = suite.timestamp ? ` timestamp="${suite.timestamp.toISOString().replace(/\.\d+Z$/, '')}"` : '';
    lines.push(`  <testsuite name="${attr(suite.name)}" ${totals([suite])}${time(suite.time)}${stamp}>`);
    const props = Object.entries(suite.properties ?? {});
    if (props.length > 0) {
      lines.push('    <properties>');
      for (const [k, v] of props) lines.push(`      <property name="${attr(k)}" value="${attr(v)}"/>`);
      lines.push('    </properties>');
    }
    for (const c of suite.cases) {
      const open = `    <testcase name="${attr(c.name)}" classname="${attr(c.classname)}"${time(c.time)}`;
      const body: string[] = [];
      if (c.failure) {
        const type = c.failure.type ? ` type="${attr(c.failure.type)}"` : '';
        body.push(`      <failure message="${attr(c.failure.message)}"${type}>${text(c.failure.text ?? c.failure.message)}</failure>`);
      } else if (c.skipped !== undefined) {
        body.push(`      <skipped message="${attr(c.skipped)}"/>`);
      }
      if (c.systemOut) body.push(`      <system-out>${text(c.systemOut)}</system-out>`);
      if (body.length === 0) lines.push(`${open}/>`);
      else lines.push(`${open}>`, ...body, '    </testcase>');
    }
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>');
  return lines.join('\n') + '\n';
}

// Characters XML 1.0 does not allow at all (C0 controls but tab, newline and carriage return;
// lone surrogates; U+FFFE and U+FFFF): replaced by U+FFFD.
const NOT_XML = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Escapes text content: & < > (and so ]]>), and \r, which parsers would otherwise turn into \n. */
export function escapeXmlText(s: string): string {
  return s.replace(NOT_XML, '\uFFFD').replace(/[&<>\r]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '\r': '&#13;' })[ch]!);
}

/** Escapes an attribute value (double-quoted); tabs and line breaks survive as character references. */
export function escapeXmlAttribute(s: string): string {
  return escapeXmlText(s).replace(/["'\t\n]/g, (ch) => ({ '"': '&quot;', "'": '&apos;', '\t': '&#9;', '\n': '&#10;' })[ch]!);
}

const text = escapeXmlText;
const attr = escapeXmlAttribute;

/**
 * Writes a file atomically: to a temporary name in the same folder, then renamed over `file`,
 * so a reader never sees half a report and a failure leaves nothing behind.
 */
export function writeFileAtomic(file: string, content: string, what = 'report'): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  try {
    fs.writeFileSync(tmp, content);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    const why = e instanceof Error ? e.message : String(e);
    throw new UserError(`cannot write the ${what} ${file}: ${why}`, { cause: e });
  }
}

/** Renders suites as JUnit XML and writes them atomically. */
export function writeJunit(file: string, suites: JunitSuite | readonly JunitSuite[], name?: string): void {
  writeFileAtomic(file, junitXml(suites, name), 'JUnit report');
}
