import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { calibrate, type CalibrateOptions } from '../../src/calibrate/calibrate.js';
import { type ObserverSpec, createObserver } from '../../src/calibrate/observer.js';
import { planExposure } from '../../src/calibrate/plan.js';
import type { Dataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { UserError } from '../../src/errors.js';
import { concatBatch } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { Session } from '../../src/runtime/session.js';
import { tempDir } from '../helpers/tmp.js';
import { type TransformerOptions, buildTransformer } from '../helpers/transformer-builder.js';
import { normals } from './reference.js';

/** Samples held in memory, as a Dataset (what openDataset returns for files). */
function memoryDataset(inputs: { name: string; dims: number[]; data: Float32Array }[][], label = 'memory'): Dataset {
  return {
    path: label,
    size: inputs.length,
    where: (i) => `${label} sample ${i}`,
    read: (i) => ({ inputs: inputs[i]!.map((a) => ({ ...a, dtype: DataType.FLOAT })), label: undefined, expected: [] }),
  };
}

function transformer(options: TransformerOptions = {}) {
  const built = buildTransformer({ blocks: 2, hidden: 32, heads: 4, mlpWidth: 64, seq: 8, ...options });
  const { seq, hidden } = built.options;
  const samples = Array.from({ length: 10 }, (_, i) => [{ name: 'x', dims: [1, seq, hidden], data: normals(seq * hidden, 100 + i) }]);
  const structure = discoverStructure(built.model);
  const inputs = [...new Set(structure.linears.map((l) => l.input.name))];
  return { model: built.model, samples, dataset: memoryDataset(samples), inputs };
}

/** Observers fed directly with the tensors onnxruntime exposes, batch by batch. */
async function direct(model: Model, dataset: Dataset, tensors: string[], spec: ObserverSpec, batchSize: number) {
  const session = await Session.create(model, { expose: tensors });
  const observers = new Map(tensors.map((t) => [t, createObserver(spec)]));
  for (let s = 0; s < dataset.size; s += batchSize) {
    const rows = Array.from({ length: Math.min(batchSize, dataset.size - s) }, (_, k) => dataset.read(s + k).inputs[0]!);
    const out = await session.run({ x: concatBatch(rows) }, tensors);
    for (const t of tensors) observers.get(t)!.update(out[t]!.data as Float32Array, out[t]!.dims);
  }
  await session.release();
  return new Map([...observers].map(([t, o]) => [t, o.range()]));
}

function expectSameRanges(actual: Map<string, { min: Float32Array; max: Float32Array }>, expected: Map<string, { min: Float32Array; max: Float32Array }>, what: string) {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [t, r] of expected) {
    const a = actual.get(t)!;
    expect(a.min.length, `${what} ${t}`).toBe(r.min.length);
    for (let c = 0; c < r.min.length; c++) {
      expect(a.min[c], `${what} ${t} min[${c}]`).toBeCloseTo(r.min[c]!, 5);
      expect(a.max[c], `${what} ${t} max[${c}]`).toBeCloseTo(r.max[c]!, 5);
    }
  }
}

const noCache: Partial<CalibrateOptions> = { cacheDir: false };

