// Shared by the method-pass tests: the bundled outlier ViT with a few calibration samples, and the
// initializers of a model as comparable strings (equal initializers: the same decisions written).
import * as path from 'node:path';
import { openDataset, type Dataset } from '../../src/data/dataset.js';
import type { Model } from '../../src/ir/model.js';
import { ROOT } from '../helpers/fixtures.js';

/** The bundled ViT with a 60x outlier channel folded in (fixtures/make_outlier_fixture.mjs): a reparameterization has work to do, and its patch-embedding Conv is rewritten as a MatMul by every quantizing pass. */
export const vitFile = path.join(ROOT, 'fixtures', 'vit_mnist_outlier.onnx');

/** The first `n` samples of the ViT's calibration set. */
export function vitCalibration(n = 16): Dataset {
  const d = openDataset(path.join(ROOT, 'calibration/vit_mnist/calib'));
  return { path: d.path, size: Math.min(n, d.size), read: (i) => d.read(i), where: (i) => d.where(i) };
}

/** Every initializer as [name, base64 bytes]. */
export function initializers(m: Model): [string, string][] {
  return m.graph.initializers.map((v) => [v.name, Buffer.from(v.initializer!.bytes).toString('base64')]);
}
