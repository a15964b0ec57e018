// Gradient descent on a model's parameters, each step one onnxruntime run: the update (Adam or
// SGD) is part of the gradient graph, so the loss, the gradients and the new parameters and
// optimizer state come out of the same run. Parameters and state stay float32 arrays in JS
// between steps.
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import { Session } from '../runtime/session.js';
import { buildGradientGraph } from './gradient.js';
import { stepLoop, type StepLoop } from './step-loop.js';
import type { RuleTable } from './rules/types.js';

export type Schedule = 'cosine' | 'constant';

export type OptimizerOptions =
  | { kind: 'adam'; lr: number; beta1?: number; beta2?: number; eps?: number; schedule?: Schedule; warmup?: number }
  | { kind: 'sgd'; lr: number; momentum?: number; schedule?: Schedule; warmup?: number };

export interface TrainableParameter {
  /** A graph input of the model (or an initializer, which becomes one). */
  name: string;
  dims: number[];
  init: Float32Array;
}

export interface TrainerOptions {
  /** The model; its `loss` value is what is minimised (the sum of its elements). */
  model: Model;
  loss: string;
  params: readonly TrainableParameter[];
  optimizer: OptimizerOptions;
  /** Steps planned, for the learning-rate schedule. */
  steps: number;
  threads?: number;
  rules?: RuleTable;
}

const LR = '__optimizer_lr';
/** Adam's step size lr * sqrt(1 - beta2^t) / (1 - beta1^t) and epsilon eps * sqrt(1 - beta2^t). */
const STEP = '__optimizer_step_size';
const EPS = '__optimizer_eps';

/** Learning rate at step `t` (0-based) of `steps`: linear warm-up, then constant or cosine to 0. */
export function learningRate(o: OptimizerOptions, t: number, steps: number): number {
  const warmup = o.warmup ?? 0;
  if (t < warmup) return (o.lr * (t + 1)) / warmup;
  if ((o.schedule ?? 'cosine') === 'constant') return o.lr;
  const span = Math.max(1, steps - warmup);
  return 0.5 * o.lr * (1 + Math.cos((Math.PI * Math.min(t - warmup, span)) / span));
}

interface Slot {
  param: string;
  next: string;
  state: { input: string; output: string }[];
}

export class Trainer {
  private iteration = 0;
  /** What each run reads and writes back: the parameters and the optimizer state, by input name. */
  private readonly carried = new Map<string, { dims: number[]; data: Float32Array }>();
  /** The output holding the next value of each carried input. */
  private readonly next = new Map<string, string>();

  private looped: Promise<{ loop: StepLoop; session: Session }> | undefined;
  /**
   * The single-step session, made at the first step(): a trainer that only takes steps through
   * stepEach (the Loop) never makes it, which saves its creation and its memory arena (for a
   * FlexRound linear of 2048x5632, about 0.8 GB kept beside the Loop's own).
   */
  private single: Promise<Session> | undefined;

  private constructor(
    private readonly options: TrainerOptions,
    private readonly trainModel: Model,
    private readonly forward: Session,
    private readonly loss: string,
    slots: Slot[],
  ) {
    for (const p of options.params) {
      const slot = slots.find((x) => x.param === p.name)!;
      this.carried.set(p.name, { dims: p.dims, data: p.init.slice() });
      this.next.set(p.name, slot.next);
      for (const s of slot.state) {
        this.carried.set(s.input, { dims: p.dims, data: new Float32Array(p.init.length) });
        this.next.set(s.input, s.output);
      }
    }
  }

  static async create(options: TrainerOptions): Promise<Trainer> {
    for (const p of options.params) {
      const n = p.dims.reduce((a, b) => a * b, 1);
      if (n !== p.init.length) throw new Error(`parameter '${p.name}': dims [${p.dims.join(',')}] hold ${n} values, init has ${p.init.length}`);
    }
    const grad = buildGradientGraph(options.model, { loss: options.loss, wrt: options.params.map((p) => p.name), rules: options.rules });
    const slots = attachUpdate(grad.model.graph, options.params, grad.gradients, options.optimizer);
    const forwardModel = options.model.clone();
    forwardModel.graph.outputs = [forwardModel.graph.value(options.loss)!];
    for (const p of options.params) {
      const v = forwardModel.graph.value(p.name)!;
      if (v.initializer && !v.isGraphInput()) forwardModel.graph.inputs.push(v); // fed like the others
    }
    const threads = options.threads;
    const forward = await Session.create(forwardModel, { threads });
    return new Trainer(options, grad.model, forward, grad.loss, slots);
  }

  /** Keeps each carried value's next value, which `output(input name)` gives. */
  private takeNext(output: (name: string) => ArrayTensor): void {
    for (const [name, t] of this.carried) t.data = output(name).data as Float32Array;
  }

