import type { JunitSuite } from '../report/junit.js';
import type { GateMetricResult, GateResult } from './gate.js';
import type { LmSetup } from './lm-metrics.js';
import { GATE_METRIC_INFO } from './gate-metrics.js';
import { describeLimit, formatNumber } from './limits.js';

/** A JSON number, or the strings "Infinity", "-Infinity", "NaN" (JSON has no such numbers). */
export type JsonNumber = number | 'Infinity' | '-Infinity' | 'NaN';

export interface GateMetricJson {
  direction: 'higher' | 'lower';
  against: 'labels' | 'baseline';
  baseline: JsonNumber;
  candidate: JsonNumber;
  delta: JsonNumber;
  limit: { kind: 'max-drop' | 'min' | 'max'; value: number; relative: boolean; text: string } | null;
  threshold: JsonNumber | null;
  pass: boolean;
  message: string;
}

export interface GateJson {
  pass: boolean;
  /** Metrics whose limit failed, in order. */
  failed: string[];
  baseline: string | null;
  candidate: string | null;
  dataset: string;
  output: string;
  samples: number;
  positions: number;
  seconds: number;
  metrics: Record<string, GateMetricJson>;
  /** The token stream, window and generation settings, when a language-model metric ran. */
  lm?: LmSetup;
}

export function jsonNumber(v: number): JsonNumber {
  if (Number.isFinite(v)) return v;
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

/** The `--json` object: overall pass, sample count, and per metric baseline, candidate, delta, limit, pass. */
export function gateJson(r: GateResult): GateJson {
  const metrics: Record<string, GateMetricJson> = {};
  for (const m of r.metrics) {
    metrics[m.metric] = {
      direction: m.direction,
      against: m.against,
      baseline: jsonNumber(m.baseline),
      candidate: jsonNumber(m.candidate),
      delta: jsonNumber(m.delta),
      limit: m.limit ? { kind: m.limit.kind, value: m.limit.value, relative: m.limit.kind === 'max-drop' && m.limit.relative, text: describeLimit(m.limit) } : null,
      threshold: m.threshold === undefined ? null : jsonNumber(m.threshold),
      pass: m.pass,
      message: m.message,
    };
  }
  return {
    pass: r.pass,
    failed: r.metrics.filter((m) => !m.pass).map((m) => m.metric),
    baseline: r.baseline ?? null,
    candidate: r.candidate ?? null,
    dataset: r.dataset,
    output: r.output,
    samples: r.samples,
    positions: r.positions,
    seconds: r.seconds,
    metrics,
    ...(r.lm ? { lm: r.lm } : {}),
  };
}

function signed(v: number): string {
  const s = formatNumber(v);
  return v > 0 ? `+${s}` : s;
}

function status(m: GateMetricResult): string {
  if (!m.limit) return 'not checked';
  return m.pass ? 'pass' : 'FAIL';
}

/** The table the command prints, with a closing verdict line and the reason of each failure. */
export function gateTable(r: GateResult): string {
  const header = ['metric', 'baseline', 'candidate', 'delta', 'limit', 'bound', 'result'];
  const rows = r.metrics.map((m) => {
    const unit = GATE_METRIC_INFO[m.metric].unit;
    return [
      unit ? `${m.metric} (${unit})` : m.metric,
      m.against === 'baseline' ? `${formatNumber(m.baseline)} (ideal)` : formatNumber(m.baseline),
      formatNumber(m.candidate),
      signed(m.delta),
      m.limit ? describeLimit(m.limit) : '-',
      m.threshold === undefined ? '-' : `${m.direction === 'higher' ? '≥' : '≤'} ${formatNumber(m.threshold)}`,
      status(m),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const who = r.candidate && r.baseline ? `candidate ${r.candidate} vs baseline ${r.baseline}` : 'candidate vs baseline';
  const data = r.samples > 0 ? `${r.dataset} (${r.samples} samples, ${r.positions} positions, output '${r.output}')` : `${r.dataset} (output '${r.output}')`;
  const out = [`gate: ${who} on ${data}`, ...(r.lm ? [describeLm(r.lm)] : []), '', line(header), ...rows.map(line), ''];
  const checked = r.metrics.filter((m) => m.limit);
  const failed = checked.filter((m) => !m.pass);
  if (failed.length === 0) {
    out.push(`PASS: ${checked.length === 1 ? 'the limit holds' : `all ${checked.length} limits hold`}`);
  } else {
    out.push(`FAIL: ${failed.length} of ${checked.length} limits failed`);
    for (const m of failed) out.push(`  ${m.message}`);
  }
  return out.join('\n') + '\n';
}

/** One JUnit test case per metric: a failure element when its limit failed, skipped when it has none. */
export function gateJunitSuite(r: GateResult, timestamp = new Date()): JunitSuite {
  const properties: Record<string, string> = { dataset: r.dataset, output: r.output, samples: String(r.samples), positions: String(r.positions) };
  if (r.baseline) properties.baseline = r.baseline;
  if (r.candidate) properties.candidate = r.candidate;
  return {
    name: 'slimformer gate',
    time: r.seconds,
    timestamp,
    properties,
    cases: r.metrics.map((m) => {
      const details = `baseline ${formatNumber(m.baseline)}${m.against === 'baseline' ? ' (ideal)' : ''}, candidate ${formatNumber(m.candidate)}, delta ${signed(m.delta)}${m.limit ? `, limit ${describeLimit(m.limit)}` : ''}`;
      return {
        name: m.metric,
        classname: 'slimformer.gate',
        failure: m.limit && !m.pass ? { message: m.message, type: 'LimitExceeded', text: `${m.message}\n${details}` } : undefined,
        skipped: m.limit ? undefined : 'no limit set for this metric; reported only',
        systemOut: m.limit && !m.pass ? undefined : `${m.message}\n${details}`,
      };
    }),
  };
}

/** One line saying what the language-model metrics ran on. */
export function describeLm(lm: LmSetup): string {
  const parts = [`token stream of ${lm.streamTokens} tokens from ${lm.source}`];
  if (lm.window !== undefined) parts.push(`window ${lm.window}, stride ${lm.stride}${lm.scoredTokens !== undefined ? ` (${lm.scoredTokens} tokens scored)` : ''}`);
  if (lm.prompts !== undefined) parts.push(`${lm.prompts} prompts of ${lm.promptLength} tokens, ${lm.newTokens} greedy tokens each, top-${lm.topK}`);
  return `language model: ${parts.join('; ')}`;
}
