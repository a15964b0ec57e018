// Benchmark: the quality-floor figures (src/validate/quality-floor.ts) of every scheme and
// method on the bundled models, to check the floor lets every legitimate output through.
//
//   npm run build && node dist/benchmarks/quality-floor.js [--fixtures vit_mnist,bert_spam,gpt_moby] [--samples 16] [--skip-prune]
//
// For each fixture: quantize with each scheme (w8a8, w6a6, w4a4, dynamic, w8, w4, w3, w2) and
// method (rtn, gptq; smoothquant and repquant for the static schemes; w2 and w4 also with one
// scale per tensor), then prune (magnitude and AMP at 30% and 50% of the MLP neurons, one
// attention and one MLP sublayer dropped); print end-to-end SQNR and top-1 agreement against
// the float model on the verification samples (the first calibration samples), and the lowest
// of each over all runs. The floors in QUALITY_FLOOR sit below those lowest figures.
import { openDataset } from '../src/data/dataset.js';
import { loadModel } from '../src/onnx/load.js';
import { prune, type PruneOptions } from '../src/passes/prune.js';
import { quantize, type QuantizePassOptions } from '../src/passes/quantize.js';
import { pipeline } from '../src/pipeline/pipeline.js';
import type { Pass } from '../src/passes/pass.js';
import { QUALITY_FLOOR, QUALITY_SAMPLES, judgeQuality, measureQuality } from '../src/validate/quality-floor.js';

const args = process.argv.slice(2);
const arg = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const fixtures = (arg('--fixtures') ?? 'vit_mnist,bert_spam,gpt_moby').split(',');
const samples = Number(arg('--samples') ?? QUALITY_SAMPLES);
const skipPrune = args.includes('--skip-prune');

interface Run {
  label: string;
  pass: Pass;
}

function quantizeRuns(): Run[] {
  const runs: Run[] = [];
  const q = (label: string, o: QuantizePassOptions): void => void runs.push({ label, pass: quantize({ cacheDir: false, ...o }) });
  for (const scheme of ['w8a8', 'w6a6', 'w4a4'] as const) {
    for (const method of ['rtn', 'smoothquant', 'repquant', 'gptq'] as const) q(`${scheme} ${method}`, { scheme, method });
  }
  q('dynamic rtn', { scheme: 'dynamic' });
  q('dynamic gptq', { scheme: 'dynamic', method: 'gptq' });
  for (const scheme of ['w8', 'w4', 'w3', 'w2'] as const) {
    for (const method of ['rtn', 'gptq'] as const) q(`${scheme} ${method}`, { scheme, method });
  }
  q('w4 rtn per-tensor', { scheme: 'w4', perChannel: false });
  q('w2 rtn per-tensor', { scheme: 'w2', perChannel: false });
  q('w2 gptq per-tensor', { scheme: 'w2', method: 'gptq', perChannel: false });
  return runs;
}

function pruneRuns(): Run[] {
  const p = (label: string, o: PruneOptions): Run => ({ label, pass: prune(o) });
  return [
    p('prune magnitude 30%', { method: 'magnitude', ratio: 0.3 }),
    p('prune magnitude 50%', { method: 'magnitude', ratio: 0.5 }),
    p('prune mlp 30%', { method: 'mlp', ratio: 0.3 }),
    p('prune mlp 50%', { method: 'mlp', ratio: 0.5 }),
    p('prune mlp (entropy)', { method: 'mlp' }),
    p('prune optin flops 0.6', { method: 'optin', flops: 0.6 }),
    p('prune drop-attention 1', { method: 'drop-attention', count: 1 }),
    p('prune drop-mlp 1', { method: 'drop-mlp', count: 1 }),
  ];
}

const lowest = { quantize: { sqnr: Infinity, agreement: Infinity }, prune: { sqnr: Infinity, agreement: Infinity } };
console.log(`floor: SQNR ${QUALITY_FLOOR.floor.sqnr} dB, agreement ${QUALITY_FLOOR.floor.agreement}; warning below SQNR ${QUALITY_FLOOR.warnBelow.sqnr} dB, agreement ${QUALITY_FLOOR.warnBelow.agreement}; ${samples} verification samples`);
for (const name of fixtures) {
  const model = loadModel(`fixtures/${name}.onnx`);
  const calibration = openDataset(`calibration/${name}/calib`);
  for (const kind of ['quantize', 'prune'] as const) {
    if (kind === 'prune' && skipPrune) continue;
    for (const run of kind === 'quantize' ? quantizeRuns() : pruneRuns()) {
      let line: string;
      try {
        const { model: out } = await pipeline([run.pass]).apply(model, { calibration, floor: false });
        const m = await measureQuality(model, out, calibration, { samples });
        const { verdict } = judgeQuality(m.figures);
        lowest[kind].sqnr = Math.min(lowest[kind].sqnr, m.figures.sqnr);
        lowest[kind].agreement = Math.min(lowest[kind].agreement, m.figures.agreement);
        line = `SQNR ${m.figures.sqnr.toFixed(2).padStart(7)} dB  agreement ${(100 * m.figures.agreement).toFixed(1).padStart(5)}% (${m.positions} positions)  ${verdict}`;
      } catch (e) {
        line = `not run: ${e instanceof Error ? e.message : String(e)}`;
      }
      console.log(`${name.padEnd(10)} ${run.label.padEnd(26)} ${line}`);
    }
  }
}
for (const kind of ['quantize', 'prune'] as const) {
  console.log(`lowest (${kind}): SQNR ${lowest[kind].sqnr.toFixed(2)} dB, agreement ${(100 * lowest[kind].agreement).toFixed(1)}%`);
}
