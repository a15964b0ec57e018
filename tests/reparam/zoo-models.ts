import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers/fixtures.js';

export interface ZooModel {
  name: string;
  file: string;
  calib: string;
  eval: string;
}

/**
 * The exporter-written models under fixtures/zoo/ (encoders and decoders), each with its data
 * folder calibration/zoo/<name>/ (an onnxruntime-optimized `<name>.ort.onnx` uses its source's
 * data). Empty where the zoo is not in the checkout.
 */
export function zooModels(): ZooModel[] {
  const dir = path.join(ROOT, 'fixtures', 'zoo');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.onnx'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -'.onnx'.length);
      const data = path.join(ROOT, 'calibration', 'zoo', name.replace(/\.ort$/, ''));
      return { name, file: path.join(dir, f), calib: path.join(data, 'calib'), eval: path.join(data, 'eval') };
    })
    .filter((m) => fs.existsSync(m.calib));
}
