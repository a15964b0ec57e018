// Benchmark: one forward and one forward+backward run of a BERT-base-sized transformer block
// (hidden 768, 12 heads, MLP 3072, sequence 128, batch 8) under onnxruntime, and the ratios.
// Target: forward+backward at most 3x the forward. The target's reading is a training step's:
// the forward with its weights fed, forward+backward with its gradients left in onnxruntime (as
// the Trainer, which fuses the update into the run, leaves them); the other readings (gradients
// copied to JS, the deployed forward) are printed beside it.
//
//   npm run build && node dist/benchmarks/autodiff-block.js [--runs 5] [--threads N] [--opset 14|17] [--activation gelu|gelu_tanh] [--no-profile]
//
// The block is cut out of a torch-style post-LN (BERT) graph (erf GELU by default; gelu_tanh
// writes the tanh approximation). Two forwards are timed: with the weights as constants (the
// deployed model: onnxruntime pre-packs them for its GEMMs and fuses bias + GELU and residual +
// LayerNorm) and with the weights fed as inputs (what every training step must do). Forward+
// backward computes an MSE loss against a target and its gradient with respect to every weight
// of the block (what a block-reconstruction step needs; the 28 MB of gradients come back to
// JS). Further figures: the same with the gradients left in onnxruntime (each summed to a
// scalar in the graph, which shows what the copy out to JS costs), the gradients with respect
// to the block input too. The steps are timed round-robin (each timed run after a warm one), so
// load from other processes falls on all of them alike; the ratios are of medians from the same
// run, and the spread of the per-round ratios shows how far run-to-run noise moves them. A
// second phase, once those sessions are released, times a whole training step (gradients plus
// the fused Adam update, new weights and optimizer state copied back to JS) against several
// steps per onnxruntime run (Trainer.stepEach: an ONNX Loop keeps the weights and state in
// onnxruntime between them).
//
// Then, unless --no-profile, where the time goes: onnxruntime's profiler splits the kernel time
// of each of the three graphs into matrix products and everything else, and the FLOPs of the
// products are counted (measureFlops). Forward+backward's products carry 2.76x the forward's
// FLOPs, and run at about the fed forward's speed, which is below the deployed forward's:
// weights fed cannot be pre-packed, and the weight gradients X^T dY read an operand transposed.
// So the products alone take about 2.9x the whole deployed forward, which is why 3x of *that*
// forward is out of reach of any change to the backward's other (elementwise) work.
import { buildGradientGraph, promoteInitializer } from '../src/autodiff/gradient.js';
import { Trainer } from '../src/autodiff/optimizer.js';
import { extractSubgraph } from '../src/autodiff/subgraph.js';
import { discoverStructure } from '../src/discover/index.js';
import type { ArrayTensor } from '../src/ir/array-tensor.js';
import { DataType, isFloatType } from '../src/ir/dtype.js';
import { Graph } from '../src/ir/graph.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { measureFlops } from '../src/prune/cost.js';
import { blockSpans } from '../src/reconstruct/blocks.js';
import { Session, defaultThreads } from '../src/runtime/session.js';
import { buildTransformer } from '../tests/helpers/transformer-builder.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const RUNS = arg('--runs', 5);
const THREADS = arg('--threads', defaultThreads());
const OPSET = arg('--opset', 17) as 14 | 17;
const activation = process.argv.includes('--activation') ? process.argv[process.argv.indexOf('--activation') + 1] : 'gelu';
if (activation !== 'gelu' && activation !== 'gelu_tanh') throw new Error(`--activation must be gelu or gelu_tanh, not ${activation}`);
const ACTIVATION: 'gelu' | 'gelu_tanh' = activation;
const BATCH = 8;
/** Training steps per onnxruntime run in the stepEach figure. */
const LOOPED = 4;
const SEQ = 128;
const HIDDEN = 768;

