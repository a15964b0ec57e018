import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { saveModel } from '../onnx/save.js';
import { prune, PRUNE_METHODS, type PruneMethod, type PruneSummary } from '../passes/prune.js';
import { pipeline } from '../pipeline/pipeline.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { positiveInt } from './eval.js';
import { FORCE_HELP, qualityLine, refuseBelowFloor } from './quality-floor.js';
import { OutputPlan } from './output-paths.js';
import { inFlags } from './option-flags.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

interface PruneFlags extends RawDataFlags {
  output: string;
  calib?: string;
  calibText?: string;
  calibImages?: string;
  method: string;
  ratio?: string;
  flops?: string;
  headRatio?: string;
  maxIncrease?: string;
  count?: string;
  samples?: string;
  threads?: string;
  json?: boolean;
  force?: boolean;
}

export function registerPrune(program: Command): void {
  const cmd = program
    .command('prune')
    .description('remove MLP neurons, attention heads, or whole attention or MLP sublayers for real: a smaller dense model, no retraining')
    .argument('<model>', 'float ONNX model file, or a model folder (docs/byo.md)')
    .requiredOption('-o, --output <file>', 'where to write the pruned model')
    .option('--calib <path>', 'calibration dataset (needed by every method but magnitude --ratio)')
    .option('--method <method>', `${PRUNE_METHODS.join(' | ')}`, 'mlp')
    .option('--ratio <r>', 'share of MLP neurons to remove (0..1)')
    .option('--flops <f>', 'FLOP budget: the pruned model keeps this fraction of the FLOPs (0..1]')
    .option('--head-ratio <r>', 'optin: share of all attention heads to remove (0..1), alone or with --ratio / --flops')
    .option('--max-increase <e>', 'mlp: largest rise of the prediction entropy accepted per MLP, in nats (default 0.005)')
    .option('--count <n>', 'drop-attention / drop-mlp: attention (MLP) sublayers to drop (default 1)')
    .option('--samples <n>', 'calibration samples used for scoring (default 32)')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--json', 'print the summary as one JSON object')
    .option('--force', FORCE_HELP);
  addRawDataFlags(cmd, 'calib', 'calibration data')
    .action((modelPath: string, flags: PruneFlags) =>
      runCommand(async (signal) => {
        modelPath = modelFile(modelPath);
        if (!(PRUNE_METHODS as readonly string[]).includes(flags.method)) throw new UserError(`unknown method '${flags.method}' (choose from ${PRUNE_METHODS.join(', ')})`);
        const outputs = OutputPlan.check([{ flag: '-o', file: flags.output, what: 'pruned model' }], [{ file: modelPath, what: 'input model' }, flags.calib ? { file: flags.calib, what: 'calibration dataset' } : undefined]);
        const pass = prune({
          method: flags.method as PruneMethod,
          ratio: num(flags.ratio, '--ratio'),
          flops: num(flags.flops, '--flops'),
          headRatio: num(flags.headRatio, '--head-ratio'),
          maxIncrease: num(flags.maxIncrease, '--max-increase'),
          count: flags.count !== undefined ? positiveInt(flags.count, '--count') : undefined,
          samples: flags.samples !== undefined ? positiveInt(flags.samples, '--samples') : undefined,
        });
        const model = loadModel(modelPath);
        const calibration = await datasetFromFlags({ tensors: flags.calib, text: flags.calibText, images: flags.calibImages, flags: '--calib, --calib-text, --calib-images' }, flags, model, modelPath);
        const progress = flags.json ? silentProgress : consoleProgress();
        const started = Date.now();
        const applied = await pipeline([pass])
          .apply(model, { calibration, threads: flags.threads ? positiveInt(flags.threads, '--threads') : undefined, progress, signal, force: flags.force })
          .catch((e: unknown) => refuseBelowFloor(e, modelPath, flags.output, flags.json === true));
        if (typeof applied === 'number') return applied;
        const { model: out, report } = applied;
        signal.throwIfAborted();
        await outputs.write(() => saveModel(out, flags.output));
        const s = report.summaryOf('prune')!;
        if (flags.json) {
          process.stdout.write(JSON.stringify({ input: modelPath, output: flags.output, seconds: (Date.now() - started) / 1000, ...s, quality: report.quality, report: report.entries }) + '\n');
          return;
        }
        const pct = (a: number, b: number) => `${a} -> ${b} (${((100 * (b - a)) / a).toFixed(1)}%)`;
        const lines = [
          `${modelPath} -> ${flags.output}  (${s.method})`,
          `parameters      ${pct(s.parametersBefore, s.parametersAfter)}`,
          `MLP parameters  ${pct(s.mlpParametersBefore, s.mlpParametersAfter)}`,
        ];
        if (s.flopsBefore !== null && s.flopsAfter !== null) lines.push(`FLOPs/sample    ${pct(s.flopsBefore, s.flopsAfter)}`);
        lines.push(`removed         ${s.neuronsRemoved} MLP neurons, ${s.headsRemoved} heads, ${s.sublayersRemoved} sublayers`);
        if (s.entropy) lines.push(`entropy         ${s.entropy.before.toFixed(4)} -> ${s.entropy.after.toFixed(4)} nats on the calibration batch`);
        lines.push(`quality         ${qualityLine(report.quality)}`);
        for (const b of s.blocks) lines.push(`block ${String(b.index).padEnd(9)} heads ${b.attentionDropped ? 'dropped' : (b.heads ?? '-')}, MLP width ${b.mlpDropped ? 'dropped' : (b.mlpWidth ?? '-')}`);
        for (const e of report.entries.filter((x) => x.level !== 'info')) lines.push(`${e.level.padEnd(15)} ${e.target ? `${e.target}: ` : ''}${e.message}`);
        process.stdout.write(lines.join('\n') + '\n');
      }, inFlags),
    );
}

function num(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v)) throw new UserError(`${flag} must be a number, not '${text}'`);
  return v;
}
