import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { evaluate } from '../validate/evaluate.js';
import { METRICS, isMetricName, type MetricName } from '../validate/metrics.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';

export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('run a model over a labelled dataset and print metrics')
    .argument('<model>', 'ONNX model file')
    .option('--data <path>', 'dataset: folder of test_data_set_N samples, or .npz/.npy (or --data-text / --data-images)')
    .option('--metric <names>', `comma-separated metrics: ${METRICS.join(', ')}`, 'top1')
    .option('--batch-size <n>', 'samples per onnxruntime run', '32')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--output <name>', 'model output holding the scores (default: the first)')
    .option('--json', 'print one JSON object');
  addRawDataFlags(cmd, 'data', 'dataset')
    .action((modelPath: string, opts: RawDataFlags & { data?: string; dataText?: string; dataImages?: string; metric: string; batchSize: string; threads?: string; output?: string; json?: boolean }) =>
      runCommand(async (signal) => {
        const metrics = opts.metric.split(',').map((s) => s.trim());
        const bad = metrics.find((m) => !isMetricName(m));
        if (bad) throw new UserError(`unknown metric '${bad}' (choose from ${METRICS.join(', ')})`);
        const model = loadModel(modelPath);
        const dataset = await datasetFromFlags({ tensors: opts.data, text: opts.dataText, images: opts.dataImages, flags: '--data, --data-text, --data-images' }, opts, model, modelPath);
        if (!dataset) throw new UserError('give the dataset: --data PATH, --data-text FILE or --data-images DIR');
        const result = await evaluate(model, dataset, {
          metrics: metrics as MetricName[],
          batchSize: positiveInt(opts.batchSize, '--batch-size'),
          threads: opts.threads ? positiveInt(opts.threads, '--threads') : undefined,
          output: opts.output,
          progress: opts.json ? silentProgress : consoleProgress(),
          signal,
        });
        if (opts.json) {
          process.stdout.write(JSON.stringify({ model: modelPath, ...result }) + '\n');
        } else {
          process.stdout.write(`${modelPath} on ${result.dataset}: ${result.samples} samples, ${result.positions} labelled positions (output '${result.output}')\n`);
          for (const [k, v] of Object.entries(result.metrics)) process.stdout.write(`  ${k.padEnd(11)} ${v.toFixed(6)}\n`);
        }
      }),
    );
}

export function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UserError(`${flag} takes a positive whole number, not '${text}'`);
  return n;
}
