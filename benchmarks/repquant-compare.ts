// Comparison: top1 of float / RTN / SmoothQuant / RepQuant at w8a8, w6a6 and w4a4 on the image
// and text classifiers and on the outlier variant of the image classifier, measured in one run.
//
//   npm run build && node dist/benchmarks/repquant-compare.js [--models vit_mnist,bert_spam,vit_mnist_outlier]
//       [--schemes w8a8,w6a6,w4a4] [--methods rtn,smoothquant,repquant,repquant+gptq] [--alpha 0.5]
//       [--softmax none|uniform|log2]
//
// A method with '+gptq' adds GPTQ weight reconstruction (--reconstruct gptq).
//
// Calibration: calibration/<base>/calib (128 samples); evaluation: calibration/<base>/eval (500).
// The outlier fixture (fixtures/vit_mnist_outlier.onnx, made by fixtures/make_outlier_fixture.mjs)
// computes the same function as vit_mnist and reuses its data.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset } from '../src/data/dataset.js';
import { loadModel } from '../src/onnx/index.js';
import { quantize } from '../src/passes/quantize.js';
import { pipeline } from '../src/pipeline/pipeline.js';
import type { Method, Scheme, SoftmaxMode } from '../src/quantize/scheme.js';
import { evaluate } from '../src/validate/evaluate.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const models = arg('--models', 'vit_mnist,bert_spam,vit_mnist_outlier').split(',');
const schemes = arg('--schemes', 'w8a8,w6a6,w4a4').split(',') as Scheme[];
const alpha = Number(arg('--alpha', '0.5'));
const softmax = arg('--softmax', 'none') as SoftmaxMode;
const methods = arg('--methods', 'rtn,smoothquant,repquant,repquant+gptq').split(',');

const pct = (x: number): string => (100 * x).toFixed(1);
const rows: string[] = [];
rows.push(`| model | float | ${schemes.flatMap((s) => methods.map((m) => `${s} ${m}`)).join(' | ')} |`);
rows.push(`|---|---|${schemes.flatMap(() => methods.map(() => '---')).join('|')}|`);
for (const name of models) {
  const file = path.join(ROOT, 'fixtures', `${name}.onnx`);
  if (!fs.existsSync(file)) {
    console.error(`${name}: ${file} not found, skipped`);
    continue;
  }
  const base = name.replace(/_outlier$/, '');
  const calib = openDataset(path.join(ROOT, 'calibration', base, 'calib'));
  const evalData = openDataset(path.join(ROOT, 'calibration', base, 'eval'));
  const float = loadModel(file);
  const f = await evaluate(float, evalData, { metrics: ['top1'], batchSize: 64 });
  const cells: string[] = [pct(f.metrics.top1!)];
  for (const scheme of schemes) {
    for (const method of methods) {
      const t0 = performance.now();
      const { model } = await pipeline([quantize({ scheme, method: method.replace('+gptq', '') as Method, reconstruct: method.endsWith('+gptq') ? 'gptq' : 'none', alpha, softmax, cacheDir: false, verifySamples: 4 })]).apply(loadModel(file), { calibration: calib });
      const q = await evaluate(model, evalData, { metrics: ['top1'], batchSize: 64 });
      cells.push(pct(q.metrics.top1!));
      console.error(`${name} ${scheme} ${method}: top1 ${pct(q.metrics.top1!)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    }
  }
  rows.push(`| ${name} | ${cells.join(' | ')} |`);
}
console.log(`top1 (%) on 500 evaluation samples; SmoothQuant alpha ${alpha}; softmax ${softmax}; weights per output channel (6/4-bit: MSE-searched grids), activations per tensor`);
console.log(rows.join('\n'));
