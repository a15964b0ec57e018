// Methods as passes, measured (issue 19, part 2): each chain of method passes against each
// method alone, on the trained zoo models, in one run and one table. A chain is written with
// '>' between passes (smoothquant>gptq is pipeline([smoothQuant(), gptq(...)])); every pass is
// the library's factory with its defaults, given the scheme's bits.
//
//   npm run build && node dist/benchmarks/method-chains.js [--models hf_bert_spam,...,phi_moby]
//       [--schemes w4a8] [--methods rtn,smoothquant,gptq,smoothquant>gptq,repquant,flexround,repquant>flexround]
//       [--eval 64] [--threads N] [--json results.jsonl]
//
// Models: the trained zoo members by default; the outlier variants of the ViTs
// (vit_mnist_outlier, tv_vit_mnist_outlier: one post-norm channel scaled 60x and folded back,
// fixtures/make_outlier_fixture.mjs) are where a reparameterization has something to do.
//
// Schemes: w4a8 (scheme w8a8 with 4-bit weights per output channel, 8-bit static activations),
// or a weight-only scheme (w4, w3; smoothquant and repquant need activations and are skipped there).
// Cell: nll (nats per sample for the classifiers, per token for the language models) / top-1 %
// on the model's eval folder; KL to float (mean KL(float softmax ‖ quantized softmax) per sample or
// token, validate/fidelity.ts) and argmax agreement with float; seconds to quantize. Rank: by KL
// within the row (1 = closest to float). For the language models, the share of round to nearest's
// nll increase each method recovers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataset, type Dataset } from '../src/data/dataset.js';
import { loadModel } from '../src/onnx/index.js';
import { flexRound } from '../src/passes/flexround.js';
import { gptq } from '../src/passes/gptq.js';
import type { Pass } from '../src/passes/pass.js';
import { quantize } from '../src/passes/quantize.js';
import { repQuant } from '../src/passes/repquant.js';
import { smoothQuant } from '../src/passes/smoothquant.js';
import { pipeline } from '../src/pipeline/pipeline.js';
import { evaluate } from '../src/validate/evaluate.js';
import { FloatReference } from '../src/validate/fidelity.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const models = arg('--models', 'hf_bert_spam,tv_vit_mnist,hf_gpt2_moby,llama_moby,qwen2_moby,phi_moby').split(',');
const schemes = arg('--schemes', 'w4a8').split(',');
const methods = arg('--methods', 'rtn,smoothquant,gptq,smoothquant>gptq,repquant,flexround,repquant>flexround').split(',');
const evalSamples = Number(arg('--eval', '64'));
const threads = args.includes('--threads') ? Number(arg('--threads', '2')) : undefined;
const jsonOut = args.includes('--json') ? arg('--json', '') : null;

function head(d: Dataset, n: number): Dataset {
  return n >= d.size ? d : { path: d.path, size: n, read: (i) => d.read(i), where: (i) => d.where(i) };
}

/** The passes of a chain under a scheme; null when a pass needs quantized activations and the scheme has none. */
function passesOf(chain: string, scheme: string): Pass[] | null {
  const aBits = scheme === 'w4a8' ? { aBits: 8 as const } : {};
  const bits = (scheme === 'w4a8' ? 4 : Number(scheme.slice(1))) as 4 | 3 | 2 | 8;
  const common = { bits, ...aBits, cacheDir: false as const, verifySamples: 4 };
  const out: Pass[] = [];
  for (const step of chain.split('>')) {
    if ((step === 'smoothquant' || step === 'repquant') && scheme !== 'w4a8') return null;
    if (step === 'smoothquant') out.push(smoothQuant({ cacheDir: false }));
    else if (step === 'repquant') out.push(repQuant({ cacheDir: false }));
    else if (step === 'gptq') out.push(gptq(common));
    else if (step === 'flexround') out.push(flexRound(common));
    // FlexRound from round to nearest (the start before GPTQ's levels became the default)
    else if (step === 'flexround:start=rtn') out.push(flexRound({ ...common, start: 'rtn' }));
    else if (step !== 'rtn') throw new Error(`unknown step ${step}`);
  }
  // a chain that ends in a reparameterization (or rtn) is written by quantize with the scheme
  const last = out.at(-1);
  if (!last || last.planRole === 'reparameterize') out.push(quantize({ ...(scheme === 'w4a8' ? { scheme: 'w8a8', weightBits: 4 } : { scheme: scheme as 'w4' }), ...(out.length === 0 ? { method: 'rtn' as const } : {}), cacheDir: false, verifySamples: 4 }));
  return out;
}

/** The model file and its data: a bundled fixture or a zoo member; an `_outlier` variant (fixtures/make_outlier_fixture.mjs) reads its original's data. */
function locate(name: string): { file: string; data: string } | null {
  const base = name.replace(/_outlier$/, '');
  for (const [file, data] of [[path.join(ROOT, 'fixtures', `${name}.onnx`), path.join(ROOT, 'calibration', base)], [path.join(ROOT, 'fixtures', `${name}.onnx`), path.join(ROOT, 'calibration', 'zoo', base)], [path.join(ROOT, 'fixtures', 'zoo', `${name}.onnx`), path.join(ROOT, 'calibration', 'zoo', base)]] as const) {
    if (fs.existsSync(file) && fs.existsSync(path.join(data, 'calib'))) return { file, data };
  }
  return null;
}

