import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { writeJunit } from '../report/junit.js';
import { gate } from '../validate/gate.js';
import { GATE_METRICS, type GateMetricName, isGateMetricName } from '../validate/gate-metrics.js';
import { gateJson, gateJunitSuite, gateTable } from '../validate/gate-report.js';
import { assignLimits, gateMetricList, parseLimits } from '../validate/limits.js';
import { positiveInt } from './eval.js';
import { type LmFlags, addLmOptions, lmOptions } from './lm-options.js';
import { OutputPlan } from './output-paths.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

interface GateFlags extends LmFlags, RawDataFlags {
  baseline: string;
  candidate: string;
  data?: string;
  dataText?: string;
  dataImages?: string;
  metric?: string;
  maxDrop: string[];
  min: string[];
  max: string[];
  output?: string;
  junit?: string;
  json?: boolean;
  batchSize: string;
  threads?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

const HELP = `
Metrics (higher is better unless noted):
  top1        share of positions whose argmax is the label            (needs labels)
  nll         mean cross-entropy in nats; lower is better              (needs labels)
  perplexity  exp(nll); lower is better                                (needs labels)
  agreement   share of positions whose argmax is the baseline's        (ideal 1)
  cosine      mean cosine similarity to the baseline's output, per position (ideal 1)
  sqnr        10*log10(sum b^2 / sum (b-c)^2) over the whole output, dB (ideal +inf)
  kl          mean KL(softmax(baseline) || softmax(candidate)) per position, nats; lower is better
Language-model metrics (decoders; see docs/lm-eval.md):
  stream-nll         mean nll over a token stream, sliding --window/--stride; lower is better
  stream-perplexity  exp(stream-nll); lower is better
  gen-agreement      share of greedy tokens equal to the baseline's, --prompts x --new-tokens (ideal 1)
  gen-divergence     mean first position where the greedy continuations differ, tokens (ideal --new-tokens)
  topk-agreement     mean overlap of the --top-k next-token sets on the baseline's continuation (ideal 1)

Limits: each flag takes VALUE (for every metric without its own limit) or
METRIC=VALUE items separated by commas, and may be repeated.
  --max-drop  largest degradation in the metric's own direction (a fall in top1, a
              rise in nll): absolute (0.005) or relative to the baseline (0.5%).
              agreement and cosine drop from their ideal 1; sqnr takes --min instead.
  --min       floor for a higher-is-better metric (e.g. --min sqnr=30)
  --max       ceiling for a lower-is-better metric (e.g. --max perplexity=3.2)
Metrics named in a limit are checked even if --metric leaves them out; a metric in
--metric with no limit is reported, not checked.

Exit codes: 0 every limit holds, 1 a limit failed, 2 bad input or usage.

Examples:
  slimformer gate --baseline m.onnx --candidate m.int8.onnx --data eval/ --metric top1 --max-drop 0.005
  slimformer gate --baseline m.onnx --candidate m.w4.onnx --data eval/ --max-drop top1=0.005,nll=2% --min sqnr=25 --junit gate.xml
  slimformer gate --baseline lm.onnx --candidate lm.w4.onnx --tokens text.npy --window 256 --stride 128 \
      --max-drop stream-perplexity=3% --min gen-agreement=0.8,topk-agreement=0.9
`;

export function registerGate(program: Command): void {
  const command = program
    .command('gate')
    .description('fail (exit 1) when a compressed model loses more accuracy than allowed against its baseline')
    .requiredOption('--baseline <model>', 'the reference ONNX model (file or model folder)')
    .requiredOption('--candidate <model>', 'the compressed ONNX model to check (file or model folder)')
    .option('--data <path>', 'dataset: folder of test_data_set_N samples, or .npz/.npy (or --data-text / --data-images, made with the baseline\'s tokenizer or preprocessor; the language-model metrics can read --tokens instead)')
    .option('--metric <names>', `comma-separated metrics: ${GATE_METRICS.join(', ')} (default: those the limits name, else top1)`)
    .option('--max-drop <limit>', 'largest allowed degradation: VALUE, VALUE%, or METRIC=VALUE[%],...', collect, [])
    .option('--min <limit>', 'floor for higher-is-better metrics: VALUE or METRIC=VALUE,...', collect, [])
    .option('--max <limit>', 'ceiling for lower-is-better metrics: VALUE or METRIC=VALUE,...', collect, [])
    .option('--output <name>', 'model output holding the scores (default: the first)')
    .option('--junit <file>', 'also write a JUnit XML report (one test case per metric)')
    .option('--json', 'print one JSON object instead of the table')
    .option('--batch-size <n>', 'samples per onnxruntime run', '32')
    .option('--threads <n>', 'onnxruntime intra-op threads');
  addLmOptions(addRawDataFlags(command, 'data', 'dataset'), true)
    .addHelpText('after', HELP)
    .action((opts: GateFlags) =>
      runCommand(async (signal) => {
        opts.baseline = modelFile(opts.baseline, 'baseline');
        opts.candidate = modelFile(opts.candidate, 'candidate');
        const listed = opts.metric === undefined ? undefined : parseMetricList(opts.metric);
        const parsed = parseLimits({ maxDrop: opts.maxDrop, min: opts.min, max: opts.max });
        if (!parsed.all && Object.keys(parsed.perMetric).length === 0) {
          throw new UserError('the gate has no limit to check: give --max-drop, --min or --max (see slimformer gate --help)');
        }
        const metrics = gateMetricList(listed, parsed);
        const limits = assignLimits(metrics, parsed);
        const batchSize = positiveInt(opts.batchSize, '--batch-size');
        const threads = opts.threads ? positiveInt(opts.threads, '--threads') : undefined;
        if (opts.data === undefined && opts.dataText === undefined && opts.dataImages === undefined && opts.tokens === undefined) {
          throw new UserError('the gate needs data: give --data DATASET, --data-text FILE or --data-images DIR (or, for the language-model metrics only, --tokens FILE.npy)');
        }
        const outputs = OutputPlan.check(
          [opts.junit ? { flag: '--junit', file: opts.junit, what: 'JUnit report' } : undefined],
          [{ file: opts.baseline, what: 'baseline model' }, { file: opts.candidate, what: 'candidate model' }, opts.data === undefined ? undefined : { file: opts.data, what: 'dataset' }, opts.tokens === undefined ? undefined : { file: opts.tokens, what: 'token file' }],
        );
        const baseline = loadModel(opts.baseline);
        const candidate = loadModel(opts.candidate);
        const lm = lmOptions(opts);
        const dataset = await datasetFromFlags({ tensors: opts.data, text: opts.dataText, images: opts.dataImages, flags: '--data, --data-text, --data-images' }, opts, baseline, opts.baseline);
        const result = await gate({
          baseline,
          candidate,
          dataset,
          metrics,
          limits,
          batchSize,
          threads,
          output: opts.output,
          lm,
          progress: opts.json ? silentProgress : consoleProgress(),
          signal,
        });
        if (opts.junit) await outputs.write(() => writeJunit(opts.junit!, gateJunitSuite(result)));
        process.stdout.write(opts.json ? JSON.stringify(gateJson(result)) + '\n' : gateTable(result));
        return result.pass ? 0 : 1;
      }),
    );
}

function parseMetricList(text: string): GateMetricName[] {
  const names = text.split(',').map((s) => s.trim());
  const bad = names.find((m) => !isGateMetricName(m));
  if (bad !== undefined) throw new UserError(`unknown metric '${bad}' (choose from ${GATE_METRICS.join(', ')})`);
  return names as GateMetricName[];
}
