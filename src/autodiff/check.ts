// Gradient checks: the gradient graph's answer against central finite differences of the
// forward graph, in float64 where onnxruntime can run the graphs in double.
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import { Tensor, elementCount } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import { Session } from '../runtime/session.js';
import { buildGradientGraph, type GradientOptions, promoteInitializer } from './gradient.js';
import { inferTypes, isFloat } from './infer.js';
import { toDouble } from './precision.js';
import { declareInputShapes } from './subgraph.js';
import { codeRange } from './rules/quant.js';
import type { RuleTable } from './rules/types.js';
import { Random } from './random.js';

export interface GradientCheckOptions {
  /** Graph inputs or initializers to check the gradient of. */
  wrt: readonly string[];
  /** Values for every graph input (wrt initializers take their stored values). */
  feeds: Record<string, ArrayTensor>;
  /** A scalar loss value; default: sum over the float outputs of output * fixed random weights. */
  loss?: string;
  /** Single coordinates checked per tensor (default 6: half the largest gradients, half random). */
  coordinates?: number;
  /** Random directions checked per tensor (default 2). */
  directions?: number;
  seed?: number;
  rules?: RuleTable;
  /** Multi-node patterns differentiated as one op (as buildGradientGraph's option). */
  patterns?: GradientOptions['patterns'];
  /** 'auto' (default): float64 when onnxruntime can run both graphs in double, else float32. */
  precision?: 'auto' | 'double' | 'float';
  threads?: number;
}

export interface GradientCheckEntry {
  wrt: string;
  kind: 'coordinate' | 'direction';
  /** The element (coordinate) or the direction's number. */
  index: number;
  analytic: number;
  numeric: number;
  /**
   * |analytic - numeric| / max(|analytic|, |numeric|, floor): floor = 1e-3 x the tensor's RMS
   * gradient (x sqrt(size) for directions), itself at least 1e-4 x the RMS over all tensors.
   */
  error: number;
}

export interface GradientCheckResult {
  precision: 'double' | 'float';
  /** Why the check ran in float32 when float64 was wanted ('auto'). */
  fallbackReason?: string;
  maxError: number;
  worst: GradientCheckEntry | undefined;
  entries: GradientCheckEntry[];
}

const CHECK_LOSS = '__check_loss';

/**
 * Checks the gradient graph of `model` against finite differences. Round, QuantizeLinear and
 * DequantizeLinear are compared with their straight-through surrogates: rounding replaced by
 * adding the rounding residual measured at the checked point (held fixed), so the finite
 * difference sees the estimator's derivative.
 */
