import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { evaluate } from '../validate/evaluate.js';
import { describeLm } from '../validate/gate-report.js';
import { type LmMetricName, STREAM_METRICS, prepareLmMetrics } from '../validate/lm-metrics.js';
import { METRICS, isMetricName, type MetricName } from '../validate/metrics.js';
import { type LmFlags, addLmOptions, lmOptions } from './lm-options.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

const EVAL_METRICS = [...METRICS, ...STREAM_METRICS];

interface EvalFlags extends LmFlags, RawDataFlags {
  data?: string;
  dataText?: string;
  dataImages?: string;
  metric: string;
  batchSize: string;
  threads?: string;
  output?: string;
  json?: boolean;
}

export function registerEval(program: Command): void {
  const command = program
    .command('eval')
    .description('run a model over a labelled dataset and print metrics')
    .argument('<model>', 'ONNX model file, or a model folder (docs/byo.md)')
    .option('--data <path>', 'dataset: folder of test_data_set_N samples, or .npz/.npy (or --data-text / --data-images)')
    .option('--metric <names>', `comma-separated metrics: ${EVAL_METRICS.join(', ')}`, 'top1')
    .option('--batch-size <n>', 'samples per onnxruntime run', '32')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--output <name>', 'model output holding the scores (default: the first)')
    .option('--json', 'print one JSON object');
  addLmOptions(addRawDataFlags(command, 'data', 'dataset'), false).action((modelPath: string, opts: EvalFlags) =>
    runCommand(async (signal) => {
      modelPath = modelFile(modelPath);
      const metrics = opts.metric.split(',').map((s) => s.trim());
      const bad = metrics.find((m) => !(EVAL_METRICS as readonly string[]).includes(m));
      if (bad) throw new UserError(`unknown metric '${bad}' (choose from ${EVAL_METRICS.join(', ')}; gen-agreement and the other generation metrics compare two models: slimformer gate)`);
      const labelMetrics = metrics.filter(isMetricName);
      const streamMetrics = metrics.filter((m): m is LmMetricName => !isMetricName(m));
      const anyData = opts.data !== undefined || opts.dataText !== undefined || opts.dataImages !== undefined;
      if (!anyData && (labelMetrics.length > 0 || opts.tokens === undefined)) {
        throw new UserError(labelMetrics.length > 0 ? `metric ${labelMetrics[0]} needs a labelled dataset (--data, --data-text or --data-images)` : 'give --data DATASET, --data-text FILE, --data-images DIR or --tokens FILE.npy');
      }
      const threads = opts.threads ? positiveInt(opts.threads, '--threads') : undefined;
      const batchSize = positiveInt(opts.batchSize, '--batch-size');
      const lm = lmOptions(opts);
      const model = loadModel(modelPath);
      const dataset = anyData ? await datasetFromFlags({ tensors: opts.data, text: opts.dataText, images: opts.dataImages, flags: '--data, --data-text, --data-images' }, opts, model, modelPath) : undefined;
      const runLm = streamMetrics.length > 0 ? prepareLmMetrics([{ model, who: `model ${modelPath}` }], streamMetrics, lm, dataset) : undefined;
      const progress = opts.json ? silentProgress : consoleProgress();
      const result =
        labelMetrics.length > 0 ? await evaluate(model, dataset!, { metrics: labelMetrics as MetricName[], batchSize, threads, output: opts.output, progress, signal }) : undefined;
      const measured = runLm ? await runLm(threads, signal) : undefined;
      const all = { ...result?.metrics, ...measured?.values[0] };
      const ordered = Object.fromEntries(metrics.map((m) => [m, all[m]!]));
      if (opts.json) {
        process.stdout.write(JSON.stringify({ model: modelPath, ...result, metrics: ordered, ...(measured ? { lm: measured.setup } : {}) }) + '\n');
      } else {
        if (result) process.stdout.write(`${modelPath} on ${result.dataset}: ${result.samples} samples, ${result.positions} labelled positions (output '${result.output}')\n`);
        if (measured) process.stdout.write(`${modelPath}: ${describeLm(measured.setup)}\n`);
        const width = Math.max(11, ...metrics.map((m) => m.length));
        for (const [k, v] of Object.entries(ordered)) process.stdout.write(`  ${k.padEnd(width)} ${v.toFixed(6)}\n`);
      }
    }),
  );
}

export function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UserError(`${flag} takes a positive whole number, not '${text}'`);
  return n;
}