describe('calibrate', () => {
  const t = transformer();

  it('matches observers fed directly with the exposed tensors', async () => {
    const specs: ObserverSpec[] = [
      { kind: 'minmax' },
      { kind: 'minmax', perChannel: true },
      { kind: 'minmax', perChannel: true, channelAxis: 1, symmetric: true },
      { kind: 'percentile', symmetric: true, percentile: 99.9 },
      { kind: 'entropy', symmetric: true },
      { kind: 'mse', perChannel: true, bits: 4 },
    ];
    for (const spec of specs) {
      const r = await calibrate(t.model, t.dataset, { tensors: t.inputs, observer: spec, batchSize: 4, ...noCache });
      expectSameRanges(r.ranges, await direct(t.model, t.dataset, t.inputs, spec, 4), JSON.stringify(spec));
      expect(r.fromCache).toBe(false);
      expect(r.samples).toBe(10);
    }
  });

  it('reduces min/max inside the graph as the JavaScript loop does, at opsets 13 and 18', async () => {
    for (const opset of [13, 18] as const) {
      const m = transformer({ opset });
      for (const spec of [{ kind: 'minmax' }, { kind: 'minmax', perChannel: true }, { kind: 'minmax', perChannel: true, channelAxis: -2 }] as ObserverSpec[]) {
        const tensors = [...m.inputs, 'x'];
        const inGraph = await calibrate(m.model, m.dataset, { tensors, observer: spec, minmaxIn: 'graph', ...noCache });
        const inJs = await calibrate(m.model, m.dataset, { tensors, observer: spec, minmaxIn: 'js', ...noCache });
        expectSameRanges(inGraph.ranges, inJs.ranges, `opset ${opset} ${JSON.stringify(spec)}`);
        expect(inGraph.forwardPasses).toBe(Math.ceil(10 / 8));
      }
    }
  });

  it('takes observers per tensor, and weights and graph inputs as tensors', async () => {
    const weight = t.model.graph.initializers.find((v) => v.initializer!.dims.length === 2)!;
    const [a, b] = t.inputs;
    const r = await calibrate(t.model, t.dataset, {
      tensors: [a!, b!, weight.name, 'x'],
      observer: { kind: 'percentile', percentile: 99 },
      perTensor: { [b!]: { kind: 'minmax' }, [weight.name]: { kind: 'minmax', perChannel: true, symmetric: true } },
      ...noCache,
    });
    expect(r.specs.get(a!)!.kind).toBe('percentile');
    expect(r.specs.get(b!)!.kind).toBe('minmax');
    const w = weight.initializer!.toFloat32();
    const cols = weight.initializer!.dims[1]!;
    const wr = r.ranges.get(weight.name)!;
    expect(wr.max.length).toBe(cols);
    for (let c = 0; c < cols; c++) {
      const amax = Math.max(...[...w].filter((_, i) => i % cols === c).map(Math.abs));
      expect(wr.max[c]).toBe(amax);
      expect(wr.min[c]).toBe(-amax);
    }
    const xs = t.samples.flatMap((s) => [...s[0]!.data]);
    expect(r.ranges.get('x')!.max[0]).toBeLessThan(Math.max(...xs)); // 99th percentile
  });

  it('stays within a memory budget by shrinking the batch, then by splitting tensors into passes', async () => {
    const probe = await Session.create(t.model, { expose: t.inputs });
    const one = await probe.run({ x: t.dataset.read(0).inputs[0]! }, t.inputs);
    await probe.release();
    const bytes = t.inputs.map((n) => one[n]!.data.byteLength);
    const total = bytes.reduce((a, b) => a + b, 0);
    const spec: ObserverSpec = { kind: 'percentile', percentile: 99 };
    const smaller = await calibrate(t.model, t.dataset, { tensors: t.inputs, observer: spec, batchSize: 8, memoryBudgetBytes: total * 3, ...noCache });
    expect([smaller.batchSize, smaller.groups]).toEqual([3, 1]);
    const split = await calibrate(t.model, t.dataset, { tensors: t.inputs, observer: spec, batchSize: 8, memoryBudgetBytes: Math.max(...bytes), ...noCache });
    expect(split.batchSize).toBe(1);
    expect(split.groups).toBeGreaterThan(1);
    expect(split.forwardPasses).toBe(1 + split.groups * 10); // a one-sample probe, then one pass per group
    expectSameRanges(split.ranges, await direct(t.model, t.dataset, t.inputs, spec, 1), 'split');
  });

  it('plans exposure: batch first, then groups', () => {
    const bytes = new Map([['a', 100], ['b', 100], ['c', 300]]);
    expect(planExposure(bytes, 10_000, 8)).toEqual({ batchSize: 8, groups: [['a', 'b', 'c']] });
    expect(planExposure(bytes, 1500, 8)).toEqual({ batchSize: 3, groups: [['a', 'b', 'c']] });
    expect(planExposure(bytes, 300, 8)).toEqual({ batchSize: 1, groups: [['a', 'b'], ['c']] });
    expect(planExposure(bytes, 150, 8)).toEqual({ batchSize: 1, groups: [['a'], ['b'], ['c']] });
  });

  it('names a tensor that does not exist or lacks the channel axis, and stops when aborted', async () => {
    await expect(calibrate(t.model, t.dataset, { tensors: ['nope'], ...noCache })).rejects.toThrow(/no tensor named 'nope'/);
    await expect(calibrate(t.model, t.dataset, { tensors: ['x'], observer: { kind: 'minmax', perChannel: true, channelAxis: 3 }, ...noCache })).rejects.toThrow(
      /cannot calibrate tensor 'x' per channel on axis 3: it has 3 dimensions/,
    );
    // shapes the graph does not declare are checked on the data
    await expect(calibrate(t.model, t.dataset, { tensors: [t.inputs[0]!], observer: { kind: 'percentile', perChannel: true, channelAxis: -4 }, ...noCache })).rejects.toThrow(
      `cannot calibrate tensor '${t.inputs[0]}': channel axis -4 is outside a tensor of shape [8,8,32]`,
    );
    const controller = new AbortController();
    controller.abort();
    await expect(calibrate(t.model, t.dataset, { tensors: t.inputs, signal: controller.signal, ...noCache })).rejects.toThrow(/abort/i);
  });
});