  /** The per-step scalar inputs of step `t` (0-based). */
  private stepScalars(t: number): Record<string, number> {
    const o = this.options.optimizer;
    const lr = learningRate(o, t, this.options.steps);
    if (o.kind !== 'adam') return { [LR]: lr };
    // PyTorch's Adam: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), folded into two scalars
    const bc1 = 1 - (o.beta1 ?? 0.9) ** (t + 1);
    const bc2 = 1 - (o.beta2 ?? 0.999) ** (t + 1);
    return { [STEP]: (lr * Math.sqrt(bc2)) / bc1, [EPS]: (o.eps ?? 1e-8) * Math.sqrt(bc2) };
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.iteration;
  }

  /** The current parameter values (the arrays are replaced, not written, by later steps). */
  parameters(): Map<string, Float32Array> {
    return new Map(this.options.params.map((p) => [p.name, this.carried.get(p.name)!.data]));
  }

  /** One update on a mini-batch; returns the loss before the update. */
  async step(feeds: Record<string, ArrayTensor>): Promise<number> {
    const all: Record<string, ArrayTensor> = { ...feeds };
    for (const [name, value] of Object.entries(this.stepScalars(this.iteration++))) all[name] = scalar(value);
    for (const [name, t] of this.carried) all[name] = { dtype: DataType.FLOAT, ...t };
    this.single ??= Session.create(this.trainModel, { threads: this.options.threads });
    const out = await (await this.single).run(all, [this.loss, ...this.next.values()]);
    this.takeNext((name) => out[this.next.get(name)!]!);
    return total(out[this.loss]!);
  }

  /**
   * Several updates in one onnxruntime run, one per mini-batch, in order; returns each step's
   * loss before its update. The same updates as calling step() on each batch, but the
   * parameters and optimizer state stay in onnxruntime between the steps (an ONNX Loop over the
   * training graph, `stepLoop`) instead of being copied out to JS after each. Every batch must
   * have the same inputs with the same dims (they are stacked); otherwise it takes single steps.
   */
  async stepEach(batches: readonly Record<string, ArrayTensor>[]): Promise<number[]> {
    if (batches.length === 0) return [];
    if (!sameShapes(batches)) {
      const losses: number[] = [];
      for (const b of batches) losses.push(await this.step(b));
      return losses;
    }
    const o = this.options.optimizer;
    const k = batches.length;
    const t0 = this.iteration;
    this.looped ??= (async () => {
      const loop = stepLoop(this.trainModel, this.loss, this.next);
      return { loop, session: await Session.create(loop.model, { threads: this.options.threads }) };
    })();
    const { loop, session } = await this.looped;
    const feeds: Record<string, ArrayTensor> = { [loop.steps]: { dtype: DataType.INT64, dims: [], data: BigInt64Array.of(BigInt(k)) } };
    // per-step scalars: the learning rate (SGD) or Adam's folded step size and epsilon
    const perStep: Record<string, Float32Array> = o.kind === 'adam' ? { [STEP]: new Float32Array(k), [EPS]: new Float32Array(k) } : { [LR]: new Float32Array(k) };
    for (let i = 0; i < k; i++) for (const [name, value] of Object.entries(this.stepScalars(t0 + i))) perStep[name]![i] = value;
    for (const [name, data] of Object.entries(perStep)) feeds[loop.stacked.get(name)!] = { dtype: DataType.FLOAT, dims: [k], data };
    for (const name of loop.stacked.keys()) {
      if (!(name in perStep) && !(name in batches[0]!)) throw new UserError(`the training graph's input '${name}' is missing from the mini-batch`);
    }
    for (const [name, first] of Object.entries(batches[0]!)) {
      if (!loop.stacked.has(name)) throw new UserError(`'${name}' is not an input of the training graph`);
      const n = first.data.length;
      const data = new (first.data.constructor as new (length: number) => typeof first.data)(k * n);
      batches.forEach((b, i) => data.set(b[name]!.data as never, i * n));
      feeds[loop.stacked.get(name)!] = { dtype: first.dtype, dims: [k, ...first.dims], data };
    }
    for (const [name, t] of this.carried) feeds[loop.start.get(name)!] = { dtype: DataType.FLOAT, ...t };
    const out = await session.run(feeds, [...loop.final.values(), loop.losses]);
    this.iteration += k;
    this.takeNext((name) => out[loop.final.get(name)!]!);
    const losses = out[loop.losses]!;
    const per = losses.data.length / k;
    return Array.from({ length: k }, (_, i) => total({ ...losses, data: losses.data.subarray(i * per, (i + 1) * per) }));
  }

  /** The loss on `feeds` with the current parameters (or the ones given), without a step. */
  async evaluate(feeds: Record<string, ArrayTensor>, params?: ReadonlyMap<string, Float32Array>): Promise<number> {
    const all: Record<string, ArrayTensor> = { ...feeds };
    for (const p of this.options.params) all[p.name] = { dtype: DataType.FLOAT, dims: p.dims, data: params?.get(p.name) ?? this.carried.get(p.name)!.data };
    const out = await this.forward.run(all, [this.options.loss]);
    return total(out[this.options.loss]!);
  }

