import * as fs from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { saveModel } from '../onnx/save.js';
import { quantize, type LayerBits, type QuantizePassOptions, type QuantizeSummary } from '../passes/quantize.js';
import { pipeline } from '../pipeline/pipeline.js';
import { traceMemory } from '../runtime/memory-trace.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { BLOCK_SIZES, CALIBRATION_METHODS, METHODS, SCHEMES, SOFTMAX_MODES, parseGranularity, type BlockSize, type CalibrationMethod, type Method, type Scheme, type SoftmaxMode } from '../quantize/scheme.js';
import { positiveInt } from './eval.js';
import { FORCE_HELP, qualityLine, refuseBelowFloor } from './quality-floor.js';
import { repeatable } from './repeatable.js';
import { OutputPlan } from './output-paths.js';
import { inFlags } from './option-flags.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { runCommand } from './run-command.js';
import { DTYPES, variantFile } from './dtypes.js';
import { modelFile } from './model-input.js';
import { checkDtypeFlags, quantizeVariants } from './quantize-variants.js';

export interface QuantizeFlags extends RawDataFlags {
  output?: string;
  dtype?: string;
  calib?: string;
  calibText?: string;
  calibImages?: string;
  scheme: string;
  method: string | undefined;
  alpha: string;
  softmax: string;
  repquantBounds: string;
  reconstruct: string;
  damp: string;
  actOrder?: boolean;
  dynamicGroups?: boolean;
  sequential: boolean;
  iters: string;
  flexroundStart: string;
  flexroundMinTokens: string;
  lr?: string;
  flexroundMode: string;
  aBits?: string;
  calibMethod: string;
  perChannel: boolean;
  blockSize: string;
  granularity?: string;
  weightGrid?: string;
  exclude: string[];
  layerBits: string[];
  outerBits?: string;
  decodeSteps?: boolean;
  embeddings: boolean;
  keepIoTypes: boolean;
  keepFloat32: string[];
  threads?: string;
  cacheDir?: string;
  cache: boolean;
  json?: boolean;
  force?: boolean;
}

