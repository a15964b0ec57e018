import type { ArrayTensor } from '../ir/array-tensor.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Node } from '../ir/node.js';
import { Value } from '../ir/value.js';
import { freedBuffersReturned } from './allocator.js';
import { collectGarbage } from './collect-garbage.js';
import { Session } from './session.js';
import { SpillStore } from './spill-store.js';

/**
 * Runs a model over many batches one piece of the graph at a time, so that only one piece's
 * weights are in an onnxruntime session at once. The graph is cut, in topological order, into
 * segments of at most `maxSegmentBytes` of weights; every batch goes through segment 1, the
 * values later segments read are kept (for all batches: a transformer's hidden state and mask
 * at a block boundary), then segment 2 is created in place of segment 1, and so on. Each
 * segment yields the wanted tensors it produced, batch by batch.
 *
 * Memory: one segment's session and the boundary activations of all batches, instead of a
 * session over all weights. Time: the same kernels on the same data, plus one session creation
 * per segment. Graphs with subgraphs (If, Loop) are not cut (planSegments returns undefined).
 */
export interface SegmentPlan {
  /** Node lists in topological order. */
  nodes: Node[][];
  /** Per segment: the values it reads that earlier segments or the graph's inputs produce. */
  inputs: string[][];
  /** Per segment: the values it produces that later segments read or that are wanted. */
  outputs: string[][];
  /** Per segment: the wanted values it produces. */
  wanted: string[][];
  /** Weight bytes per segment. */
  bytes: number[];
}

/**
 * Cuts `model` into segments of at most `maxSegmentBytes` of weights, or, with `follow`, as
 * another model was cut: a node of the same name goes to the same segment, a node of its own
 * (a rewritten linear) to the latest segment of the nodes it reads, so two versions of one
 * graph (float and quantized) compute the same tensors in the same segment. Without `follow`,
 * a node of `cutBefore` also starts a segment (sequential GPTQ: a linear's session is created
 * after the layers before it are quantized).
 */
