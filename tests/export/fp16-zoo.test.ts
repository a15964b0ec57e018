// fp16 on every model of the exporter zoo (fixtures/zoo/*.onnx, calibration/zoo/<name>/calib;
// an optimized copy NAME.ort.onnx uses NAME's data). Skipped when the zoo is not in this checkout.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { DataType } from '../../src/ir/dtype.js';
import { loadModel, modelFromBytes, modelToBytes } from '../../src/onnx/index.js';
import { quantize } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { ROOT } from '../helpers/fixtures.js';
import { outputSqnr } from './fp16-helpers.js';

const zoo = path.join(ROOT, 'fixtures', 'zoo');
const models = fs.existsSync(zoo) ? fs.readdirSync(zoo).filter((f) => f.endsWith('.onnx')).sort() : [];
const calibOf = (f: string): string => path.join(ROOT, 'calibration', 'zoo', f.replace(/(\.ort)?\.onnx$/, ''), 'calib');
const runnable = models.filter((f) => fs.existsSync(calibOf(f)));

describe.skipIf(runnable.length === 0)('fp16 on the exporter zoo', () => {
  for (const f of runnable) {
    it(`${f}: runs in onnxruntime-node (default optimization) with SQNR >= 40 dB on every output`, async () => {
      const float = loadModel(path.join(zoo, f));
      const { model } = await pipeline([quantize({ scheme: 'fp16', cacheDir: false })]).apply(float, { calibration: calibOf(f) });
      const written = modelFromBytes(modelToBytes(model));
      const { sqnr } = await outputSqnr(float, written, openDataset(calibOf(f)));
      expect(Object.keys(sqnr).length).toBe(float.graph.outputs.length);
      for (const [o, db] of Object.entries(sqnr)) expect(db, `${f} ${o}`).toBeGreaterThanOrEqual(40);
      expect([...written.graph.initializers].some((v) => v.initializer!.dtype === DataType.FLOAT16)).toBe(true);
    }, 60_000);
  }
});