export function registerQuantize(program: Command): void {
  const cmd = program
    .command('quantize')
    .description('quantize a float model (weights, and activations for w8a8/w6a6/w4a4) and check it against the original')
    .argument('<model>', 'float ONNX model file, or a model folder holding onnx/model.onnx (docs/byo.md)')
    .option('-o, --output <file>', 'where to write the quantized model (or give --dtype)')
    .option('--dtype <list>', `write transformers.js variants beside the input, named as it loads them, several in one run: ${DTYPES.join(', ')}, e.g. q4,q8 (each sets the scheme; docs/byo.md)`)
    .option('--calib <path>', 'calibration dataset (needed for w8a8/w6a6/w4a4 and smoothquant/repquant/gptq; used by every scheme to check the result)')
    .option('--scheme <scheme>', `${SCHEMES.join(' | ')}`, 'w8a8')
    .option('--method <method>', `${METHODS.join(' | ')} (smoothquant and repquant need a static scheme: w8a8, w6a6, w4a4; gptq and flexround need --calib; default rtn, except for static schemes with --calib, where repquant is chosen when a post-norm activation has outlier channels)`)
    .option('--alpha <a>', 'SmoothQuant migration strength in [0, 1]', '0.5')
    .option('--repquant-bounds <how>', 'RepQuant per-channel lower/upper bounds: mse (searched dual clipping) | percentile | minmax', 'mse')
    .option('--reconstruct <how>', 'weight reconstruction after the grids are fitted: none | gptq (column-wise error feedback on calibration Gram matrices)', 'none')
    .option('--damp <x>', 'GPTQ damping, a fraction of the mean Gram diagonal', '0.01')
    .option('--act-order', 'GPTQ: quantize input columns by descending input energy (the default)')
    .option('--no-act-order', 'GPTQ: quantize input columns in their order')
    .option('--dynamic-groups', "GPTQ: fit each group's grid when GPTQ reaches it, on the error-updated weights, instead of round to nearest's")
    .option('--no-sequential', "GPTQ: fit every layer on the float model's inputs (default: on the inputs the quantized layers before it give, against the float model's outputs)")
    .option('--iters <n>', 'FlexRound optimizer steps per layer (or per block)', '500')
    .option('--lr <x>', 'FlexRound learning rate of the log-scales (Adam, cosine to 0; default 0.003)')
    .option('--flexround-start <from>', 'FlexRound\'s starting levels: gptq (GPTQ\'s solution, the default) | rtn (round to nearest)', 'gptq')
    .option('--flexround-min-tokens <n>', 'FlexRound: calibration tokens per input feature a block or layer needs before learning moves it from GPTQ\'s levels', '8')
    .option('--flexround-mode <mode>', 'FlexRound objective: block (each transformer block\'s output, through block reconstruction; layers outside blocks layer-wise) | layer (each linear\'s output error: faster)', 'block')
    .option('--a-bits <n>', 'with --scheme w8, w4, w3 or w2: quantize activations to 8 bits too (static, QDQ, weights per output channel)')
    .option('--softmax <form>', 'post-softmax quantization (static schemes): none | uniform (8-bit QDQ, integer kernels) | log2 (simulated log2 quantizer, for accuracy)', 'none')
    .option('--calib-method <method>', `activation ranges: ${CALIBRATION_METHODS.join(' | ')}`, 'minmax')
    .option('--per-channel', 'one weight scale per output channel (the default)', true)
    .option('--no-per-channel', 'one weight scale per tensor instead (the same as --granularity tensor)')
    .option('--block-size <n>', 'input features per scale for w8/w4/w3/w2: 16, 32, 64 or 128 (the same as --granularity block:N)', '32')
    .option('--granularity <g>', 'weights sharing one scale: tensor | channel (one per output channel) | block:N (N inputs of one output channel, N = 16, 32, 64 or 128; weight-only schemes); overrides --block-size and --per-channel')
    .option('--weight-grid <kind>', 'weight-only schemes: symmetric | asymmetric (a zero point per group; default symmetric, asymmetric for w2)')
    .option('--exclude <pattern>', 'keep matching layers in float (glob like "*.attn.*" or /regex/); repeat the flag for more patterns', repeatable, [])
    .option('--layer-bits <pattern=bits>', 'per-layer precision: layers matching the glob or /regex/ get these weight bits (2 to 8) or float; repeat the flag for more, e.g. --layer-bits lm_head=8 --layer-bits "blocks.0.*=float"; the first matching pattern wins', repeatable, [])
    .option('--decode-steps', 'a decoder with a key/value cache: also calibrate on each sample decoded through the cache of its first half (docs/quantize.md)')
    .option('--outer-bits <bits>', 'bits of the embedding tables and the linears outside the transformer blocks (heads, patch embedding) when the scheme has fewer: 2 to 8, or "scheme" for the scheme\'s bits (default 8; --layer-bits wins)')
    .option('--no-embeddings', 'keep embedding tables in float')
    .option('--no-keep-io-types', 'fp16, q4f16: make graph inputs and outputs float16 too (default: they stay float32, with Casts inside the graph)')
    .option('--keep-float32 <op>', 'fp16, q4f16: keep this operator type in float32 besides the built-in list (docs/fp16.md); repeat the flag for more', repeatable, [])
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--cache-dir <dir>', 'calibration cache folder (default .slimformer-cache, or SLIMFORMER_CACHE_DIR)')
    .option('--no-cache', 'do not read or write the calibration cache')
    .option('--json', 'print the report as one JSON object')
    .option('--force', FORCE_HELP);
  addRawDataFlags(cmd, 'calib', 'calibration data')
    .action((modelPath: string, flags: QuantizeFlags, command: Command) =>
      runCommand(async (signal) => {
        modelPath = modelFile(modelPath);
        const variants = flags.dtype === undefined ? undefined : checkDtypeFlags(flags, command);
        if (!variants && flags.output === undefined) throw new UserError('give -o FILE (where to write the quantized model), or --dtype to write transformers.js variants beside the input');
        if (!(SCHEMES as readonly string[]).includes(flags.scheme)) throw new UserError(`unknown scheme '${flags.scheme}' (choose from ${SCHEMES.join(', ')})`);
        if (flags.method !== undefined && !(METHODS as readonly string[]).includes(flags.method)) throw new UserError(`unknown method '${flags.method}' (choose from ${METHODS.join(', ')})`);
        const alpha = Number(flags.alpha);
        if (!(alpha >= 0 && alpha <= 1)) throw new UserError(`--alpha must be a number in [0, 1], not '${flags.alpha}'`);
        if (!['mse', 'percentile', 'minmax'].includes(flags.repquantBounds)) throw new UserError(`unknown --repquant-bounds '${flags.repquantBounds}' (choose from mse, percentile, minmax)`);
        if (!['none', 'gptq'].includes(flags.reconstruct)) throw new UserError(`unknown --reconstruct '${flags.reconstruct}' (choose from none, gptq)`);
        if (!(SOFTMAX_MODES as readonly string[]).includes(flags.softmax)) throw new UserError(`unknown softmax form '${flags.softmax}' (choose from ${SOFTMAX_MODES.join(', ')})`);
        if (!variants && flags.softmax !== 'none' && !['w8a8', 'w6a6', 'w4a4'].includes(flags.scheme)) throw new UserError(`--softmax ${flags.softmax} needs a static scheme (w8a8, w6a6 or w4a4), not ${flags.scheme}`);
        if (!variants && (flags.method === 'smoothquant' || flags.method === 'repquant') && !['w8a8', 'w6a6', 'w4a4'].includes(flags.scheme)) throw new UserError(`--method ${flags.method} needs a static scheme (w8a8, w6a6 or w4a4), not ${flags.scheme}`);
        if (!(CALIBRATION_METHODS as readonly string[]).includes(flags.calibMethod)) throw new UserError(`unknown calibration method '${flags.calibMethod}' (choose from ${CALIBRATION_METHODS.join(', ')})`);
        if ((flags.method === 'gptq' || flags.method === 'flexround') && !flags.calib && !flags.calibText && !flags.calibImages) throw new UserError(`--method ${flags.method} needs calibration data (--calib DIR)`);
        const damp = Number(flags.damp);
        if (!(damp > 0 && damp < 1)) throw new UserError(`--damp must be a number in (0, 1), not '${flags.damp}'`);
        const iters = Number(flags.iters);
        if (!(Number.isInteger(iters) && iters >= 0)) throw new UserError(`--iters must be a whole number >= 0, not '${flags.iters}'`);
        const lr = flags.lr === undefined ? undefined : Number(flags.lr);
        if (lr !== undefined && !(lr > 0)) throw new UserError(`--lr must be a positive number, not '${flags.lr}'`);
        if (!['gptq', 'rtn'].includes(flags.flexroundStart)) throw new UserError(`unknown --flexround-start '${flags.flexroundStart}' (choose from gptq, rtn)`);
        const minTokensPerInput = Number(flags.flexroundMinTokens);
        if (!(minTokensPerInput >= 0)) throw new UserError(`--flexround-min-tokens must be a number >= 0, not '${flags.flexroundMinTokens}'`);
        if (!['layer', 'block'].includes(flags.flexroundMode)) throw new UserError(`unknown --flexround-mode '${flags.flexroundMode}' (choose from layer, block)`);
        let scheme = flags.scheme as Scheme;
        let weightBits: number | undefined;
        if (flags.aBits !== undefined) {
          if (flags.aBits !== '8') throw new UserError(`--a-bits must be 8, not '${flags.aBits}'`);
          if (!['w8', 'w4', 'w3', 'w2'].includes(flags.scheme)) throw new UserError(`--a-bits goes with a weight-only scheme (w8, w4, w3 or w2), not ${flags.scheme}`);
          weightBits = Number(flags.scheme.slice(1));
          scheme = 'w8a8';
        }
        if (!variants && !['fp16', 'q4f16'].includes(flags.scheme) && (!flags.keepIoTypes || flags.keepFloat32.length > 0)) throw new UserError(`${flags.keepIoTypes ? '--keep-float32' : '--no-keep-io-types'} goes with --scheme fp16 or q4f16, not ${flags.scheme}`);
        const blockSize = positiveInt(flags.blockSize, '--block-size');
        if (!(BLOCK_SIZES as readonly number[]).includes(blockSize)) throw new UserError(`--block-size must be ${BLOCK_SIZES.join(', ')}, not ${blockSize}`);
        if (flags.weightGrid !== undefined && !['symmetric', 'asymmetric'].includes(flags.weightGrid)) throw new UserError(`unknown --weight-grid '${flags.weightGrid}' (choose from symmetric, asymmetric)`);
        const granularityOf = (s: Scheme): ReturnType<typeof parseGranularity> => (flags.granularity === undefined ? { perChannel: flags.perChannel, blockSize: blockSize as BlockSize } : parseGranularity(flags.granularity, s));
        const optionsFor = (s: Scheme): QuantizePassOptions => ({
          scheme: s,
          ...(weightBits !== undefined && weightBits !== 8 ? { weightBits } : {}),
          method: flags.method as Method,
          gptqDamp: damp,
          gptqActOrder: flags.actOrder ?? true,
          ...(flags.dynamicGroups ? { gptqDynamicGroups: true } : {}),
          ...(flags.sequential === false ? { gptqSequential: false } : {}),
          flexround: { iters, lr, mode: flags.flexroundMode as 'layer' | 'block', start: flags.flexroundStart as 'gptq' | 'rtn', minTokensPerInput },
          alpha,
          softmax: flags.softmax as SoftmaxMode,
          reconstruct: flags.reconstruct as 'none' | 'gptq',
          repquantObserver: flags.repquantBounds as 'mse' | 'percentile' | 'minmax',
          calibMethod: flags.calibMethod as CalibrationMethod,
          ...granularityOf(s),
          ...(flags.weightGrid !== undefined ? { weightSymmetric: flags.weightGrid === 'symmetric' } : {}),
          exclude: flags.exclude,
          ...(flags.layerBits.length ? { layerBits: parseLayerBits(flags.layerBits) } : {}),
          ...(flags.outerBits !== undefined ? { outerBits: parseOuterBits(flags.outerBits) } : {}),
          ...(flags.decodeSteps ? { decodeSteps: true } : {}),
          embeddings: flags.embeddings,
          keepIoTypes: flags.keepIoTypes,
          ...(flags.keepFloat32.length ? { keepFloat32Ops: flags.keepFloat32 } : {}),
          cacheDir: flags.cache ? flags.cacheDir : false,
        });
        if (variants) return quantizeVariants(modelPath, variants.map((v) => ({ ...v, file: variantFile(modelPath, v), options: optionsFor(v.scheme) })), flags, signal);
        const output = flags.output!;
        const options = optionsFor(scheme);
        const outputs = OutputPlan.check([{ flag: '-o', file: output, what: 'quantized model' }], [{ file: modelPath, what: 'input model' }, flags.calib ? { file: flags.calib, what: 'calibration dataset' } : undefined]);
        const model = loadModel(modelPath);
        traceMemory('model loaded');
        const calibration = await datasetFromFlags({ tensors: flags.calib, text: flags.calibText, images: flags.calibImages, flags: '--calib, --calib-text, --calib-images' }, flags, model, modelPath);
        const progress = flags.json ? silentProgress : consoleProgress();
        const started = Date.now();
        const applied = await pipeline([quantize(options)])
          .apply(model, { calibration, threads: flags.threads ? positiveInt(flags.threads, '--threads') : undefined, progress, signal, force: flags.force })
          .catch((e: unknown) => refuseBelowFloor(e, modelPath, output, flags.json === true));
        if (typeof applied === 'number') return applied;
        const { model: out, report } = applied;
        signal.throwIfAborted();
        traceMemory('quantized (before saving)');
        const saved = await outputs.write(() => saveModel(out, output));
        traceMemory('saved');
        const summary = report.summaryOf('quantize')!;
        const fileBytes = (f: string, d?: string): number => statSize(f) + (d ? statSize(d) : 0);
        const result = {
          input: modelPath,
          output,
          seconds: (Date.now() - started) / 1000,
          fileBytesBefore: fileBytes(modelPath),
          fileBytesAfter: fileBytes(saved.path, saved.dataPath),
          ...summary,
          quality: report.quality,
          report: report.entries,
        };
        if (flags.json) {
          process.stdout.write(JSON.stringify(result, jsonNumbers) + '\n');
          return;
        }
        const lines = [
          `${modelPath} -> ${output}  (${summary.scheme}, ${summary.method}${summary.calibMethod ? `, ${summary.calibMethod} calibration on ${summary.calibration?.samples} samples${summary.calibration?.fromCache ? ' (from cache)' : ''}` : ''})`,
          `size        ${mb(result.fileBytesBefore)} -> ${mb(result.fileBytesAfter)} (${(result.fileBytesBefore / result.fileBytesAfter).toFixed(2)}x smaller)`,
          `layers      ${summary.layers.length} quantized to ${bitsCounts(summary.layers)}, ${summary.embeddings.length} embedding tables${summary.embeddings.length ? ` (${bitsCounts(summary.embeddings)})` : ''}, ${summary.excluded.length} excluded, ${summary.skipped.length} skipped`,
        ];
        if (summary.scheme === 'fp16') lines.pop(); // no layer is quantized: the float16 line says what changed
        if (summary.float16) {
          const h = summary.float16;
          const kept = h.kept.reduce((a, k) => a + k.nodes, 0);
          lines.push(`float16     ${h.tensors} constant tensors (${h.elements} values) in float16, ${kept} node(s) kept in float32${kept ? ` (${[...new Set(h.kept.map((k) => k.op))].join(', ')})` : ''}, ${h.casts} Casts; inputs/outputs ${h.keepIoTypes ? 'float32' : 'float16'}`);
        }
        if (summary.reparam) lines.push(`reparam     ${summary.reparam.method}${summary.reparam.alpha !== undefined ? ` (alpha ${summary.reparam.alpha})` : ''}${summary.reparam.observer ? ` (${summary.reparam.observer} per-channel bounds)` : ''}: ${summary.reparam.folded.length} norm outputs folded, ${summary.reparam.skipped.length} skipped`);
        if (summary.flexround) {
          const fr = summary.flexround;
          const learned = fr.units.filter((u) => u.kept === 'learned').length;
          const short = fr.units.filter((u) => u.notLearned).length;
          const why = short ? `; ${short} kept the start, too little calibration data to learn them (--flexround-min-tokens; the report names each)` : '';
          lines.push(`flexround   ${fr.mode}-wise, ${fr.iters} steps at lr ${fr.lr}: ${learned} of ${fr.units.length} ${fr.mode === 'layer' ? 'layers' : 'units'} improved on calibration data${why}${fr.activations.length ? `, ${fr.activations.length} activation step sizes learned` : ''} (${fr.seconds.toFixed(1)} s)`);
        }
        if (summary.softmax) {
          const sm = summary.softmax;
          const f = (x: number | null): string => (x === null ? 'not measured' : db(x));
          lines.push(`softmax     ${sm.attentions} attention(s) written as ${sm.mode === 'log2' ? `simulated log2 (${sm.bits}-bit codes, float ops)` : 'uniform 8-bit QDQ (integer kernels)'}: output SQNR ${f(sm.outputSqnr)}; ${sm.alternative.mode} would give ${f(sm.alternative.outputSqnr)}`);
        }
        lines.push(`quality     ${qualityLine(report.quality)}`);
        for (const o of summary.outputs) lines.push(`output      '${o.name}' SQNR ${db(o.sqnr)} vs float (${summary.verifiedSamples} calibration samples)`);
        const worst = [...summary.layers].filter((l) => l.sqnr !== null).sort((a, b) => a.sqnr! - b.sqnr!).slice(0, 5);
        if (worst.length) lines.push(`lowest SQNR ${worst.map((l) => `${l.name} ${db(l.sqnr!)}`).join(', ')}`);
        for (const e of report.entries.filter((x) => x.level !== 'info')) lines.push(`${e.level.padEnd(11)} ${e.target ? `${e.target}: ` : ''}${e.message}`);
        process.stdout.write(lines.join('\n') + '\n');
      }, inFlags),
    );
}