export async function checkGradients(model: Model, options: GradientCheckOptions): Promise<GradientCheckResult> {
  const rng = new Random(options.seed ?? 7);
  const base = model.clone();
  const feeds: Record<string, ArrayTensor> = { ...options.feeds };
  for (const name of options.wrt) {
    const v = base.graph.value(name);
    if (!v) throw new UserError(`the model has no tensor named '${name}' to check`);
    if (v.initializer && !v.isGraphInput()) {
      feeds[name] = { dtype: v.initializer.dtype, dims: [...v.initializer.dims], data: v.initializer.toTypedArray() };
      promoteInitializer(base.graph, v);
    }
  }
  declareInputShapes(base, Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, t.dims])));
  const loss = options.loss ?? (await addProjectionLoss(base, feeds, rng, options.threads));

  const grad = buildGradientGraph(base, { loss, wrt: options.wrt, rules: options.rules, patterns: options.patterns });
  const surrogate = steSurrogate(base);
  const want = options.precision ?? 'auto';
  let precision: 'double' | 'float' = want === 'float' ? 'float' : 'double';
  let fallbackReason: string | undefined;
  let sessions: { analytic: Session; numeric: Session; residuals: Session | undefined } | undefined;
  if (precision === 'double') {
    try {
      sessions = await openSessions(toDouble(grad.model, 'islands'), toDouble(surrogate.model, 'exact'), surrogate.residualModel && toDouble(surrogate.residualModel, 'exact'), options.threads);
    } catch (e) {
      if (want === 'double') throw e;
      precision = 'float';
      fallbackReason = e instanceof Error ? e.message : String(e);
    }
  }
  sessions ??= await openSessions(grad.model, surrogate.model, surrogate.residualModel, options.threads);
  const cast = (t: ArrayTensor): ArrayTensor => (precision === 'double' && t.dtype === DataType.FLOAT ? { dtype: DataType.DOUBLE, dims: t.dims, data: Float64Array.from(t.data as Float32Array) } : t);
  const at: Record<string, ArrayTensor> = {};
  for (const [k, t] of Object.entries(feeds)) at[k] = cast(t);

  try {
    const analytic = await sessions.analytic.run(at, Object.values(grad.gradients));
    const fdFeeds = { ...at };
    if (sessions.residuals) {
      const r = await sessions.residuals.run(at, surrogate.residuals);
      for (const n of surrogate.residuals) fdFeeds[n] = r[n]!;
    }
    const lossAt = async (f: Record<string, ArrayTensor>): Promise<number> => {
      const out = (await sessions!.numeric.run(f, [loss]))[loss]!;
      let s = 0;
      for (let i = 0; i < out.data.length; i++) s += Number(out.data[i]);
      return s;
    };
    const entries: GradientCheckEntry[] = [];
    const hBase = precision === 'double' ? 1e-5 : 2e-3;
    const grads = new Map(options.wrt.map((name) => [name, toNumbers(analytic[grad.gradients[name]!]!)]));
    // the typical gradient element over every tensor checked: an exact zero (a key bias under
    // softmax, say) is compared with rounding noise against 1e-4 of it
    let total = 0;
    let count = 0;
    for (const g of grads.values()) for (let i = 0; i < g.length; i++, count++) total += g[i]! * g[i]!;
    const globalRms = Math.sqrt(total / Math.max(1, count));
    for (const name of options.wrt) {
      const g = grads.get(name)!;
      const x = fdFeeds[name]!;
      const n = g.length;
      let sq = 0;
      for (let i = 0; i < n; i++) sq += g[i]! * g[i]!;
      const rms = Math.max(Math.sqrt(sq / Math.max(1, n)), 0.1 * globalRms);
      const norm = rms * Math.sqrt(n);
      const perturbed = (delta: (data: Float64Array | Float32Array) => void): Record<string, ArrayTensor> => {
        const data = (x.data as Float64Array | Float32Array).slice();
        delta(data);
        return { ...fdFeeds, [name]: { dtype: x.dtype, dims: x.dims, data } };
      };
      for (const i of pickCoordinates(g, options.coordinates ?? 6, rng)) {
        const xi = Number(x.data[i]);
        const h = hBase * Math.max(1, Math.abs(xi));
        const up = await lossAt(perturbed((d) => (d[i] = xi + h)));
        const down = await lossAt(perturbed((d) => (d[i] = xi - h)));
        const numeric = (up - down) / (2 * h);
        entries.push(entry(name, 'coordinate', i, g[i]!, numeric, 1e-3 * rms));
      }
      for (let k = 0; k < (options.directions ?? 2); k++) {
        const u = new Float64Array(n);
        let dot = 0;
        for (let i = 0; i < n; i++) {
          u[i] = rng.normal();
          dot += u[i]! * g[i]!;
        }
        const h = hBase * Math.max(1, rmsOf(x.data));
        const up = await lossAt(perturbed((d) => addScaled(d, u, h)));
        const down = await lossAt(perturbed((d) => addScaled(d, u, -h)));
        entries.push(entry(name, 'direction', k, dot, (up - down) / (2 * h), 1e-3 * norm));
      }
    }
    let worst: GradientCheckEntry | undefined;
    for (const e of entries) if (!worst || e.error > worst.error) worst = e;
    return { precision, fallbackReason, maxError: worst?.error ?? 0, worst, entries };
  } finally {
    await sessions.analytic.release();
    await sessions.numeric.release();
    await sessions.residuals?.release();
  }
}

async function openSessions(analytic: Model, numeric: Model, residuals: Model | undefined, threads: number | undefined): Promise<{ analytic: Session; numeric: Session; residuals: Session | undefined }> {
  const opts = { threads, optimization: 'basic' as const };
  const a = await Session.create(analytic, opts);
  try {
    const n = await Session.create(numeric, opts);
    try {
      return { analytic: a, numeric: n, residuals: residuals ? await Session.create(residuals, opts) : undefined };
    } catch (e) {
      await n.release();
      throw e;
    }
  } catch (e) {
    await a.release();
    throw e;
  }
}

