// Does FlexRound lose to sequential GPTQ because 16 calibration samples are too few? Each
// language model of the zoo is quantized by GPTQ and by FlexRound (their defaults) twice: on its
// 16 calibration samples, and on those plus the second half of its evaluation folder (48); both
// are then scored by KL to the float model on the first half of the evaluation folder, which
// neither saw. Issue 19's FlexRound-against-GPTQ point is read from this.
//
//   npm run build && node dist/benchmarks/flexround-calib-size.js [--models llama_moby,...]
//       [--scheme w3] [--threads 1]
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset, type Dataset } from '../src/data/dataset.js';
import { datasetView } from '../src/data/split.js';
import { loadModel } from '../src/onnx/index.js';
import { quantize, type QuantizePassOptions } from '../src/passes/quantize.js';
import { pipeline } from '../src/pipeline/pipeline.js';
import { FloatReference } from '../src/validate/fidelity.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const models = arg('--models', 'llama_moby,qwen2_moby,hf_gpt2_moby,phi_moby').split(',');
const scheme = arg('--scheme', 'w3') as QuantizePassOptions['scheme'];
const threads = Number(arg('--threads', '1'));

const slice = (d: Dataset, from: number, to: number): Dataset => datasetView(d, Array.from({ length: to - from }, (_, i) => from + i));
const join = (a: Dataset, b: Dataset): Dataset => ({ path: a.path, size: a.size + b.size, read: (i) => (i < a.size ? a.read(i) : b.read(i - a.size)), where: (i) => (i < a.size ? a.where(i) : b.where(i - a.size)) });

console.log(`| model | calibration samples | gptq KL | flexround KL | flexround / gptq |`);
console.log(`|---|---|---|---|---|`);
for (const name of models) {
  const file = path.join(ROOT, 'fixtures', 'zoo', `${name}.onnx`);
  const calib = openDataset(path.join(ROOT, 'calibration', 'zoo', name, 'calib'));
  const evalData = openDataset(path.join(ROOT, 'calibration', 'zoo', name, 'eval'));
  const half = Math.floor(evalData.size / 2);
  const test = slice(evalData, 0, half);
  const reference = await FloatReference.create(loadModel(file), test, { threads });
  for (const data of [calib, join(calib, slice(evalData, half, evalData.size))]) {
    const kl: number[] = [];
    for (const method of ['gptq', 'flexround'] as const) {
      const { model } = await pipeline([quantize({ scheme, method, cacheDir: false, verifySamples: 4 })]).apply(loadModel(file), { calibration: data, threads });
      kl.push((await reference.compare(model, test, { threads })).kl);
    }
    console.log(`| ${name} | ${data.size} | ${kl[0]!.toExponential(3)} | ${kl[1]!.toExponential(3)} | ${(kl[1]! / kl[0]!).toFixed(2)} |`);
  }
}
console.log(`\n${scheme}, defaults of both methods; KL(float || quantized) per token on the first half of each eval folder (held out from both calibration sets).`);
