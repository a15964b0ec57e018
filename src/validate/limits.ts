import { UserError } from '../errors.js';
import { GATE_METRICS, GATE_METRIC_INFO, type GateMetricName, isGateMetricName } from './gate-metrics.js';

/**
 * What a gate allows for one metric.
 *  max-drop: the largest degradation in the metric's own direction (a fall for top1, a rise for
 *            nll), from the baseline's value; `relative` makes `value` a fraction of |baseline|
 *            (0.005 is 0.5%). For metrics against the baseline the baseline's value is the
 *            ideal (1 for agreement and cosine), so a drop is measured from there; sqnr's ideal
 *            is +Infinity, from which no drop is finite: it takes a floor (min) instead.
 *  min:      a floor, for higher-is-better metrics.
 *  max:      a ceiling, for lower-is-better metrics.
 */
export type Limit = { kind: 'max-drop'; value: number; relative: boolean } | { kind: 'min'; value: number } | { kind: 'max'; value: number };

/** Limits for several metrics: one for all, or one per metric. */
export type Limits = Limit | Partial<Record<GateMetricName, Limit>>;

/** The CLI's flag values, each repeatable: `VALUE` or `METRIC=VALUE[,METRIC=VALUE...]`. */
export interface LimitFlags {
  maxDrop?: readonly string[];
  min?: readonly string[];
  max?: readonly string[];
}