export function planSegments(model: Model, wanted: readonly string[], maxSegmentBytes: number, follow?: SegmentPlan, cutBefore?: ReadonlySet<Node>): SegmentPlan | undefined {
  const g = model.graph;
  if (g.nodes.some((n) => n.subgraphs().length > 0)) return undefined;
  const order = topologicalOrder(g.nodes);
  const nodes: Node[][] = [[]];
  const bytes: number[] = [0];
  const seen = new Set<Value>();
  if (follow) {
    const byName = new Map<string, number>();
    follow.nodes.forEach((list, s) => list.forEach((n) => byName.set(n.name, s)));
    // a node of its own (a rewritten linear, a QuantizeLinear/DequantizeLinear pair) goes with
    // its first reader: placed with its producers, a DequantizeLinear of a weight would land in
    // segment 0 and its output be carried to every later segment, and a Q/DQ pair cut from its
    // MatMul would stop onnxruntime fusing them into the integer kernel the whole model runs
    const segmentOfNode = new Map<Node, number>();
    for (const n of [...order].reverse()) {
      const fixed = byName.get(n.name);
      if (fixed !== undefined) segmentOfNode.set(n, fixed);
      else {
        const readers = n.outputs.flatMap((o) => o.consumers()).filter((c) => segmentOfNode.has(c));
        segmentOfNode.set(n, readers.length ? Math.min(...readers.map((c) => segmentOfNode.get(c)!)) : Infinity);
      }
    }
    // and never before what it reads
    for (const n of order) {
      let s = segmentOfNode.get(n)!;
      let after = 0;
      for (const v of n.inputs) {
        const p = v?.producer();
        if (p && segmentOfNode.has(p)) after = Math.max(after, segmentOfNode.get(p)!);
      }
      s = Number.isFinite(s) ? Math.max(s, after) : after;
      segmentOfNode.set(n, s);
      while (nodes.length <= s) {
        nodes.push([]);
        bytes.push(0);
      }
      nodes[s]!.push(n);
    }
    nodes.forEach((list, s) => {
      const own = new Set<Value>();
      for (const n of list) for (const v of n.inputs) if (v?.initializer) own.add(v);
      bytes[s] = [...own].reduce((a, v) => a + v.initializer!.byteLength, 0);
    });
  }
  if (!follow) {
    // every value crossing a cut is kept for all batches until its last reader's segment runs,
    // so a segment ends where the fewest values cross, among the places that leave it at least
    // half the budget: between transformer blocks (the residual stream) rather than inside an
    // MLP (BERT-base: its 3072-wide activation, 192 MiB for 128 samples, was carried)
    const crossing = crossingCounts(order);
    nodes.length = 0;
    bytes.length = 0;
    let start = 0;
    while (start < order.length) {
      seen.clear();
      let total = 0;
      const after: number[] = [];
      let end = start;
      for (; end < order.length; end++) {
        const add = order[end]!.inputs.filter((v): v is Value => !!v?.initializer && !seen.has(v)).reduce((a, v) => a + v.initializer!.byteLength, 0);
        // a node of cutBefore starts a segment of its own (sequential GPTQ)
        if ((total > 0 && total + add > maxSegmentBytes) || (end > start && cutBefore?.has(order[end]!))) break;
        for (const v of order[end]!.inputs) if (v?.initializer) seen.add(v);
        total += add;
        after.push(total);
      }
      let cut = end;
      if (end < order.length) {
        for (let p = end; p > start && after[p - start - 1]! >= maxSegmentBytes / 2; p--) if (crossing[p]! < crossing[cut]!) cut = p;
      }
      nodes.push(order.slice(start, cut));
      bytes.push(cut > start ? after[cut - start - 1]! : 0);
      start = cut;
    }
    if (nodes.length === 0) {
      nodes.push([]);
      bytes.push(0);
    }
  }
  const segmentOf = new Map<Value, number>();
  nodes.forEach((list, s) => list.forEach((n) => n.outputs.forEach((o) => segmentOf.set(o, s))));
  const want = new Set(wanted);
  const inputs = nodes.map(() => new Set<string>());
  const outputs = nodes.map(() => new Set<string>());
  nodes.forEach((list, s) => {
    for (const n of list) {
      for (const v of n.inputs) {
        if (!v || v.initializer || v.name === '') continue;
        const from = segmentOf.get(v);
        if (from === s) continue;
        inputs[s]!.add(v.name);
        if (from !== undefined) outputs[from]!.add(v.name);
      }
    }
  });
  const wantedBySegment = nodes.map(() => [] as string[]);
  for (const name of want) {
    const v = g.value(name);
    // a graph input is handed out with the first segment
    const s = v?.isGraphInput() ? 0 : v ? segmentOf.get(v) : undefined;
    if (s === undefined) throw new Error(`block runner: '${name}' is not computed by a node of the graph`);
    if (!v!.isGraphInput()) outputs[s]!.add(name);
    wantedBySegment[s]!.push(name);
  }
  return { nodes, inputs: inputs.map((x) => [...x]), outputs: outputs.map((x) => [...x]), wanted: wantedBySegment, bytes };
}

/** For each position p of `order`: how many values computed before p are read at p or later. */
function crossingCounts(order: readonly Node[]): number[] {
  const at = new Map(order.map((n, i) => [n, i]));
  const delta = new Array<number>(order.length + 2).fill(0);
  order.forEach((n, i) => {
    for (const o of n.outputs) {
      const last = Math.max(-1, ...o.consumers().map((c) => at.get(c) ?? -1));
      if (last > i) {
        delta[i + 1]! += 1;
        delta[last + 1]! -= 1;
      }
    }
  });
  const out: number[] = [];
  let live = 0;
  for (let p = 0; p <= order.length; p++) {
    live += delta[p]!;
    out.push(live);
  }
  return out;
}

/** Kahn's order; ties keep the graph's own order. */
function topologicalOrder(list: readonly Node[]): Node[] {
  const index = new Map(list.map((n, i) => [n, i]));
  const pending = new Map<Node, number>();
  const readers = new Map<Node, Node[]>();
  for (const n of list) {
    const deps = new Set<Node>();
    for (const v of n.inputs) {
      const p = v?.producer();
      if (p && index.has(p) && p !== n) deps.add(p);
    }
    pending.set(n, deps.size);
    for (const d of deps) readers.set(d, [...(readers.get(d) ?? []), n]);
  }
  const ready = list.filter((n) => pending.get(n) === 0);
  const out: Node[] = [];
  while (ready.length > 0) {
    ready.sort((a, b) => index.get(a)! - index.get(b)!);
    const n = ready.shift()!;
    out.push(n);
    for (const r of readers.get(n) ?? []) {
      const left = pending.get(r)! - 1;
      pending.set(r, left);
      if (left === 0) ready.push(r);
    }
  }
  if (out.length !== list.length) throw new Error('block runner: the graph has a cycle');
  return out;
}

