// Does FlexRound fit the calibration samples rather than the model? Each zoo decoder is
// quantized by GPTQ and by FlexRound (the library's defaults, settings after colons as in
// flexround-compare: flexround:minTokensPerInput=0 learns whatever the data), and each result's
// KL to the float model is measured on the calibration samples it was fitted on and on the
// evaluation samples it never saw. Then the evaluation samples are cut into slices of 4: in how
// many slices is the method that is closer to float over all of them also closer on the slice?
// (A held-out split of a few calibration samples could decide between the two only as often.)
// docs/flexround.md, "Too little calibration data", reads its figures from this.
//
//   npm run build && node dist/benchmarks/flexround-overfit.js [--models llama_moby,...]
//       [--scheme w3] [--methods gptq,flexround:minTokensPerInput=0] [--threads 1]
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset } from '../src/data/dataset.js';
import { datasetView } from '../src/data/split.js';
import type { Model } from '../src/ir/model.js';
import { loadModel } from '../src/onnx/index.js';
import { quantize, type QuantizePassOptions } from '../src/passes/quantize.js';
import { pipeline } from '../src/pipeline/pipeline.js';
import type { FlexRoundSettings } from '../src/quantize/scheme.js';
import { FloatReference } from '../src/validate/fidelity.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const models = arg('--models', 'llama_moby,qwen2_moby,hf_gpt2_moby,phi_moby').split(',');
const scheme = arg('--scheme', 'w3') as QuantizePassOptions['scheme'];
const methods = arg('--methods', 'gptq,flexround:minTokensPerInput=0').split(',');
const threads = Number(arg('--threads', '1'));
const SLICE = 4;

/** `gptq` or `flexround` with FlexRound settings after colons: `flexround:minTokensPerInput=0:lr=0.001`. */
function optionsOf(spec: string): QuantizePassOptions {
  const [method, ...settings] = spec.split(':') as [string, ...string[]];
  if (method !== 'gptq' && method !== 'flexround') throw new Error(`unknown method ${method} (gptq or flexround)`);
  const flexround = Object.fromEntries(settings.map((kv) => kv.split('=')).map(([k, v]) => [k, Number.isNaN(Number(v)) ? v : Number(v)])) as FlexRoundSettings;
  return { scheme, method, flexround, cacheDir: false, verifySamples: 4 };
}

console.log(`| model | method | KL on calibration | KL on evaluation |`);
console.log(`|---|---|---|---|`);
const agreement: string[] = [];
for (const name of models) {
  const file = path.join(ROOT, 'fixtures', 'zoo', `${name}.onnx`);
  const calib = openDataset(path.join(ROOT, 'calibration', 'zoo', name, 'calib'));
  const evalData = openDataset(path.join(ROOT, 'calibration', 'zoo', name, 'eval'));
  const onCalib = await FloatReference.create(loadModel(file), calib, { threads });
  const onEval = await FloatReference.create(loadModel(file), evalData, { threads });
  const quantized: Model[] = [];
  const overall: number[] = [];
  for (const spec of methods) {
    const { model } = await pipeline([quantize(optionsOf(spec))]).apply(loadModel(file), { calibration: calib, threads });
    const kc = (await onCalib.compare(model, calib, { threads })).kl;
    const ke = (await onEval.compare(model, evalData, { threads })).kl;
    quantized.push(model);
    overall.push(ke);
    console.log(`| ${name} | ${spec} | ${kc.toExponential(3)} | ${ke.toExponential(3)} |`);
  }
  if (quantized.length !== 2) continue;
  let agree = 0;
  let slices = 0;
  for (let at = 0; at + SLICE <= evalData.size; at += SLICE) {
    const view = datasetView(evalData, Array.from({ length: SLICE }, (_, i) => at + i));
    const reference = await FloatReference.create(loadModel(file), view, { threads });
    const [a, b] = [(await reference.compare(quantized[0]!, view, { threads })).kl, (await reference.compare(quantized[1]!, view, { threads })).kl];
    if (a < b === overall[0]! < overall[1]!) agree++;
    slices++;
  }
  agreement.push(`${name}: ${agree} of ${slices} slices of ${SLICE} evaluation samples order ${methods[0]} and ${methods[1]} as all ${evalData.size} do`);
}
console.log(`\n${scheme}; KL(float || quantized) per token, on the calibration samples each method was fitted on and on the evaluation samples.`);
for (const line of agreement) console.log(line);
