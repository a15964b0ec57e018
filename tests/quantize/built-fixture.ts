import * as path from 'node:path';
import { openDataset, type Dataset } from '../../src/data/dataset.js';
import { saveModel } from '../../src/onnx/index.js';
import { writeSamples } from '../helpers/samples.js';
import { tempDir } from '../helpers/tmp.js';
import { buildTransformer, type BuiltTransformer, type TransformerOptions } from '../helpers/transformer-builder.js';

/** A built transformer saved to a temp folder with `samples` random calibration samples beside it. */
export function builtFixture(options: TransformerOptions, samples: number): { dir: string; built: BuiltTransformer; modelFile: string; calibDir: string; calibration: Dataset } {
  const dir = tempDir();
  const built = buildTransformer(options);
  const calibDir = path.join(dir, 'calib');
  writeSamples(calibDir, () => built.feeds(1), samples);
  const modelFile = path.join(dir, 'model.onnx');
  saveModel(built.model, modelFile);
  return { dir, built, modelFile, calibDir, calibration: openDataset(calibDir) };
}
