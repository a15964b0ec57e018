// GPTQ's Gram stream with its feeds and boundary values on disk (SpillStore): the same data in
// the same order as in memory, so every matrix must be equal bit for bit; and the temporary
// folders must be gone after the run, after an abort and after an error.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { transpose, weightOutIn } from '../../src/export/linear-weight.js';
import { DataType } from '../../src/ir/dtype.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { LinearLayer } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { inputGramsBlockwise, type GramStream } from '../../src/quantize/gptq.js';
import { tempDir } from '../helpers/tmp.js';
import { ROOT } from '../helpers/fixtures.js';

// real exports, batches of 8: bert_spam (its token ids, 4 KiB a batch, stay in memory; its
// hidden state, 128 KiB a batch, goes to disk) and the zoo's hf_vit (its pixel values, 74 KiB a
// batch, go to disk; its hidden state, under 64 KiB, stays in memory)
const MODELS = [
  { name: 'bert_spam', file: 'fixtures/bert_spam.onnx', calib: 'calibration/bert_spam/calib' },
  { name: 'hf_vit', file: 'fixtures/zoo/hf_vit.onnx', calib: 'calibration/zoo/hf_vit/calib' },
];

/** Everything a stream hands out, copied: per input its Gram matrix, cross matrix and W·ΔCᵀ. */
type Taken = Map<string, Float64Array[]>;

const bytes = (a: Float64Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('Gram stream with values on disk', () => {
  // the stores' folders are made under os.tmpdir(): a folder of this test's own
  const tmp = tempDir();
  let saved: string | undefined;
  beforeEach(() => {
    saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  });
  const spillFolders = (): string[] => fs.readdirSync(tmp).filter((f) => f.startsWith('slimformer-spill-'));
  const spilledFiles = (): number => spillFolders().reduce((a, f) => a + fs.readdirSync(path.join(tmp, f)).length, 0);

  function setup(file: string, calib: string) {
    const model = loadModel(path.join(ROOT, file));
    const { linears } = discoverStructure(model);
    const tensors = [...new Map(linears.map((l) => [l.node.input(0)!.name, { name: l.node.input(0)!.name, k: l.inFeatures }])).values()];
    return { model, linears, tensors, data: openDataset(path.join(ROOT, calib)) };
  }

  /** Scales a layer's weight as GPTQ would change it: the segments after it must see the change. */
  function perturb(l: LinearLayer): void {
    const w = weightOutIn(l).map((v, i) => v * (1 + 0.2 * Math.sin(i)));
    const stored = l.transB ? w : transpose(w, l.outFeatures, l.inFeatures);
    l.weight.graph!.setInitializer(l.weight, Tensor.fromBytes(l.weight.name, DataType.FLOAT, [...l.weight.initializer!.dims], new Uint8Array(stored.buffer.slice(0))));
  }

  /**
   * Takes every matrix in order, sequential GPTQ's way when `sequential` (a segment per linear,
   * the float reference in step, W·ΔCᵀ for the MLP's down projections; each layer's weight
   * changed once its input's matrices are taken), and notes how many files were on disk.
   */
  async function takeAll(file: string, calib: string, spill: boolean, sequential: boolean): Promise<{ taken: Taken; filesSeen: number }> {
    const { model, linears, tensors, data } = setup(file, calib);
    const byInput = new Map<string, LinearLayer[]>();
    for (const l of linears) byInput.set(l.node.input(0)!.name, [...(byInput.get(l.node.input(0)!.name) ?? []), l]);
    const widest = Math.max(...tensors.map((t) => t.k));
    const options = sequential
      ? { cutBefore: new Set(linears.map((l) => l.node)), reference: model.clone(), crossWeights: (name: string) => (tensors.find((t) => t.name === name)!.k === widest ? byInput.get(name)!.map((l) => weightOutIn(l)) : undefined) }
      : { maxSegmentBytes: 96 * 1024 };
    const stream: GramStream = await inputGramsBlockwise(model, data, tensors, { ...options, samples: 32, spill });
    const taken: Taken = new Map();
    let filesSeen = 0;
    try {
      for (const name of stream.order) {
        const gram = Float64Array.from(await stream.take(name));
        filesSeen = Math.max(filesSeen, spilledFiles());
        const cross = stream.cross(name);
        const weightCross = stream.weightCross(name) ?? [];
        taken.set(name, [gram, ...(cross ? [Float64Array.from(cross)] : []), ...weightCross.map((x) => Float64Array.from(x))]);
        if (sequential) for (const l of byInput.get(name)!) perturb(l);
      }
    } finally {
      await stream.close();
    }
    return { taken, filesSeen };
  }

  for (const m of MODELS) {
    for (const sequential of [true, false]) {
      it(`${m.name}, ${sequential ? 'sequential (a segment per linear, the float reference in step)' : 'segments of 96 KiB'}: every matrix equals the in-memory run's bit for bit, and no folder is left`, async () => {
        const inMemory = await takeAll(m.file, m.calib, false, sequential);
        expect(inMemory.filesSeen).toBe(0);
        const spilled = await takeAll(m.file, m.calib, true, sequential);
        // the values did go to disk
        expect(spilled.filesSeen).toBeGreaterThan(0);
        expect(spillFolders()).toEqual([]);
        expect([...spilled.taken.keys()]).toEqual([...inMemory.taken.keys()]);
        expect(inMemory.taken.size).toBeGreaterThan(2);
        let crossCount = 0;
        for (const [name, mats] of inMemory.taken) {
          const other = spilled.taken.get(name)!;
          expect(other.length).toBe(mats.length);
          mats.forEach((a, i) => expect(bytes(other[i]!).equals(bytes(a))).toBe(true));
          crossCount += mats.length - 1;
        }
        // sequential: a cross matrix or W·ΔCᵀ per input, non-zero after the first layer changed
        if (sequential) expect(crossCount).toBe(inMemory.taken.size);
      });
    }
  }

  for (const m of MODELS) {
    it(`${m.name}: an abort (AbortSignal) ends the stream and removes its folders`, async () => {
      const { model, linears, tensors, data } = setup(m.file, m.calib);
      const controller = new AbortController();
      const stream = await inputGramsBlockwise(model, data, tensors, { cutBefore: new Set(linears.map((l) => l.node)), reference: model.clone(), signal: controller.signal, samples: 32 });
      try {
        await stream.take(stream.order[0]!);
        await stream.take(stream.order[1]!);
        expect(spilledFiles()).toBeGreaterThan(0);
        controller.abort();
        await expect(stream.take(stream.order[2]!)).rejects.toThrow(/abort/i);
        // not closed by the caller: the stream let go of its stores itself
        expect(spillFolders()).toEqual([]);
      } finally {
        await stream.close();
      }
    });

    it(`${m.name}: an error in the middle of the stream removes its folders`, async () => {
      const { model, linears, tensors, data } = setup(m.file, m.calib);
      const failing = tensors[2]!.name;
      const crossWeights = (name: string): Float32Array[] | undefined => {
        if (name === failing) throw new Error('weights unreadable');
        return undefined;
      };
      const stream = await inputGramsBlockwise(model, data, tensors, { cutBefore: new Set(linears.map((l) => l.node)), reference: model.clone(), crossWeights, samples: 32 });
      try {
        await stream.take(stream.order[0]!);
        expect(spilledFiles()).toBeGreaterThan(0);
        await expect(
          (async () => {
            for (const name of stream.order) await stream.take(name);
          })(),
        ).rejects.toThrow('weights unreadable');
        expect(spillFolders()).toEqual([]);
      } finally {
        await stream.close();
      }
    });
  }
});