function entry(wrt: string, kind: 'coordinate' | 'direction', index: number, analytic: number, numeric: number, floor: number): GradientCheckEntry {
  const denom = Math.max(Math.abs(analytic), Math.abs(numeric), floor, 1e-30);
  const diff = Math.abs(analytic - numeric);
  return { wrt, kind, index, analytic, numeric, error: diff === 0 ? 0 : diff / denom };
}

function toNumbers(t: ArrayTensor): Float64Array {
  return Float64Array.from(t.data as ArrayLike<number>);
}

function rmsOf(data: ArrayLike<unknown>): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += Number(data[i]) ** 2;
  return Math.sqrt(s / Math.max(1, data.length));
}

function addScaled(d: Float64Array | Float32Array, u: Float64Array, h: number): void {
  for (let i = 0; i < d.length; i++) d[i] = d[i]! + h * u[i]!;
}

/** Half the coordinates with the largest gradients, half at random (distinct). */
function pickCoordinates(g: Float64Array, count: number, rng: Random): number[] {
  const n = g.length;
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  const picked = new Set<number>();
  const top = Array.from({ length: n }, (_, i) => i)
    .sort((a, b) => Math.abs(g[b]!) - Math.abs(g[a]!))
    .slice(0, Math.ceil(count / 2));
  for (const i of top) picked.add(i);
  while (picked.size < count) picked.add(Math.floor(rng.uniform() * n));
  return [...picked];
}

/** Adds loss = sum_k sum(output_k * R_k) with fixed random R_k, so no output's gradient is trivially zero. */
async function addProjectionLoss(model: Model, feeds: Record<string, ArrayTensor>, rng: Random, threads: number | undefined): Promise<string> {
  const g = model.graph;
  const info = inferTypes(g);
  const outs = g.outputs.filter((o) => {
    const dt = info.get(o)?.dtype;
    return dt === undefined || isFloat(dt);
  });
  const s = await Session.create(model, { threads });
  let shapes: Record<string, ArrayTensor>;
  try {
    shapes = await s.run(feeds, outs.map((o) => o.name));
  } finally {
    await s.release();
  }
  const terms: Value[] = [];
  for (const o of outs) {
    const t = shapes[o.name]!;
    if (t.dtype !== DataType.FLOAT && t.dtype !== DataType.DOUBLE) continue;
    const r = Array.from({ length: elementCount(t.dims) }, () => rng.normal());
    const weights = g.addInitializer(Tensor.from(g.uniqueName(`${o.name}_check_weights`), t.dtype, t.dims, r));
    const prod = g.addNode('Mul', [o, weights], [g.uniqueName(`${o.name}_weighted`)]).output(0);
    terms.push(g.addNode('ReduceSum', [prod], [g.uniqueName(`${o.name}_weighted_sum`)], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0));
  }
  if (terms.length === 0) throw new UserError('the model has no floating-point output to check gradients through');
  const total = terms.length === 1 ? g.addNode('Identity', terms, [CHECK_LOSS]) : g.addNode('Sum', terms, [CHECK_LOSS]);
  g.outputs.push(total.output(0));
  return total.output(0).name;
}

interface Surrogate {
  /** The model with rounding replaced by x + residual, the residuals being graph inputs. */
  model: Model;
  /** The same model computing the residuals (round(u) - u) as outputs; undefined when there is no rounding. */
  residualModel: Model | undefined;
  residuals: string[];
}

/**
 * Straight-through surrogates: Round(u) -> u + r; QuantizeLinear -> Clip(x/s + r + zp, qmin, qmax)
 * (kept in float); DequantizeLinear -> (q - zp) * s. With r the rounding residual at the point
 * checked, the surrogate equals the real graph there and its derivative is the estimator's.
 */