function lossModel(block: Model): { model: Model; loss: string } {
  const m = block.clone();
  const g = m.graph;
  const out = g.outputs[0]!;
  const target = g.addInput('target', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', SEQ, HIDDEN] });
  const d = g.addNode('Sub', [out, target], ['diff']).output(0);
  const loss = g.addNode('ReduceMean', [g.addNode('Mul', [d, d], ['sq']).output(0)], ['loss'], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0);
  g.outputs = [loss];
  return { model: m, loss: loss.name };
}

interface Timed {
  label: string;
  run: () => Promise<unknown>;
  times: number[];
  /** Steps one run takes (its time is reported per step). */
  per?: number;
}

/**
 * Times every step once per round, round after round, so a change in the machine's load hits
 * all of them alike; each timed run follows an untimed one of the same step, so it finds the
 * caches warm as a training loop would. Reports medians.
 */
async function measure(steps: Timed[]): Promise<void> {
  for (let round = 0; round < RUNS + 1; round++) {
    for (const s of steps) {
      await s.run();
      const t = performance.now();
      await s.run();
      if (round >= 1) s.times.push((performance.now() - t) / (s.per ?? 1));
    }
  }
  for (const s of steps) {
    const sorted = [...s.times].sort((a, b) => a - b);
    console.log(`${s.label.padEnd(44)} median ${median(s).toFixed(1).padStart(8)} ms  (min ${sorted[0]!.toFixed(1)}, max ${sorted.at(-1)!.toFixed(1)})`);
  }
}

function median(s: Timed): number {
  return quantile(s.times, 0.5);
}

/** The q-quantile (nearest rank, q = 0.5 the median as above) of xs, which it leaves unsorted. */
function quantile(xs: readonly number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/**
 * The ratio of num's to den's time in each round (both were timed in the same round, so load
 * that drifts between rounds cancels), summarised: how far the run-to-run noise moves a ratio.
 */
function roundRatios(num: Timed, den: Timed): string {
  const r = num.times.map((t, i) => t / den.times[i]!);
  const f = (x: number) => `${x.toFixed(2)}x`;
  return `per round: median ${f(quantile(r, 0.5))}, middle half ${f(quantile(r, 0.25))}-${f(quantile(r, 0.75))}, range ${f(Math.min(...r))}-${f(Math.max(...r))}, ${r.filter((x) => x <= 3).length} of ${r.length} rounds <= 3x`;
}

async function main(): Promise<void> {
  console.log(`BERT-base-sized block: hidden ${HIDDEN}, 12 heads, MLP 3072 (${ACTIVATION}), seq ${SEQ}, batch ${BATCH}; opset ${OPSET}; ${THREADS} threads; ${RUNS} timed runs each`);
  const built = buildTransformer({ opset: OPSET, placement: 'post', blocks: 1, hidden: HIDDEN, heads: 12, mlpWidth: 3072, seq: SEQ, activation: ACTIVATION });
  const span = blockSpans(discoverStructure(built.model))[0]!;
  const block = extractSubgraph(built.model, { inputs: [span.input], outputs: [span.output] }).model;
  const weights = block.graph.initializers.filter((v) => v.initializer && isFloatType(v.initializer.dtype) && v.initializer.size > 1);
  const params = weights.reduce((a, v) => a + v.initializer!.size, 0);
  console.log(`block: ${block.graph.nodes.length} nodes, ${weights.length} weight tensors, ${(params / 1e6).toFixed(2)}M parameters`);

  const x = built.feeds(BATCH).x!;
  const target: ArrayTensor = { dtype: DataType.FLOAT, dims: x.dims, data: (x.data as Float32Array).map((v) => v * 0.5) };
  const { model: withLoss, loss } = lossModel(block);

  const fwd = await Session.create(withLoss, { threads: THREADS, spinning: true });
  // a training step feeds the weights (they change every step), so onnxruntime cannot
  // pre-pack them for its GEMMs: the forward to compare with does the same
  const weightValues: Record<string, ArrayTensor> = {};
  for (const v of weights) weightValues[v.name] = { dtype: DataType.FLOAT, dims: [...v.initializer!.dims], data: v.initializer!.toFloat32() };
  const fed = withLoss.clone();
  for (const v of weights) promoteInitializer(fed.graph, fed.graph.value(v.name)!);
  const fwdFed = await Session.create(fed, { threads: THREADS, spinning: true });

  const t0 = performance.now();
  const grad = buildGradientGraph(withLoss, { loss, wrt: weights.map((v) => v.name) });
  console.log(`gradient graph: ${grad.model.graph.nodes.length} nodes, built in ${(performance.now() - t0).toFixed(0)} ms`);
  const bwd = await Session.create(grad.model, { threads: THREADS, spinning: true });
  // the same graph with each gradient summed to a scalar in the graph: what copying the 28 MB
  // of gradients out to JS costs (onnxruntime-node copies every output into a new JS buffer)
  const kept = grad.model.clone();
  kept.graph.outputs = kept.graph.outputs.map((o) =>
    o.name === grad.loss ? o : kept.graph.addNode('ReduceSum', [o], [`${o.name}_summed`], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0),
  );
  const bwdKept = await Session.create(kept, { threads: THREADS, spinning: true });
  const gradX = buildGradientGraph(withLoss, { loss, wrt: [span.input, ...weights.map((v) => v.name)] });
  const bwdX = await Session.create(gradX.model, { threads: THREADS, spinning: true });
  const makeTrainer = () =>
    Trainer.create({
      model: withLoss,
      loss,
      params: weights.map((v) => ({ name: v.name, dims: [...v.initializer!.dims], init: v.initializer!.toFloat32() })),
      optimizer: { kind: 'adam', lr: 1e-6 },
      steps: LOOPED * (2 * RUNS + 2),
      threads: THREADS,
    });
  const trainer = await makeTrainer();
  const feeds = { [span.input]: x, target };
  const steps: Timed[] = [
    { label: 'forward, constant weights (as deployed)', run: () => fwd.run(feeds), times: [] },
    { label: 'forward, weights fed as inputs', run: () => fwdFed.run({ ...feeds, ...weightValues }), times: [] },
    { label: 'forward + backward (d loss / d weights)', run: () => bwd.run({ ...feeds, ...weightValues }), times: [] },
    { label: 'forward + backward, gradients left in ORT', run: () => bwdKept.run({ ...feeds, ...weightValues }), times: [] },
    { label: 'forward + backward (weights and input)', run: () => bwdX.run({ ...feeds, ...weightValues }), times: [] },
  ];
  await measure(steps);
  for (const s of [fwd, fwdFed, bwd, bwdKept, bwdX]) await s.release();
  // then, with the other sessions gone, training steps one per run and several per run
  const looped = await makeTrainer();
  const training: Timed[] = [
    { label: 'training step (gradients + fused Adam)', run: () => trainer.step(feeds), times: [] },
    { label: `training step, ${LOOPED} per run (stepEach)`, run: () => looped.stepEach(Array.from({ length: LOOPED }, () => feeds)), times: [], per: LOOPED },
  ];
  console.log('');
  await measure(training);
  await trainer.release();
  await looped.release();
  const [tfConst, tf, tb, tbKept, tbx] = steps.map(median) as [number, number, number, number, number];
  const [ts, tl] = training.map(median) as [number, number];

  console.log('');
  // the target's reading: a training step feeds its weights, and its gradients stay in
  // onnxruntime (the Trainer fuses the update into the run); the others are printed beside it
  console.log(`ratio forward+backward / forward, as in a training step (weights fed, gradients left in onnxruntime): ${(tbKept / tf).toFixed(2)}x  (target <= 3x)`);
  console.log(`  ${roundRatios(steps[3]!, steps[1]!)}`);
  console.log('other readings:');
  console.log(`ratio forward+backward, gradients copied to JS / forward, fed:   ${(tb / tf).toFixed(2)}x  (the copy: ${(tb - tbKept).toFixed(1)} ms of ${tb.toFixed(1)})`);
  console.log(`  ${roundRatios(steps[2]!, steps[1]!)}`);
  console.log(`ratio forward+backward, gradients left in onnxruntime / forward, constant weights: ${(tbKept / tfConst).toFixed(2)}x`);
  console.log(`  ${roundRatios(steps[3]!, steps[0]!)}`);
  console.log(`ratio forward+backward, gradients copied to JS / forward, constant weights:        ${(tb / tfConst).toFixed(2)}x`);
  console.log(`  ${roundRatios(steps[2]!, steps[0]!)}`);
  console.log(`ratio forward+backward (weights and input) / forward, fed:    ${(tbx / tf).toFixed(2)}x`);
  console.log(`ratio training step (with Adam) / forward, fed:               ${(ts / tf).toFixed(2)}x`);
  console.log(`training step, ${LOOPED} per run (weights and Adam state stay in onnxruntime): ${(tl / ts).toFixed(2)}x the time of one per run; ${(tl / tf).toFixed(2)}x the fed forward`);

  if (!process.argv.includes('--no-profile')) await whereTheTimeGoes(withLoss, fed, grad.model, feeds, weightValues);
}

const PRODUCTS = new Set(['MatMul', 'Gemm', 'FusedMatMul']);

/**
 * Kernel time per run (onnxruntime's profiler, PROFILE_RUNS runs of each) split into matrix
 * products and everything else, for the deployed forward, the fed forward and forward+backward.
 * It says how much of the ratio any change to the backward's elementwise work could remove: the
 * products' share is fixed by their FLOPs and by the speed of onnxruntime's GEMM in the form each
 * product takes (weights pre-packed or not, an operand transposed or not).
 */
async function whereTheTimeGoes(deployed: Model, fed: Model, grad: Model, feeds: Record<string, ArrayTensor>, weights: Record<string, ArrayTensor>): Promise<void> {
  const PROFILE_RUNS = 9;
  const split = async (model: Model, f: Record<string, ArrayTensor>) => {
    const s = await Session.create(model, { threads: THREADS, profile: true, spinning: true });
    try {
      for (let i = 0; i < PROFILE_RUNS + 1; i++) await s.run(f);
      const nodes = s.endProfiling();
      // per run (the first, a warm-up, left out), then the median run
      const runs = Array.from({ length: PROFILE_RUNS }, (_, r) => {
        let products = 0;
        let rest = 0;
        for (const n of nodes) {
          if (PRODUCTS.has(n.op)) products += n.micros[r + 1]! / 1000;
          else rest += n.micros[r + 1]! / 1000;
        }
        return { products, rest };
      });
      return runs.sort((a, b) => a.products + a.rest - (b.products + b.rest))[PROFILE_RUNS >> 1]!;
    } finally {
      await s.release();
    }
  };
  const d = await split(deployed, feeds);
  const f = await split(fed, { ...feeds, ...weights });
  const g = await split(grad, { ...feeds, ...weights });
  console.log('');
  console.log(`where the time goes (onnxruntime profile, kernel ms of the median of ${PROFILE_RUNS} runs; matrix products = MatMul, Gemm, FusedMatMul):`);
  console.log('                          deployed forward   forward, fed   forward+backward');
  const row = (label: string, k: 'products' | 'rest') => console.log(`${label.padEnd(26)}${d[k].toFixed(1).padStart(16)}${f[k].toFixed(1).padStart(15)}${g[k].toFixed(1).padStart(19)}`);
  row('matrix products', 'products');
  row('everything else', 'rest');
  console.log(`forward+backward's matrix products alone: ${(g.products / (d.products + d.rest)).toFixed(2)}x the whole deployed forward, ${(g.products / (f.products + f.rest)).toFixed(2)}x the whole fed forward`);
  const fwdFlops = await measureFlops(deployed, feeds, THREADS);
  const gradFlops = await measureFlops(grad, { ...feeds, ...weights }, THREADS);
  console.log(`their FLOPs: ${(gradFlops / 1e9).toFixed(1)} G against the forward's ${(fwdFlops / 1e9).toFixed(1)} G, ${(gradFlops / fwdFlops).toFixed(2)}x; the rest of the gap is GEMM speed (weights fed cannot be pre-packed; the weight gradients X^T dY read an operand transposed)`);
  await gemmForms();
}

/**
 * onnxruntime's GEMM speed in the forms the block's MLP products take (tokens 1024, hidden 768,
 * MLP 3072): X W with W a pre-packed constant (deployed forward) or fed (training forward), dY W^T
 * (input gradient) and X^T dY (weight gradient). Each graph runs 4 products of its form, summed
 * to a scalar so no large output is copied; medians of 9 runs, interleaved, each after an untimed one.
 */
async function gemmForms(): Promise<void> {
  const [M, K, N] = [BATCH * SEQ, HIDDEN, 3072];
  const REP = 4;
  const random = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) * 0.5);
  const form = async (label: string, a: number[], b: number[], constB: boolean, product: (g: Graph, x: ReturnType<Graph['addInput']>, w: ReturnType<Graph['addInput']>) => ReturnType<Graph['addInput']>) => {
    const g = new Graph('gemm');
    const A = g.addInput('a', { kind: 'tensor', dtype: DataType.FLOAT, shape: a });
    const size = (d: number[]) => d.reduce((x, y) => x * y, 1);
    const B = constB ? g.addInitializer(Tensor.from('b', DataType.FLOAT, b, random(size(b)))) : g.addInput('b', { kind: 'tensor', dtype: DataType.FLOAT, shape: b });
    const outs = [];
    for (let r = 0; r < REP; r++) {
      // a distinct A per product, so onnxruntime cannot share one result
      const ar = g.addNode('Mul', [A, g.addInitializer(Tensor.from(`s${r}`, DataType.FLOAT, [], [1 + r / 1024]))], [`a${r}`]).output(0);
      outs.push(product(g, ar, B));
    }
    const sum = g.addNode('Sum', outs, ['sum']).output(0);
    g.outputs.push(g.addNode('ReduceSum', [sum], ['total'], { attributes: { keepdims: { type: 'int', value: 0 } } }).output(0));
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    const session = await Session.create(m, { threads: THREADS, spinning: true });
    const feeds: Record<string, ArrayTensor> = { a: { dtype: DataType.FLOAT, dims: a, data: random(size(a)) } };
    if (!constB) feeds.b = { dtype: DataType.FLOAT, dims: b, data: random(size(b)) };
    return { label, session, feeds, times: [] as number[] };
  };
  const gemm = (transA: number, transB: number) => (g: Graph, x: ReturnType<Graph['addInput']>, w: ReturnType<Graph['addInput']>) =>
    g.addNode('Gemm', [x, w], [g.uniqueName('y')], { attributes: { transA: { type: 'int', value: transA }, transB: { type: 'int', value: transB } } }).output(0);
  const forms = [
    await form('X W, W constant (deployed forward)', [M, K], [K, N], true, gemm(0, 0)),
    await form('X W, W fed (training forward)', [M, K], [K, N], false, gemm(0, 0)),
    await form('dY W^T (input gradient)', [M, N], [K, N], false, gemm(0, 1)),
    await form('X^T dY (weight gradient)', [M, K], [M, N], false, gemm(1, 0)),
  ];
  for (let r = 0; r < 10; r++) {
    for (const f of forms) {
      // an untimed run first: the previous session's threads may still be spinning
      await f.session.run(f.feeds);
      const t = performance.now();
      await f.session.run(f.feeds);
      if (r > 0) f.times.push(performance.now() - t);
    }
  }
  console.log('');
  console.log(`onnxruntime GEMM speed by form (${M}x${K}x${N}, ${REP} products per run, median of 9 runs):`);
  for (const f of forms) {
    f.times.sort((x, y) => x - y);
    const ms = f.times[f.times.length >> 1]! / REP;
    console.log(`  ${f.label.padEnd(38)} ${ms.toFixed(2).padStart(6)} ms  ${((2 * M * K * N) / ms / 1e6).toFixed(0).padStart(4)} GFLOP/s`);
    await f.session.release();
  }
}

await main();