  async release(): Promise<void> {
    if (this.single) await (await this.single).release();
    await this.forward.release();
    if (this.looped) await (await this.looped).session.release();
  }
}

function scalar(x: number): ArrayTensor {
  return { dtype: DataType.FLOAT, dims: [], data: Float32Array.of(x) };
}

function total(t: ArrayTensor): number {
  let s = 0;
  for (let i = 0; i < t.data.length; i++) s += Number(t.data[i]);
  return s;
}

/** Adds the optimizer's update to a gradient graph: new parameters and state as outputs. */
function attachUpdate(g: Graph, params: readonly TrainableParameter[], gradients: Record<string, string>, o: OptimizerOptions): Slot[] {
  let k = 0;
  const op = (type: string, inputs: Value[], name?: string): Value => g.addNode(type, inputs, [name ?? `optimizer_${type}_${k}`], { name: `optimizer/${type}_${k++}` }).output(0);
  const constant = (x: number): Value => g.addInitializer(Tensor.from(g.uniqueName(`optimizer_const_${k++}`), DataType.FLOAT, [], [x]));
  const scalarInput = (name: string): Value => g.addInput(name, { kind: 'tensor', dtype: DataType.FLOAT, shape: [] });
  const slots: Slot[] = [];
  if (o.kind === 'adam') {
    const b1 = o.beta1 ?? 0.9;
    const b2 = o.beta2 ?? 0.999;
    const stepSize = scalarInput(STEP);
    const eps = scalarInput(EPS);
    const [kb1, k1b1, kb2, k1b2] = [constant(b1), constant(1 - b1), constant(b2), constant(1 - b2)];
    for (const p of params) {
      const grad = gradientOf(g, gradients, p);
      const param = g.value(p.name)!;
      const m = g.addInput(`${p.name}__adam_m`, { kind: 'tensor', dtype: DataType.FLOAT, shape: p.dims });
      const v = g.addInput(`${p.name}__adam_v`, { kind: 'tensor', dtype: DataType.FLOAT, shape: p.dims });
      const m2 = op('Add', [op('Mul', [m, kb1]), op('Mul', [grad, k1b1])], g.uniqueName(`${p.name}__adam_m_next`));
      const v2 = op('Add', [op('Mul', [v, kb2]), op('Mul', [op('Mul', [grad, grad]), k1b2])], g.uniqueName(`${p.name}__adam_v_next`));
      const denom = op('Add', [op('Sqrt', [v2]), eps]);
      const next = op('Sub', [param, op('Mul', [op('Div', [m2, denom]), stepSize])], g.uniqueName(`${p.name}__next`));
      g.outputs.push(next, m2, v2);
      slots.push({ param: p.name, next: next.name, state: [{ input: m.name, output: m2.name }, { input: v.name, output: v2.name }] });
    }
  } else {
    const lr = scalarInput(LR);
    const mu = o.momentum ?? 0;
    for (const p of params) {
      const grad = gradientOf(g, gradients, p);
      const param = g.value(p.name)!;
      if (mu === 0) {
        const next = op('Sub', [param, op('Mul', [grad, lr])], g.uniqueName(`${p.name}__next`));
        g.outputs.push(next);
        slots.push({ param: p.name, next: next.name, state: [] });
        continue;
      }
      const buf = g.addInput(`${p.name}__momentum`, { kind: 'tensor', dtype: DataType.FLOAT, shape: p.dims });
      const buf2 = op('Add', [op('Mul', [buf, constant(mu)]), grad], g.uniqueName(`${p.name}__momentum_next`));
      const next = op('Sub', [param, op('Mul', [buf2, lr])], g.uniqueName(`${p.name}__next`));
      g.outputs.push(next, buf2);
      slots.push({ param: p.name, next: next.name, state: [{ input: buf.name, output: buf2.name }] });
    }
  }
  // the gradients themselves need not leave the session
  g.outputs = g.outputs.filter((v) => !Object.values(gradients).includes(v.name));
  return slots;
}

function gradientOf(g: Graph, gradients: Record<string, string>, p: TrainableParameter): Value {
  const name = gradients[p.name];
  const v = name ? g.value(name) : undefined;
  if (!v) throw new UserError(`no gradient was built for parameter '${p.name}'`);
  if (v.initializer) throw new UserError(`parameter '${p.name}' has a constant gradient`);
  return v;
}

/** Whether every batch has the same inputs, each with the same dims and type. */
function sameShapes(batches: readonly Record<string, ArrayTensor>[]): boolean {
  const first = batches[0]!;
  const names = Object.keys(first);
  return batches.every((b) => Object.keys(b).length === names.length && names.every((n) => b[n] !== undefined && b[n]!.dtype === first[n]!.dtype && b[n]!.dims.length === first[n]!.dims.length && b[n]!.dims.every((d, i) => d === first[n]!.dims[i])));
}