function steSurrogate(model: Model): Surrogate {
  const build = (computeResiduals: boolean): { model: Model; residuals: string[] } => {
    const m = model.clone();
    const g = m.graph;
    const info = inferTypes(g);
    const residuals: string[] = [];
    const dtypeOf = (v: Value): DataType => info.get(v)?.dtype ?? DataType.FLOAT;
    let k = 0;
    const constant = (x: number, dt: DataType): Value => g.addInitializer(Tensor.from(g.uniqueName(`ste_const_${k++}`), dt, [], [x]));
    const add = (op: string, inputs: (Value | undefined)[], attributes = {}, before?: Node): Value =>
      g.addNode(op, inputs, [g.uniqueName(`ste_${op}_${k++}`)], { attributes, before }).output(0);
    const roundSurrogate = (u: Value, before: Node): Value => {
      const name = `__ste_residual_${residuals.length}`;
      residuals.push(name);
      let r: Value;
      if (computeResiduals) {
        r = g.addNode('Sub', [add('Round', [u], {}, before), u], [name], { before }).output(0);
        g.outputs.push(r);
      } else {
        r = g.addInput(name, { kind: 'tensor', dtype: dtypeOf(u), shape: undefined });
      }
      return add('Add', [u, r], {}, before);
    };
    // `like` is a scale or zero point (its layout tells per-tensor or per-axis); the node's
    // output has the rank of the tensor quantized
    const broadcastAlong = (v: Value, like: Value, node: Node): Value => {
      const dims = info.get(like)?.shape;
      if (!dims || dims.length === 0 || (dims.length === 1 && dims[0] === 1)) return v;
      const rank = info.get(node.output(0))?.shape?.length;
      if (rank === undefined) throw new UserError(`gradient check: the rank of '${node.output(0).name}' cannot be told`);
      const axis0 = node.intAttr('axis', 1);
      const axis = axis0 < 0 ? axis0 + rank : axis0;
      const shape = new Array<number>(rank).fill(1);
      shape[axis] = -1;
      return add('Reshape', [v, g.addInitializer(Tensor.from(g.uniqueName(`ste_shape_${k++}`), DataType.INT64, [rank], shape))], {}, node);
    };
    for (const node of [...g.nodes]) {
      if (node.domain !== '' && node.domain !== 'ai.onnx') continue;
      let out: Value | undefined;
      if (node.opType === 'Round') {
        out = roundSurrogate(node.input(0)!, node);
      } else if (node.opType === 'QuantizeLinear') {
        const x = node.input(0)!;
        const s = node.input(1)!;
        const zp = node.input(2);
        const ft = dtypeOf(s);
        const codeType = zp ? dtypeOf(zp) : DataType.UINT8;
        const range = codeRange(codeType);
        if (!range) throw new UserError(`gradient check: QuantizeLinear '${node.name}' to type ${codeType} is not supported`);
        const u = add('Div', [dtypeOf(x) === ft ? x : add('Cast', [x], { to: { type: 'int', value: ft } }, node), broadcastAlong(s, s, node)], {}, node);
        let q = roundSurrogate(u, node);
        if (zp) q = add('Add', [q, broadcastAlong(add('Cast', [zp], { to: { type: 'int', value: ft } }, node), zp, node)], {}, node);
        out = add('Clip', [q, constant(range[0], ft), constant(range[1], ft)], {}, node);
      } else if (node.opType === 'DequantizeLinear') {
        const x = node.input(0)!;
        const s = node.input(1)!;
        const zp = node.input(2);
        const ft = dtypeOf(s);
        let q = add('Cast', [x], { to: { type: 'int', value: ft } }, node);
        if (zp) q = add('Sub', [q, broadcastAlong(add('Cast', [zp], { to: { type: 'int', value: ft } }, node), zp, node)], {}, node);
        out = add('Mul', [q, broadcastAlong(s, s, node)], {}, node);
      }
      if (!out) continue;
      const y = node.output(0);
      for (const use of [...y.uses()]) use.node.setInput(use.index, out);
      if (g.outputs.includes(y)) g.outputs = g.outputs.map((o) => (o === y ? out! : o));
      g.removeNode(node);
    }
    g.toposort();
    return { model: m, residuals };
  };
  const plain = build(false);
  return { model: plain.model, residualModel: plain.residuals.length > 0 ? build(true).model : undefined, residuals: plain.residuals };
}
