import { describe, expect, it } from 'vitest';
import { trainInChunks } from '../../src/autodiff/chunked-steps.js';
import { Trainer, learningRate, type OptimizerOptions } from '../../src/autodiff/optimizer.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { TinyGraph, a } from './helpers.js';

/** loss = mean((x @ w - y)^2) with w a graph input. */
function regression() {
  const t = new TinyGraph(17, 11);
  const x = t.input('x', [16, 4]);
  const y = t.input('y', [16, 3]);
  const w = t.g.addInput('w', { kind: 'tensor', dtype: DataType.FLOAT, shape: [4, 3] });
  const d = t.op('Sub', [t.op('MatMul', [x, w]), y]);
  const loss = t.op('ReduceMean', [t.op('Mul', [d, d])], { keepdims: a.int(0) });
  // targets from a known w plus a little noise, so the loss can fall far
  const xs = t.feeds.x!.data as Float32Array;
  const ys = t.feeds.y!.data as Float32Array;
  for (let r = 0; r < 16; r++)
    for (let j = 0; j < 3; j++) {
      let v = 0.05 * ys[r * 3 + j]!;
      for (let k = 0; k < 4; k++) v += xs[r * 4 + k]! * Math.sin(k * 3 + j + 1);
      ys[r * 3 + j] = v;
    }
  return { model: t.model(loss), loss: loss.name, feeds: t.feeds };
}