describe('calibrate rejects NaN and Inf', () => {
  /** y = Log(x): NaN for x < 0, -Inf for x = 0. */
  function logModel(): Model {
    const g = new Graph('log');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 4] });
    const y = g.addNode('Log', [x], ['logx']).output(0);
    const z = g.addNode('Relu', [y], ['z']).output(0);
    g.outputs.push(z);
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    return m;
  }
  const rows = (bad: number) => Array.from({ length: 6 }, (_, i) => [{ name: 'x', dims: [1, 4], data: Float32Array.from([1, 2, 3, i === 4 ? bad : 4]) }]);

  it('names the tensor and the samples, for every observer', async () => {
    for (const bad of [-1, 0]) {
      for (const kind of ['minmax', 'percentile'] as const) {
        for (const minmaxIn of ['graph', 'js'] as const) {
          const err = await calibrate(logModel(), memoryDataset(rows(bad), 'calib'), { tensors: ['logx'], observer: { kind }, batchSize: 2, minmaxIn, ...noCache }).catch((e: unknown) => e);
          expect(err, `${kind} ${bad}`).toBeInstanceOf(UserError);
          expect((err as Error).message).toMatch(/tensor 'logx' holds NaN or infinite values on one of the samples calib sample 4 to calib sample 5/);
        }
      }
    }
  });

  it('names a weight that holds NaN', async () => {
    const m = logModel();
    const w = m.graph.addInitializer(Tensor.from('w', DataType.FLOAT, [4], [1, NaN, 0, 0]));
    m.graph.addNode('Add', [m.graph.value('z')!, w], ['out']);
    await expect(calibrate(m, memoryDataset(rows(1)), { tensors: ['w'], ...noCache })).rejects.toThrow(/tensor 'w' holds NaN or infinite values on weight 'w'/);
  });
});