/** `--outer-bits`: 2 to 8, or 'scheme'. */
function parseOuterBits(value: string): number | 'scheme' {
  if (value === 'scheme') return 'scheme';
  if (!/^[2-8]$/.test(value)) throw new UserError(`--outer-bits must be 2 to 8 or scheme, not '${value}'`);
  return Number(value);
}

/** `--layer-bits pattern=bits` pairs (the last '=' splits, so a /regex/ may hold one). */
export function parseLayerBits(pairs: string[]): Record<string, LayerBits> {
  const out: Record<string, LayerBits> = {};
  for (const pair of pairs) {
    const at = pair.lastIndexOf('=');
    const pattern = pair.slice(0, at);
    const value = pair.slice(at + 1);
    if (at <= 0 || !/^([2-8]|float)$/.test(value)) throw new UserError(`--layer-bits '${pair}' must be PATTERN=BITS with BITS 2 to 8 or float (e.g. "lm_head=8")`);
    out[pattern] = value === 'float' ? 'float' : Number(value);
  }
  return out;
}

/** "12 layers at 4 bits" or, with per-layer bits, "10 at 4 bits, 2 at 8 bits". */
function bitsCounts(layers: readonly { bits: number }[]): string {
  if (layers.length === 0) return '- bits';
  const counts = new Map<number, number>();
  for (const l of layers) counts.set(l.bits, (counts.get(l.bits) ?? 0) + 1);
  if (counts.size === 1) return `${layers[0]!.bits} bits`;
  return [...counts].sort((a, b) => a[0] - b[0]).map(([b, n]) => `${n} at ${b} bits`).join(', ');
}

function statSize(f: string): number {
  return fs.statSync(f).size;
}
function mb(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}
function db(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(1)} dB` : 'exact';
}
/** JSON has no Infinity: an exact match is written as null. */
function jsonNumbers(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}