/** One segment's graph as a model of its own: its boundary values become typed inputs. */
function segmentModel(model: Model, plan: SegmentPlan, s: number, sample: Record<string, ArrayTensor>): Model {
  const g = new Graph(`segment_${s}`);
  const map = new Map<Value, Value>();
  const src = model.graph;
  for (const name of plan.inputs[s]!) {
    const t = sample[name]!;
    const v = g.addInput(name, { kind: 'tensor', dtype: t.dtype, shape: t.dims.map((_, i) => `${name}_d${i}`) });
    map.set(src.value(name)!, v);
  }
  const mapped = (v: Value | undefined): Value | undefined => {
    if (!v) return undefined;
    const m = map.get(v);
    if (m) return m;
    if (!v.initializer) throw new Error(`block runner: '${v.name}' is read before it is computed in segment ${s}`);
    const c = g.addInitializer(v.initializer);
    map.set(v, c);
    return c;
  };
  for (const n of plan.nodes[s]!) {
    const outs = n.outputs.map((o) => {
      const c = new Value(o.name, o.type);
      map.set(o, c);
      return c;
    });
    const c = new Node(n.opType, { domain: n.domain, name: n.name, inputs: n.inputs.map(mapped), outputs: outs, attributes: Object.fromEntries(n.attributes) });
    g.insertNode(c);
  }
  for (const name of plan.outputs[s]!) g.outputs.push(g.value(name)!);
  const m = new Model(g);
  m.opsetImports = new Map(model.opsetImports);
  m.irVersion = model.irVersion;
  m.sourcePath = model.sourcePath;
  return m;
}

export interface SegmentBatch {
  segment: number;
  segments: number;
  batch: number;
  /** The wanted tensors this segment produced for this batch. */
  tensors: Record<string, ArrayTensor>;
  /** True for the segment's last batch: every wanted tensor of the segment has been seen. */
  lastOfSegment: boolean;
}

export interface BlockRunOptions {
  /** Most weight bytes in one segment's session (default: an eighth of the model, 64-256 MiB). */
  maxSegmentBytes?: number;
  /** A plan made beforehand by planSegments (then maxSegmentBytes is not used). */
  plan?: SegmentPlan;
  threads?: number;
  signal?: AbortSignal;
  /**
   * Keep the values later segments read on disk (SpillStore), not in memory: each is written
   * as its segment runs and read back a batch at a time by its readers (sequential GPTQ on
   * BERT-base: the hidden state of 128 samples, 48 MiB per model, no longer held).
   */
  spill?: boolean;
}

/**
 * Batches handed out one at a time, so that the caller need not hold all of them (a SpillStore
 * of the calibration feeds). `get` gives the tensors `names` of batch `b`; a graph input read by
 * several segments is asked for again by each.
 */
export interface BatchSource {
  count: number;
  get(b: number, names: readonly string[]): Record<string, ArrayTensor>;
}

/** The batches as a source (those given as an array are held by the caller anyway). */
function batchSource(batches: Record<string, ArrayTensor>[] | BatchSource): BatchSource {
  if (!Array.isArray(batches)) return batches;
  return { count: batches.length, get: (b, names) => Object.fromEntries(names.map((n) => [n, batches[b]![n]!])) };
}

/**
 * The default segment size: an eighth of the model's weights, clamped to [64, 256] MiB.
 * SLIMFORMER_SEGMENT_BYTES sets it (tests cut small models with it).
 */
export function defaultSegmentBytes(model: Model): number {
  const env = Number(process.env.SLIMFORMER_SEGMENT_BYTES);
  if (Number.isFinite(env) && env > 0) return env;
  const total = model.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
  return Math.min(256 * 2 ** 20, Math.max(64 * 2 ** 20, total / 8));
}

/**
 * Runs `batches` (feeds of the model's inputs) through the model segment by segment (see
 * SegmentPlan) and yields, per segment and batch, the `wanted` tensors produced there. The
 * consumer must finish with a batch's tensors before asking for the next (they are not kept).
 */