export interface ParsedLimits {
  /** The limit given without a metric name: it applies to every metric without its own. */
  all?: Limit;
  /** Limits named per metric, in the order given. */
  perMetric: Partial<Record<GateMetricName, Limit>>;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;
const FLAG: Record<Limit['kind'], string> = { 'max-drop': '--max-drop', min: '--min', max: '--max' };

/**
 * Parses --max-drop, --min and --max. Items are comma-separated; each is `VALUE` (for every
 * metric without its own limit) or `METRIC=VALUE`. --max-drop values are absolute (`0.005`) or
 * relative to the baseline (`0.5%`); --min and --max take plain numbers.
 */
export function parseLimits(flags: LimitFlags): ParsedLimits {
  const out: ParsedLimits = { perMetric: {} };
  const from: Partial<Record<GateMetricName | '', string>> = {};
  const kinds: [Limit['kind'], readonly string[] | undefined][] = [
    ['max-drop', flags.maxDrop],
    ['min', flags.min],
    ['max', flags.max],
  ];
  for (const [kind, values] of kinds) {
    for (const text of values ?? []) {
      const items = text.split(',').map((s) => s.trim());
      if (items.some((s) => s === '')) throw syntaxError(kind, text);
      for (const item of items) {
        const eq = item.indexOf('=');
        const name = eq >= 0 ? item.slice(0, eq).trim() : '';
        const limit = parseLimitValue(kind, eq >= 0 ? item.slice(eq + 1).trim() : item, text);
        if (eq >= 0 && !isGateMetricName(name)) {
          throw new UserError(`unknown metric '${name}' in ${FLAG[kind]} ${text} (choose from ${GATE_METRICS.join(', ')})`);
        }
        const earlier = from[name as GateMetricName | ''];
        if (earlier !== undefined) {
          throw new UserError(
            name === ''
              ? `both ${earlier} and ${FLAG[kind]} give a limit for all metrics; name the metric for one of them (e.g. --min sqnr=30)`
              : `${name} has two limits (${earlier} and ${FLAG[kind]}); give one per metric`,
          );
        }
        from[name as GateMetricName | ''] = FLAG[kind];
        if (name === '') out.all = limit;
        else out.perMetric[name as GateMetricName] = limit;
      }
    }
  }
  return out;
}

function parseLimitValue(kind: Limit['kind'], value: string, text: string): Limit {
  if (kind === 'max-drop') {
    const relative = value.endsWith('%');
    const number = relative ? value.slice(0, -1).trim() : value;
    if (!NUMBER.test(number)) throw syntaxError(kind, text);
    const v = Number(number);
    if (v < 0) throw new UserError(`--max-drop ${text}: a drop cannot be negative (use --min or --max for a bound that must be beaten)`);
    return { kind, value: relative ? v / 100 : v, relative };
  }
  if (value.endsWith('%')) throw new UserError(`${FLAG[kind]} ${text}: a floor or ceiling is a plain value of the metric, not a percentage`);
  if (!NUMBER.test(value)) throw syntaxError(kind, text);
  return { kind, value: Number(value) };
}

function syntaxError(kind: Limit['kind'], text: string): UserError {
  const form = kind === 'max-drop' ? 'VALUE or VALUE%' : 'VALUE';
  return new UserError(`${FLAG[kind]} takes ${form}, or METRIC=${form} items separated by commas, not '${text}'`);
}

/**
 * The metrics to check: those listed (default: the ones the limits name, else top1), plus any
 * that a limit names, in that order, each once.
 */
export function gateMetricList(listed: readonly GateMetricName[] | undefined, parsed: ParsedLimits): GateMetricName[] {
  const named = Object.keys(parsed.perMetric) as GateMetricName[];
  const base = listed && listed.length > 0 ? listed : named.length > 0 ? [] : ['top1' as const];
  return [...new Set([...base, ...named])];
}

/** One limit per metric from parsed flags: a named limit wins over the one for all. */
export function assignLimits(metrics: readonly GateMetricName[], parsed: ParsedLimits): Partial<Record<GateMetricName, Limit>> {
  const out: Partial<Record<GateMetricName, Limit>> = {};
  for (const m of metrics) {
    const limit = parsed.perMetric[m] ?? parsed.all;
    if (limit) out[m] = limit;
  }
  return out;
}

/** Spreads `limits` over the metrics and checks that each limit makes sense for its metric. */
export function resolveLimits(metrics: readonly GateMetricName[], limits: Limits): Partial<Record<GateMetricName, Limit>> {
  const out: Partial<Record<GateMetricName, Limit>> = {};
  if (isLimit(limits)) {
    for (const m of metrics) out[m] = limits;
  } else {
    for (const [m, limit] of Object.entries(limits) as [string, Limit | undefined][]) {
      if (!limit) continue;
      if (!isGateMetricName(m)) throw new UserError(`unknown metric '${m}' in the limits (choose from ${GATE_METRICS.join(', ')})`);
      if (!metrics.includes(m)) throw new UserError(`there is a limit for ${m} but ${m} is not among the metrics checked (${metrics.join(', ')})`);
      out[m] = limit;
    }
  }
  for (const [m, limit] of Object.entries(out) as [GateMetricName, Limit][]) checkLimitFits(m, limit);
  if (Object.keys(out).length === 0) throw new UserError('the gate has no limit to check: give --max-drop, --min or --max');
  return out;
}

function isLimit(x: Limits): x is Limit {
  return typeof (x as { kind?: unknown }).kind === 'string';
}

/** Throws a UserError when a limit cannot apply to the metric (a floor on nll, a drop from sqnr's +inf). */
export function checkLimitFits(metric: GateMetricName, limit: Limit): void {
  const info = GATE_METRIC_INFO[metric];
  if (!Number.isFinite(limit.value)) throw new UserError(`the limit for ${metric} must be a finite number, not ${limit.value}`);
  if (limit.kind === 'max-drop') {
    if (limit.value < 0) throw new UserError(`the largest drop allowed for ${metric} cannot be negative (${limit.value})`);
    if (info.ideal === Infinity) {
      throw new UserError(`${metric} compares the candidate with the baseline, whose own ${metric} is infinite, so no drop from it is finite: give a floor instead (e.g. --min ${metric}=30, in ${info.unit ?? 'its unit'})`);
    }
    if (info.ideal === 0 && limit.relative) {
      throw new UserError(`${metric} compares the candidate with the baseline, whose own ${metric} is 0, so a percentage of it is 0: give a ceiling in ${info.unit ?? 'its unit'} instead (e.g. --max ${metric}=0.01)`);
    }
  } else if (limit.kind === 'min' && info.direction === 'lower') {
    throw new UserError(`${metric} is better when lower, so it takes a ceiling (--max ${metric}=VALUE), not a floor (--min)`);
  } else if (limit.kind === 'max' && info.direction === 'higher') {
    throw new UserError(`${metric} is better when higher, so it takes a floor (--min ${metric}=VALUE), not a ceiling (--max)`);
  }
}

export interface LimitCheck {
  /** The value the candidate must reach (higher-is-better) or stay under (lower-is-better). */
  threshold: number;
  pass: boolean;
  message: string;
}

/** Ties pass: float sums that land within this relative distance of the threshold count as equal. */
const TIE = 1e-12;

/**
 * Checks a candidate's value against a limit. `baseline` is the baseline model's value (the
 * ideal for metrics against the baseline). NaN never passes.
 */
export function checkLimit(metric: GateMetricName, baseline: number, candidate: number, limit: Limit): LimitCheck {
  const higher = GATE_METRIC_INFO[metric].direction === 'higher';
  let threshold: number;
  if (limit.kind === 'max-drop') {
    const allowed = limit.relative ? limit.value * Math.abs(baseline) : limit.value;
    threshold = higher ? baseline - allowed : baseline + allowed;
  } else {
    threshold = limit.value;
  }
  const slack = TIE * Math.max(1, Math.abs(threshold));
  const pass = !Number.isNaN(candidate) && !Number.isNaN(threshold) && (higher ? candidate >= threshold - slack : candidate <= threshold + slack);
  const f = formatNumber;
  const bound = `${higher ? '≥' : '≤'} ${f(threshold)}`;
  let message: string;
  if (Number.isNaN(candidate) || Number.isNaN(baseline)) {
    message = `${metric} is NaN for the ${Number.isNaN(candidate) ? 'candidate' : 'baseline'} (an output holds NaN or Inf)`;
  } else if (pass) {
    message = `${metric} ${f(candidate)} ${bound} (${describeLimit(limit)})`;
  } else if (limit.kind === 'max-drop') {
    const change = Math.abs(candidate - baseline);
    message = `${metric} ${higher ? 'fell' : 'rose'} by ${f(change)} from ${f(baseline)} to ${f(candidate)}, more than the allowed ${describeLimit(limit)} (${metric} must be ${bound})`;
  } else {
    message = `${metric} ${f(candidate)} is ${higher ? 'below the floor' : 'above the ceiling'} ${f(limit.value)}`;
  }
  return { threshold, pass, message };
}

/** 'max-drop 0.005', 'max-drop 0.5%', 'min 30', 'max 1.2'. */
export function describeLimit(limit: Limit): string {
  if (limit.kind === 'max-drop') return `max-drop ${limit.relative ? `${Number((limit.value * 100).toPrecision(12))}%` : String(limit.value)}`;
  return `${limit.kind} ${String(limit.value)}`;
}

/** Six significant digits, no trailing zeros; inf, -inf and NaN spelled out. */
export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  return String(Number(v.toPrecision(6)));
}