describe('calibration cache', () => {
  const t = transformer();
  const dir = tempDir('slimformer-calib-cache-');
  const options = (cacheDir: string, spec: ObserverSpec = { kind: 'percentile', percentile: 99.9 }): CalibrateOptions => ({ tensors: t.inputs, observer: spec, cacheDir });
  afterEach(() => {
    vi.restoreAllMocks();
    delete process.env.SLIMFORMER_CACHE_DIR;
  });

  it('skips the forward passes on a second run, and misses when data, observers or weights change', async () => {
    const cacheDir = path.join(dir, 'a');
    const first = await calibrate(t.model, t.dataset, options(cacheDir));
    expect(first.fromCache).toBe(false);
    expect(first.forwardPasses).toBeGreaterThan(0);
    expect(fs.existsSync(first.cacheFile!)).toBe(true);

    const create = vi.spyOn(Session, 'create');
    const second = await calibrate(t.model, t.dataset, options(cacheDir));
    expect(second.fromCache).toBe(true);
    expect(second.forwardPasses).toBe(0);
    expect(create).not.toHaveBeenCalled();
    expectSameRanges(second.ranges, first.ranges, 'cached');
    for (const [name, r] of first.ranges) {
      expect([...second.ranges.get(name)!.min]).toEqual([...r.min]);
      expect([...second.ranges.get(name)!.max]).toEqual([...r.max]);
    }

    const changed = t.samples.map((s) => s.map((a) => ({ ...a, data: a.data.slice() })));
    changed[3]![0]!.data[5]! += 1;
    expect((await calibrate(t.model, memoryDataset(changed), options(cacheDir))).fromCache).toBe(false);
    expect((await calibrate(t.model, t.dataset, options(cacheDir, { kind: 'percentile', percentile: 99 }))).fromCache).toBe(false);
    const other = transformer({ seed: 2 });
    expect((await calibrate(other.model, t.dataset, { ...options(cacheDir), tensors: other.inputs })).fromCache).toBe(false);
    expect((await calibrate(t.model, t.dataset, options(cacheDir))).fromCache).toBe(true);
    // histograms depend on the batching; min/max does not
    expect((await calibrate(t.model, t.dataset, { ...options(cacheDir), batchSize: 3 })).fromCache).toBe(false);
    const minmax = options(cacheDir, { kind: 'minmax' });
    expect((await calibrate(t.model, t.dataset, minmax)).fromCache).toBe(false);
    expect((await calibrate(t.model, t.dataset, { ...minmax, batchSize: 3 })).fromCache).toBe(true);
    expect(fs.readdirSync(path.join(cacheDir, 'calibration')).filter((f) => !f.endsWith('.json'))).toEqual([]); // no temporary files left
  });

  const tamper = (text: string): string => {
    const entry = JSON.parse(text) as { body: { ranges: Record<string, { max: number[] }> } };
    const first = Object.values(entry.body.ranges)[0]!;
    first.max[0] = first.max[0]! * 1.5;
    return JSON.stringify(entry);
  };

  it('ignores a corrupted entry and writes a good one', async () => {
    const cacheDir = path.join(dir, 'b');
    const first = await calibrate(t.model, t.dataset, options(cacheDir));
    const file = first.cacheFile!;
    const good = fs.readFileSync(file, 'utf8');
    const corruptions = [
      good.slice(0, good.length / 2), // truncated
      tamper(good), // a changed number: still JSON, fails its checksum
      '{}',
      'not json',
    ];
    for (const bad of corruptions) {
      fs.writeFileSync(file, bad);
      const again = await calibrate(t.model, t.dataset, options(cacheDir));
      expect(again.fromCache).toBe(false);
      expectSameRanges(again.ranges, first.ranges, 'recomputed');
      expect((await calibrate(t.model, t.dataset, options(cacheDir))).fromCache).toBe(true);
    }
  });

  it('uses SLIMFORMER_CACHE_DIR by default, and reports a cache it cannot write', async () => {
    process.env.SLIMFORMER_CACHE_DIR = path.join(dir, 'env');
    const r = await calibrate(t.model, t.dataset, { tensors: t.inputs });
    expect(r.cacheFile!.startsWith(path.join(dir, 'env', 'calibration'))).toBe(true);
    const blocked = path.join(dir, 'file-in-the-way');
    fs.writeFileSync(blocked, '');
    const w = await calibrate(t.model, t.dataset, options(blocked));
    expect(w.cacheWriteError).toMatch(/cannot write the calibration cache/);
    expect(w.ranges.size).toBe(t.inputs.length);
  });
});