export async function* runBlockwise(model: Model, batches: Record<string, ArrayTensor>[] | BatchSource, wanted: readonly string[], options: BlockRunOptions = {}): AsyncGenerator<SegmentBatch> {
  const plan = options.plan ?? planSegments(model, wanted, options.maxSegmentBytes ?? defaultSegmentBytes(model));
  if (!plan) throw new Error('block runner: graphs with subgraphs are run whole');
  const source = batchSource(batches);
  const graphInputs = new Set(model.graph.inputs.map((v) => v.name));
  // the values later segments read, per batch (the graph inputs come from `source`); in memory
  // unless spilled (a store that never spills makes no folder)
  const kept = new SpillStore(options.spill ? undefined : Infinity);
  const lastReader = new Map<string, number>();
  plan.inputs.forEach((names, s) => names.forEach((n) => lastReader.set(n, s)));
  const feedsOf = (s: number, b: number): Record<string, ArrayTensor> => {
    const names = plan.inputs[s]!;
    return { ...source.get(b, names.filter((n) => graphInputs.has(n))), ...Object.fromEntries(names.filter((n) => !graphInputs.has(n)).map((n) => [n, kept.get(n, b)])) };
  };
  // one batch of a segment, in a function of its own: a suspended generator keeps the values its
  // frame held (V8 does not clear them), and the last batch's feeds and outputs (BERT-base's MLP:
  // 12 MiB a tensor, for the model and the float reference) stayed alive through GPTQ's work on
  // the segment; only the handed-over batch crosses the yield, through `handed`
  const runBatch = async (session: Session, s: number, b: number): Promise<SegmentBatch> => {
    const feeds = feedsOf(s, b);
    const out = await session.run(feeds, plan.outputs[s]!);
    for (const [n, t] of Object.entries(out)) if ((lastReader.get(n) ?? -1) > s) kept.put(n, b, t);
    // what no later segment reads is let go
    for (const n of plan.inputs[s]!) if (lastReader.get(n) === s && !graphInputs.has(n)) kept.drop(n, b);
    // a wanted graph input is handed out as fed, or read from the source for this
    const given = plan.wanted[s]!.filter((n) => !(n in out));
    const inputs = given.length ? { ...feeds, ...source.get(b, given.filter((n) => !(n in feeds))) } : {};
    return { segment: s, segments, batch: b, tensors: Object.fromEntries(plan.wanted[s]!.map((n) => [n, out[n] ?? inputs[n]!])), lastOfSegment: b === source.count - 1 };
  };
  const handed: { batch?: SegmentBatch } = {};
  const segments = plan.nodes.length;
  try {
    for (let s = 0; s < segments; s++) {
      options.signal?.throwIfAborted();
      // nothing later reads and nothing wanted (the head after the last wanted tensor): not run
      if (plan.nodes[s]!.length === 0 || (plan.outputs[s]!.length === 0 && plan.wanted[s]!.length === 0)) continue;
      // onnxruntime's arena where freed buffers go back to the system (allocator.ts): w8a8 on the
      // BERT-base-sized encoder 381 -> 371 MiB and 91 -> 72 s of CPU, each activation no longer
      // a fresh mapping per run; without it the arena's chunks stayed in glibc's heap (834 against 774 MiB)
      let session: Session | undefined = await Session.create(segmentModel(model, plan, s, feedsOf(s, 0)), { threads: options.threads, memoryArena: freedBuffersReturned() });
      try {
        for (let b = 0; b < source.count; b++) {
          options.signal?.throwIfAborted();
          handed.batch = await runBatch(session!, s, b);
          // the segment's weights and arena go before its last batch is handed out: the consumer
          // works on it while this generator waits (sequential GPTQ: the down projection's factor
          // and levels, beside the sessions of both models' MLP, 60-100 MiB, before)
          if (b === source.count - 1) {
            await session!.release();
            session = undefined;
          }
          yield handOver(handed);
        }
      } finally {
        await session?.release();
      }
    }
  } finally {
    kept.close();
  }
}

/** The batch in `holder`, taken out of it (runBlockwise: nothing of it stays in the generator). */
function handOver(holder: { batch?: SegmentBatch }): SegmentBatch {
  const batch = holder.batch!;
  holder.batch = undefined;
  return batch;
}

/** Ops whose activation scale spans the whole batch: their results depend on the batch size. */
const BATCH_WIDE_OPS = new Set(['DynamicQuantizeLinear', 'DynamicQuantizeMatMul']);

