import type { Command } from 'commander';
import { analyzeModel } from '../analyze/analyze.js';
import { gateAnalysis } from '../analyze/gate.js';
import { analysisHtml, analysisText } from '../analyze/render.js';
import { type WhatIfClipped, whatIfClippedSoftmax } from '../analyze/what-if.js';
import { openDataset } from '../data/dataset.js';
import { UserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { writeFileAtomic } from '../report/junit.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { positiveInt } from './eval.js';
import { OutputPlan } from './output-paths.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

interface AnalyzeFlags extends RawDataFlags {
  calib?: string;
  calibText?: string;
  calibImages?: string;
  json?: boolean;
  html?: string;
  maxKurtosis?: string;
  maxInfNorm?: string;
  samples?: string;
  batchSize: string;
  threads?: string;
  outlierFactor: string;
  minSqnr: string;
  whatIfClipped?: string;
  eval?: string;
}

function number(text: string | undefined, flag: string, positive = true): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || (positive && n <= 0)) throw new UserError(`${flag} takes a ${positive ? 'positive ' : ''}number, not '${text}'`);
  return n;
}

export function registerAnalyze(program: Command): void {
  const cmd = program
    .command('analyze')
    .description('measure activation outliers, attention heads and predicted 8-bit SQNR: will this model quantize?')
    .argument('<model>', 'ONNX model file, or a model folder (docs/byo.md)')
    .option('--calib <path>', 'calibration data: folder of test_data_set_N samples, or .npz/.npy (or --calib-text / --calib-images)')
    .option('--json', 'print one JSON object')
    .option('--html <file>', 'also write an HTML report')
    .option('--max-kurtosis <k>', 'exit 1 when any layer\'s kurtosis exceeds k')
    .option('--max-inf-norm <x>', 'exit 1 when any layer\'s inf norm exceeds x')
    .option('--samples <n>', 'calibration samples to use (default: all)')
    .option('--batch-size <n>', 'samples per onnxruntime run', '8')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--outlier-factor <f>', 'outlier channel: max |x| over f times the median channel\'s', '6')
    .option('--min-sqnr <db>', 'predicted SQNR (dB) under which w8a8 per-tensor is said to break a layer', '20')
    .option('--what-if-clipped <gamma[:zeta]>', 'also analyze the model with every softmax replaced by clipped softmax')
    .option('--eval <path>', 'labelled data to measure the accuracy change of --what-if-clipped (top1)');
  addRawDataFlags(cmd, 'calib', 'calibration data')
    .action((modelPath: string, flags: AnalyzeFlags) =>
      runCommand(async (signal) => {
        modelPath = modelFile(modelPath);
        const maxKurtosis = number(flags.maxKurtosis, '--max-kurtosis');
        const maxInfNorm = number(flags.maxInfNorm, '--max-inf-norm');
        let clip: { gamma: number; zeta: number } | undefined;
        if (flags.whatIfClipped !== undefined) {
          const [g, z] = flags.whatIfClipped.split(':');
          const gamma = number(g, '--what-if-clipped gamma', false)!;
          const zeta = z === undefined ? 1 : number(z, '--what-if-clipped zeta')!;
          if (gamma > 0 || zeta < 1) throw new UserError(`--what-if-clipped takes gamma <= 0 and zeta >= 1, not '${flags.whatIfClipped}'`);
          clip = { gamma, zeta };
        }
        if (flags.eval && !clip) throw new UserError('--eval is used with --what-if-clipped');
        const outputs = OutputPlan.check(
          [flags.html ? { flag: '--html', file: flags.html, what: 'HTML report' } : undefined],
          [{ file: modelPath, what: 'input model' }, flags.calib ? { file: flags.calib, what: 'calibration dataset' } : undefined, flags.eval ? { file: flags.eval, what: 'evaluation dataset' } : undefined],
        );
        const model = loadModel(modelPath);
        const calibration = await datasetFromFlags({ tensors: flags.calib, text: flags.calibText, images: flags.calibImages, flags: '--calib, --calib-text, --calib-images' }, flags, model, modelPath);
        if (!calibration) throw new UserError('give the calibration data: --calib PATH, --calib-text FILE or --calib-images DIR');
        const options = {
          samples: flags.samples ? positiveInt(flags.samples, '--samples') : undefined,
          batchSize: positiveInt(flags.batchSize, '--batch-size'),
          threads: flags.threads ? positiveInt(flags.threads, '--threads') : undefined,
          outlierFactor: number(flags.outlierFactor, '--outlier-factor'),
          minSqnr: number(flags.minSqnr, '--min-sqnr', false),
          progress: flags.json ? silentProgress : consoleProgress(),
          signal,
        };
        const result = await analyzeModel(model, calibration, options);
        result.model = modelPath;
        let whatIf: WhatIfClipped | undefined;
        if (clip) {
          whatIf = await whatIfClippedSoftmax(model, calibration, { ...options, ...clip, before: result, evalData: flags.eval ? openDataset(flags.eval) : undefined });
        }
        const gate = gateAnalysis(result, { maxKurtosis, maxInfNorm });
        if (flags.html) await outputs.write(() => writeFileAtomic(flags.html!, analysisHtml(result), 'HTML report'));
        if (flags.json) {
          process.stdout.write(JSON.stringify({ ...result, ...(whatIf ? { whatIfClipped: whatIf } : {}), gate: { maxKurtosis: maxKurtosis ?? null, maxInfNorm: maxInfNorm ?? null, ...gate } }, jsonSafe) + '\n');
        } else {
          process.stdout.write(analysisText(result));
          if (whatIf) {
            process.stdout.write(
              `\nwhat if clipped softmax (gamma ${whatIf.gamma}, zeta ${whatIf.zeta}) on ${whatIf.rewritten.length} softmax nodes:\n` +
                `  max inf norm ${whatIf.before.maxInfNorm.toFixed(3)} -> ${whatIf.after.maxInfNorm.toFixed(3)}; max kurtosis ${whatIf.before.maxKurtosis.toFixed(2)} -> ${whatIf.after.maxKurtosis.toFixed(2)}\n` +
                (whatIf.accuracy ? `  ${whatIf.accuracy.metric} ${whatIf.accuracy.before.toFixed(4)} -> ${whatIf.accuracy.after.toFixed(4)}\n` : ''),
            );
          }
          for (const f of gate.failures) process.stdout.write(`FAIL: ${f}\n`);
          if (maxKurtosis !== undefined || maxInfNorm !== undefined) process.stdout.write(gate.passed ? 'PASS: within the outlier limits\n' : '');
        }
        return gate.passed ? 0 : 1;
      }),
    );
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}