interface Cell { model: string; scheme: string; method: string; nll: number; top1: number; kl: number; agree: number; seconds: number }
const cells: Cell[] = [];
const floats = new Map<string, { nll: number; top1: number; eval: number; lm: boolean }>();
if (jsonOut) fs.writeFileSync(jsonOut, '');
for (const name of models) {
  const where = locate(name);
  if (!where) {
    console.error(`${name}: no model with its calibration folder, skipped`);
    continue;
  }
  const lm = /moby/.test(name);
  const calib = openDataset(path.join(where.data, 'calib'));
  const evalData = head(openDataset(path.join(where.data, 'eval')), evalSamples);
  const floatModel = loadModel(where.file);
  const f = await evaluate(floatModel, evalData, { metrics: ['nll', 'top1'], batchSize: 32, threads });
  floats.set(name, { nll: f.metrics.nll!, top1: f.metrics.top1!, eval: evalData.size, lm });
  const reference = await FloatReference.create(floatModel, evalData, { batchSize: 32, threads });
  for (const scheme of schemes) {
    for (const method of methods) {
      const passes = passesOf(method, scheme);
      if (!passes) continue;
      const t0 = performance.now();
      let model;
      try {
        ({ model } = await pipeline(passes).apply(loadModel(where.file), { calibration: calib, threads, floor: false }));
      } catch (e) {
        console.error(`${name} ${scheme} ${method}: failed: ${(e as Error).message}`);
        continue;
      }
      const seconds = (performance.now() - t0) / 1000;
      const q = await evaluate(model, evalData, { metrics: ['nll', 'top1'], batchSize: 32, threads });
      const x = await reference.compare(model, evalData, { threads });
      const cell: Cell = { model: name, scheme, method, nll: q.metrics.nll!, top1: q.metrics.top1!, kl: x.kl, agree: x.agreement, seconds };
      cells.push(cell);
      if (jsonOut) fs.appendFileSync(jsonOut, JSON.stringify(cell) + '\n');
      console.error(`${name} ${scheme} ${method}: nll ${cell.nll.toFixed(4)} top1 ${(100 * cell.top1).toFixed(1)}; KL ${cell.kl.toExponential(2)}, agree ${(100 * cell.agree).toFixed(1)}% (${seconds.toFixed(1)} s)`);
    }
  }
}

const ms = [...new Set(cells.map((c) => c.method))];
const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const out: string[] = ['Cell: nll / top-1 %; KL to float, agreement %; seconds to quantize; rank by KL in the row (1 = closest to float).', ''];
out.push(`| model | scheme | ${ms.join(' | ')} |`, `|---|---|${ms.map(() => '---').join('|')}|`);
const ranks = new Map<string, number[]>(ms.map((m) => [m, []]));
const recovered: string[] = [];
for (const [model, fm] of floats) {
  out.push(`| ${model} | float | ${fm.nll.toFixed(4)} / ${(100 * fm.top1).toFixed(1)} (${fm.eval} eval samples${fm.lm ? ', per token' : ''}) |${ms.slice(1).map(() => ' |').join('')}`);
  for (const scheme of new Set(cells.filter((c) => c.model === model).map((c) => c.scheme))) {
    const row = cells.filter((c) => c.model === model && c.scheme === scheme);
    const sorted = [...row].sort((a, b) => a.kl - b.kl);
    const rank = (c: Cell): number => sorted.indexOf(c) + 1;
    for (const c of row) ranks.get(c.method)!.push(rank(c));
    const cellOf = (m: string): string => {
      const c = row.find((d) => d.method === m);
      return c ? `${c.nll.toFixed(4)} / ${(100 * c.top1).toFixed(1)}; KL ${c.kl.toExponential(2)}, ${(100 * c.agree).toFixed(1)}%; ${c.seconds.toFixed(1)} s; #${rank(c)}` : '-';
    };
    out.push(`| ${model} | ${scheme} | ${ms.map(cellOf).join(' | ')} |`);
    const rtn = row.find((c) => c.method === 'rtn');
    if (fm.lm && rtn && rtn.nll > fm.nll) recovered.push(`| ${model} | ${scheme} | ${ms.map((m) => { const c = row.find((d) => d.method === m); return c ? `${Math.round((100 * (rtn.nll - c.nll)) / (rtn.nll - fm.nll))}%` : '-'; }).join(' | ')} |`);
  }
}
out.push('', `| median rank (by KL) | ${ms.join(' | ')} |`, `|---|${ms.map(() => '---').join('|')}|`);
out.push(`| all rows | ${ms.map((m) => `${median(ranks.get(m)!)} (${ranks.get(m)!.length} rows)`).join(' | ')} |`);
if (recovered.length > 0) out.push('', "Share of round to nearest's nll increase recovered (language models):", '', `| model | scheme | ${ms.join(' | ')} |`, `|---|---|${ms.map(() => '---').join('|')}|`, ...recovered);
console.log(out.join('\n'));
