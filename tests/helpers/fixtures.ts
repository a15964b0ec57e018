import * as fs from 'node:fs';
import * as path from 'node:path';

export interface FixtureArchitecture {
  blocks: number;
  heads: number;
  headSize: number;
  hidden: number;
  mlpWidth: number;
  activation: string;
  norm: 'pre-ln' | 'post-ln';
  opset: number;
}

export interface Fixture {
  name: string;
  model: string;
  /** Folder of the evaluation samples the metric was recorded on. */
  dataset: string;
  calibration: string;
  samples: number;
  metrics: Record<string, number>;
  architecture: FixtureArchitecture;
}

export const ROOT = path.resolve(import.meta.dirname, '../..');

/** The bundled models, read from fixtures/<name>.metrics.json (written by the training script). */
export function fixtures(): Fixture[] {
  const dir = path.join(ROOT, 'fixtures');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.metrics.json'))
    .sort()
    .map((f) => {
      const name = f.replace(/\.metrics\.json$/, '');
      const meta = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      return {
        name,
        model: path.join(dir, `${name}.onnx`),
        dataset: path.join(ROOT, meta.dataset),
        calibration: path.join(ROOT, 'calibration', name, 'calib'),
        samples: meta.samples,
        metrics: meta.metrics,
        architecture: meta.architecture,
      };
    });
}