describe('Trainer', () => {
  it('SGD takes exactly p - lr * grad', async () => {
    const { model, loss, feeds } = regression();
    const init = Float32Array.from({ length: 12 }, (_, i) => i / 10);
    const tr = await Trainer.create({ model, loss, params: [{ name: 'w', dims: [4, 3], init }], optimizer: { kind: 'sgd', lr: 0.1, schedule: 'constant' }, steps: 1 });
    await tr.step(feeds);
    const next = tr.parameters().get('w')!;
    // gradient by hand: 2/N * x^T (x w - y)
    const x = feeds.x!.data as Float32Array;
    const y = feeds.y!.data as Float32Array;
    const grad = new Float64Array(12);
    for (let r = 0; r < 16; r++)
      for (let j = 0; j < 3; j++) {
        let pred = 0;
        for (let k = 0; k < 4; k++) pred += x[r * 4 + k]! * init[k * 3 + j]!;
        const diff = pred - y[r * 3 + j]!;
        for (let k = 0; k < 4; k++) grad[k * 3 + j]! += (2 / 48) * diff * x[r * 4 + k]!;
      }
    for (let i = 0; i < 12; i++) expect(next[i]).toBeCloseTo(init[i]! - 0.1 * grad[i]!, 5);
    await tr.release();
  });

  it('Adam with a cosine schedule lowers the loss, and the same seed repeats exactly', async () => {
    const run = async () => {
      const { model, loss, feeds } = regression();
      const tr = await Trainer.create({ model, loss, params: [{ name: 'w', dims: [4, 3], init: new Float32Array(12) }], optimizer: { kind: 'adam', lr: 0.05 }, steps: 150 });
      const curve: number[] = [];
      for (let i = 0; i < 150; i++) curve.push(await tr.step(feeds));
      const final = await tr.evaluate(feeds);
      await tr.release();
      return { curve, final };
    };
    const first = await run();
    const second = await run();
    expect(second.curve).toEqual(first.curve);
    expect(first.final).toBeLessThan(first.curve[0]! * 0.05);
    console.log('Adam loss curve (every 25 steps):', first.curve.filter((_, i) => i % 25 === 0).map((l) => l.toFixed(4)).join(' -> '), '->', first.final.toFixed(4));
  });

  it('SGD with momentum and Adam at a zero gradient leave parameters unchanged', async () => {
    const { model, loss, feeds } = regression();
    // y = x @ w0 exactly: the gradient at w0 is zero up to rounding
    const w0 = Float32Array.from({ length: 12 }, (_, i) => (i % 5) / 4);
    const x = feeds.x!.data as Float32Array;
    const y = new Float32Array(48);
    for (let r = 0; r < 16; r++) for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) y[r * 3 + j]! += x[r * 4 + k]! * w0[k * 3 + j]!;
    const exact = { ...feeds, y: { dtype: DataType.FLOAT, dims: [16, 3], data: y } };
    for (const optimizer of [{ kind: 'sgd' as const, lr: 0.1, momentum: 0.9 }, { kind: 'adam' as const, lr: 1e-3 }]) {
      const tr = await Trainer.create({ model, loss, params: [{ name: 'w', dims: [4, 3], init: w0 }], optimizer, steps: 5 });
      for (let i = 0; i < 5; i++) await tr.step(exact);
      const w = tr.parameters().get('w')!;
      for (let i = 0; i < 12; i++) expect(Math.abs(w[i]! - w0[i]!)).toBeLessThan(optimizer.kind === 'adam' ? 6e-3 : 1e-5);
      await tr.release();
    }
  });

  it('Adam matches PyTorch\'s update rule step by step', async () => {
    // loss = sum(w * c): the gradient is c, whatever w is
    const t = new TinyGraph(17);
    const w = t.g.addInput('w', { kind: 'tensor', dtype: DataType.FLOAT, shape: [4] });
    const c = t.g.addInput('c', { kind: 'tensor', dtype: DataType.FLOAT, shape: [4] });
    const loss = t.op('ReduceSum', [t.op('Mul', [w, c])], { keepdims: a.int(0) });
    const model = t.model(loss);
    const init = Float32Array.of(0.5, -1, 2, 0);
    const grads = [Float32Array.of(1, -2, 0.5, 0), Float32Array.of(-0.3, 1, 4, 1e-3), Float32Array.of(2, 2, -1, 0.1)];
    const o = { kind: 'adam' as const, lr: 0.1, beta1: 0.8, beta2: 0.95, eps: 1e-6, schedule: 'constant' as const };
    const tr = await Trainer.create({ model, loss: loss.name, params: [{ name: 'w', dims: [4], init }], optimizer: o, steps: 3 });
    const p = Float64Array.from(init);
    const m = new Float64Array(4);
    const v = new Float64Array(4);
    for (let step = 1; step <= 3; step++) {
      const g = grads[step - 1]!;
      await tr.step({ c: { dtype: DataType.FLOAT, dims: [4], data: g } });
      for (let i = 0; i < 4; i++) {
        m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g[i]!;
        v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g[i]! ** 2;
        const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - o.beta2 ** step) + o.eps;
        p[i] = p[i]! - (o.lr / (1 - o.beta1 ** step)) * (m[i]! / denom);
      }
      const got = tr.parameters().get('w')!;
      for (let i = 0; i < 4; i++) expect(got[i]).toBeCloseTo(p[i]!, 5);
    }
    await tr.release();
  });

  // mini-batches that differ: the regression's data scaled per batch
  const batchesOf = (feeds: Record<string, ArrayTensor>, n: number): Record<string, ArrayTensor>[] =>
    Array.from({ length: n }, (_, b) => Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { ...t, data: (t.data as Float32Array).map((v, i) => v * (1 + 0.1 * b) + 0.01 * Math.sin(i + b)) }])));

  for (const optimizer of [
    { kind: 'adam', lr: 0.05, schedule: 'cosine', warmup: 2 },
    { kind: 'sgd', lr: 0.05, momentum: 0.9, schedule: 'cosine' },
  ] as OptimizerOptions[]) {
    it(`${optimizer.kind}: several steps in one run (stepEach, an ONNX Loop) equal the same steps one by one`, async () => {
      const { model, loss, feeds } = regression();
      const init = Float32Array.from({ length: 12 }, (_, i) => Math.cos(i));
      const make = () => Trainer.create({ model, loss, params: [{ name: 'w', dims: [4, 3], init }], optimizer, steps: 9 });
      const [one, many] = [await make(), await make()];
      const batches = batchesOf(feeds, 9);
      const single: number[] = [];
      for (const b of batches) single.push(await one.step(b));
      // 1 step, then 5 in one run, then 3 in another: the schedule and the state carry across
      const looped = [...(await many.stepEach(batches.slice(0, 1))), ...(await many.stepEach(batches.slice(1, 6))), ...(await many.stepEach(batches.slice(6)))];
      expect(many.steps).toBe(9);
      // the Loop runs the same kernels in the same order: the same float32 results; the
      // tolerance (1e-6 relative) only allows onnxruntime to order a reduction differently
      for (let i = 0; i < 9; i++) expect(Math.abs(looped[i]! - single[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(single[i]!));
      const [p, q] = [one.parameters().get('w')!, many.parameters().get('w')!];
      for (let i = 0; i < 12; i++) expect(Math.abs(q[i]! - p[i]!)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(p[i]!)));
      expect(single[8]).toBeLessThan(single[0]!);
      await one.release();
      await many.release();
    });
  }

  it('stepEach names a missing or unknown input of the mini-batches', async () => {
    const { model, loss, feeds } = regression();
    const tr = await Trainer.create({ model, loss, params: [{ name: 'w', dims: [4, 3], init: new Float32Array(12) }], optimizer: { kind: 'adam', lr: 0.01 }, steps: 4 });
    const noY = { x: feeds.x! };
    await expect(tr.stepEach([noY, noY])).rejects.toThrow("input 'y' is missing from the mini-batch");
    const extra = { ...feeds, z: feeds.x! };
    await expect(tr.stepEach([extra, extra])).rejects.toThrow("'z' is not an input of the training graph");
    expect(tr.steps).toBe(0);
    await tr.release();
  });

  it('trainInChunks takes every step in order, in chunks, and stops at an abort between chunks', async () => {
    const { model, loss, feeds } = regression();
    const init = new Float32Array(12).fill(0.1);
    const make = () => Trainer.create({ model, loss, params: [{ name: 'w', dims: [4, 3], init }], optimizer: { kind: 'adam', lr: 0.01 }, steps: 40 });
    const batches = batchesOf(feeds, 40);
    const [chunked, single] = [await make(), await make()];
    let at = 0;
    const seen: number[] = [];
    const losses: number[] = [];
    let runs = 0;
    const stepEach = chunked.stepEach.bind(chunked);
    chunked.stepEach = (b) => ((runs += 1), stepEach(b));
    await trainInChunks(chunked, 40, () => batches[at++]!, (i, l) => (seen.push(i), losses.push(l)));
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(runs).toBeLessThan(40); // a step of this model takes well under CHUNK_SECONDS
    for (let i = 0; i < 40; i++) expect(Math.abs(losses[i]! - (await single.step(batches[i]!)))).toBeLessThanOrEqual(1e-6 * Math.abs(losses[i]!));
    const stop = new AbortController();
    let taken = 0;
    at = 0;
    await expect(trainInChunks(chunked, 40, () => batches[at++ % 40]!, () => (taken++, stop.abort()), stop.signal)).rejects.toThrow();
    expect(taken).toBe(1); // the first chunk is one step; the abort lands before the next
    await chunked.release();
    await single.release();
  });

  it('schedules: warm-up, cosine to zero, constant', () => {
    const o = { kind: 'adam' as const, lr: 1, warmup: 10 };
    expect(learningRate(o, 0, 110)).toBeCloseTo(0.1);
    expect(learningRate(o, 9, 110)).toBeCloseTo(1);
    expect(learningRate(o, 10, 110)).toBeCloseTo(1);
    expect(learningRate(o, 60, 110)).toBeCloseTo(0.5);
    expect(learningRate(o, 110, 110)).toBeCloseTo(0);
    expect(learningRate({ kind: 'sgd', lr: 0.3, schedule: 'constant' }, 50, 100)).toBe(0.3);
  });
});