/**
 * The batch size for running `candidate` beside its original block-wise (visitPairsBlockwise):
 * one sample at a time, so each run's tensors (a segment's layer outputs, a side) and
 * onnxruntime's buffers are a quarter of what batches of 4 make (BERT-base verification's
 * peak: w8a8 499 -> 418 MiB, w4 RTN 459 -> 373 MiB; the figures the same to the last digit),
 * unless the candidate quantizes activations with one scale per batch (dynamic int8), whose
 * figures then depend on the batch: `wide` for those.
 */
export function pairBatchSize(candidate: Model, wide: number): number {
  return candidate.graph.nodes.some((n) => BATCH_WIDE_OPS.has(n.opType)) ? wide : 1;
}

/** A tensor of model `a` and the tensor of model `b` that stands for it. */
export interface TensorPairNames {
  a: string;
  b: string;
}

/**
 * Runs two versions of one graph (float and quantized) segment by segment side by side
 * (planSegments with `follow`), so that neither is ever whole in a session, and calls `visit`
 * with each pair's two tensors for each batch. A tensor whose partner comes in a later segment
 * waits for it. Returns false, having run nothing, when a graph cannot be cut (If/Loop).
 */
export async function visitPairsBlockwise(a: Model, b: Model, batchesA: Record<string, ArrayTensor>[], batchesB: Record<string, ArrayTensor>[], pairs: readonly TensorPairNames[], visit: (pair: number, batch: number, ta: ArrayTensor, tb: ArrayTensor) => void, options: BlockRunOptions = {}): Promise<boolean> {
  const wantedA = [...new Set(pairs.map((p) => p.a))];
  const wantedB = [...new Set(pairs.map((p) => p.b))];
  // two sessions are alive side by side (and each run's tensors wait for their partner): each
  // side gets half the budget, so a pair of segments holds what one segment would
  const planA = planSegments(a, wantedA, (options.maxSegmentBytes ?? defaultSegmentBytes(a)) / 2);
  const planB = planA && planSegments(b, wantedB, 0, planA);
  if (!planA || !planB) return false;
  const runA = runBlockwise(a, batchesA, wantedA, { ...options, plan: planA });
  const runB = runBlockwise(b, batchesB, wantedB, { ...options, plan: planB });
  const byA = new Map<string, number[]>();
  const byB = new Map<string, number[]>();
  pairs.forEach((p, i) => {
    byA.set(p.a, [...(byA.get(p.a) ?? []), i]);
    byB.set(p.b, [...(byB.get(p.b) ?? []), i]);
  });
  // tensors waiting for their partner, by pair and batch
  const waitA = new Map<string, ArrayTensor>();
  const waitB = new Map<string, ArrayTensor>();
  const take = (side: 'a' | 'b', r: SegmentBatch): void => {
    for (const [name, t] of Object.entries(r.tensors)) {
      for (const i of (side === 'a' ? byA : byB).get(name) ?? []) {
        const key = `${i}/${r.batch}`;
        const other = (side === 'a' ? waitB : waitA).get(key);
        if (other) {
          (side === 'a' ? waitB : waitA).delete(key);
          if (side === 'a') visit(i, r.batch, t, other);
          else visit(i, r.batch, other, t);
        } else (side === 'a' ? waitA : waitB).set(key, t);
      }
    }
  };
  // the two runs go in step, batch by batch within a segment: a tensor then waits for its
  // partner for one batch, not for all batches of the segment (BERT-base, 16 samples: the
  // float side's layer outputs of a segment, ~130 MiB, waited for the quantized side's)
  const before = (x: SegmentBatch, y: SegmentBatch): boolean => x.segment < y.segment || (x.segment === y.segment && x.batch <= y.batch);
  let nextA = await runA.next();
  let nextB = await runB.next();
  try {
    while (!nextA.done || !nextB.done) {
      if (!nextA.done && (nextB.done || before(nextA.value, nextB.value))) {
        take('a', nextA.value);
        nextA = await runA.next();
      } else if (!nextB.done) {
        take('b', nextB.value);
        // the batch's tensors of both sides are seen and dropped: freed before the next run
        // makes new ones (BERT-base w4 RTN: the peak of verification 490 -> 459 MiB)
        collectGarbage();
        nextB = await runB.next();
      }
    }
  } finally {
    await runA.return(undefined);
    await runB.return(undefined);
  }
  if (waitA.size > 0 || waitB.size > 0) throw new Error(`block runner: ${waitA.size + waitB.size} tensor(s) never met their partner`);
  return true;
}
