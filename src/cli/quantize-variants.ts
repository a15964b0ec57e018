import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import type { Model } from '../ir/model.js';
import { loadModel } from '../onnx/load.js';
import { PROTOBUF_LIMIT, saveModel, type SaveOptions } from '../onnx/save.js';
import { quantize, type QuantizePassOptions, type QuantizeSummary } from '../passes/quantize.js';
import { pipeline } from '../pipeline/pipeline.js';
import { consoleProgress, silentProgress } from '../progress.js';
import type { ReportEntry } from '../report/report.js';
import { QualityFloorError, describeFailing, formatFigure, type QualityCheck } from '../validate/quality-floor.js';
import { parseDtypes, type DtypeVariant } from './dtypes.js';
import { positiveInt } from './eval.js';
import { OutputPlan } from './output-paths.js';
import type { QuantizeFlags } from './quantize.js';
import { datasetFromFlags } from './raw-data.js';

/** One variant to write: its dtype, file and the quantize pass's options. */
export interface PlannedVariant extends DtypeVariant {
  file: string;
  options: QuantizePassOptions;
}

/**
 * `--dtype`'s conflicts with the other flags, checked before any work: each dtype sets its
 * scheme, and the variants go beside the input, so --scheme, --a-bits and -o are refused, and
 * so are the options only a static scheme or float16 takes when no variant has one.
 */
export function checkDtypeFlags(flags: QuantizeFlags, command: Command): DtypeVariant[] {
  const variants = parseDtypes(flags.dtype!);
  const names = variants.map((v) => v.dtype).join(',');
  if (flags.output !== undefined) throw new UserError(`--dtype writes each variant beside the input with transformers.js's file names (model_q4.onnx, ...); -o goes with one --scheme, not with --dtype`);
  if (command.getOptionValueSource('scheme') === 'cli') throw new UserError(`--dtype sets each variant's scheme (q8 and int8: dynamic, q4: w4, fp16, q4f16); give --dtype or --scheme, not both`);
  if (flags.aBits !== undefined) throw new UserError(`--a-bits goes with --scheme w8, w4, w3 or w2, not with --dtype`);
  if (flags.softmax !== 'none') throw new UserError(`--softmax ${flags.softmax} needs a static scheme (w8a8, w6a6 or w4a4), and --dtype ${names} has none`);
  if (flags.method === 'smoothquant' || flags.method === 'repquant') throw new UserError(`--method ${flags.method} needs a static scheme (w8a8, w6a6 or w4a4), and --dtype ${names} has none`);
  if (variants.some((v) => v.scheme === 'dynamic')) {
    const dyn = variants.filter((v) => v.scheme === 'dynamic').map((v) => v.dtype).join(', ');
    if (flags.weightGrid === 'asymmetric') throw new UserError(`--weight-grid asymmetric needs a weight-only scheme, and --dtype ${dyn} is dynamic int8 (symmetric weights)`);
    const low = flags.layerBits.find((pair) => !/=(8|float)$/.test(pair));
    if (low !== undefined) throw new UserError(`--layer-bits ${low}: --dtype ${dyn} quantizes weights to 8 bits; give those layers 8 or float, or run that dtype separately`);
  }
  const float16 = variants.some((v) => v.scheme === 'fp16' || v.scheme === 'q4f16');
  if (!float16 && (!flags.keepIoTypes || flags.keepFloat32.length > 0)) throw new UserError(`${flags.keepIoTypes ? '--keep-float32' : '--no-keep-io-types'} goes with --dtype fp16 or q4f16, and --dtype ${names} has neither`);
  return variants;
}

/** What one variant came to, as --json gives it. */
interface VariantResult {
  dtype: string;
  scheme: string;
  output: string;
  written: boolean;
  seconds: number;
  fileBytesAfter: number | null;
  quality: QualityCheck | null;
  /** The quantize pass's summary (absent when the variant was refused by the quality floor). */
  summary?: QuantizeSummary;
  report: readonly ReportEntry[];
}

/**
 * Writes several variants of one model in one run: the model is loaded and the calibration
 * data built once, then each variant is quantized from the float model, checked against it
 * (the quality floor, as for one output) and saved under a temporary name as soon as it
 * passes, so only one quantized model is in memory at a time; the files get their names when
 * every variant is done, and an error or a stop on any of them removes them all (no partial
 * output). A variant below the floor is not written (unless --force) and the run exits 1
 * after the others; every variant is in the one report.
 */
export async function quantizeVariants(modelPath: string, variants: PlannedVariant[], flags: QuantizeFlags, signal: AbortSignal): Promise<number> {
  const threads = flags.threads ? positiveInt(flags.threads, '--threads') : undefined;
  const outputs = OutputPlan.check(
    variants.map((v) => ({ flag: `--dtype ${v.dtype}`, file: v.file, what: `${v.dtype} variant` })),
    [{ file: modelPath, what: 'input model' }, flags.calib ? { file: flags.calib, what: 'calibration dataset' } : undefined],
  );
  const model = loadModel(modelPath);
  const calibration = await datasetFromFlags({ tensors: flags.calib, text: flags.calibText, images: flags.calibImages, flags: '--calib, --calib-text, --calib-images' }, flags, model, modelPath);
  const progress = flags.json ? silentProgress : consoleProgress();
  const results: VariantResult[] = [];
  const pending: { tmp: string; file: string; dataPath: string | undefined }[] = [];
  try {
    for (const v of variants) {
      signal.throwIfAborted();
      const started = Date.now();
      const seconds = (): number => (Date.now() - started) / 1000;
      let applied;
      try {
        applied = await pipeline([quantize(v.options)]).apply(model, { calibration, threads, progress, signal, force: flags.force });
      } catch (e) {
        if (!(e instanceof QualityFloorError)) throw e;
        process.stderr.write(`slimformer: ${v.file} (--dtype ${v.dtype}) was not written: the result is below the quality floor, ${describeFailing(e.check, 'floor')} against ${modelPath} on ${e.check.samples} calibration samples; pass --force to write it anyway\n`);
        results.push({ dtype: v.dtype, scheme: v.scheme, output: v.file, written: false, seconds: seconds(), fileBytesAfter: null, quality: e.check, report: [] });
        continue;
      }
      signal.throwIfAborted();
      const tmp = path.join(path.dirname(v.file), `.slimformer-tmp-${process.pid}-${path.basename(v.file)}`);
      const saved = await outputs.write(() => saveModel(applied.model, tmp, { externalData: externalDataFor(applied.model, v.file) }));
      pending.push({ tmp, file: v.file, dataPath: saved.dataPath });
      results.push({
        dtype: v.dtype,
        scheme: v.scheme,
        output: v.file,
        written: true,
        seconds: seconds(),
        fileBytesAfter: fs.statSync(saved.path).size + (saved.dataPath ? fs.statSync(saved.dataPath).size : 0),
        quality: applied.report.quality,
        summary: applied.report.summaryOf('quantize'),
        report: applied.report.entries,
      });
    }
  } catch (e) {
    for (const p of pending) for (const f of [p.tmp, p.dataPath]) if (f) fs.rmSync(f, { force: true });
    throw e;
  }
  for (const p of pending) fs.renameSync(p.tmp, p.file);
  const fileBytesBefore = fs.statSync(modelPath).size;
  const refused = results.some((r) => !r.written);
  if (flags.json) {
    process.stdout.write(JSON.stringify({ input: modelPath, fileBytesBefore, variants: results }, jsonNumbers) + '\n');
  } else {
    process.stdout.write(variantTable(modelPath, fileBytesBefore, results) + '\n');
  }
  return refused ? 1 : 0;
}

/**
 * Variants stay in one file unless their weights pass protobuf's 2 GB limit; then the data
 * goes to `<file>_data`, the name transformers.js looks for (config.json's
 * transformers.js_config.use_external_data_format must then say so: docs/byo.md).
 */
function externalDataFor(model: Model, file: string): SaveOptions['externalData'] {
  const bytes = model.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
  return bytes > PROTOBUF_LIMIT - 64 * 2 ** 20 ? { location: `${path.basename(file)}_data` } : false;
}

/** The one summary across variants: a row each (file, scheme, size, quality against the input), then warnings. */
function variantTable(modelPath: string, bytesBefore: number, results: VariantResult[]): string {
  const dir = path.dirname(modelPath);
  const samples = results.find((r) => r.quality)?.quality?.samples;
  const header = `${modelPath} (${size(bytesBefore)}): ${results.length} variant${results.length === 1 ? '' : 's'}, each checked against it ${samples ? `on ${samples} calibration samples` : '(not measured: no calibration data)'}`;
  const rows = [['dtype', 'file', 'scheme', 'size', 'smaller', 'SQNR', 'top-1', 'quality']];
  for (const r of results) {
    const q = r.quality;
    const verdict = !r.written ? 'BELOW THE FLOOR, not written' : !q ? 'not measured' : q.verdict === 'below-floor' ? 'below the floor, written (--force)' : q.verdict;
    rows.push([
      r.dtype,
      path.relative(dir, r.output),
      r.scheme,
      r.fileBytesAfter === null ? '-' : size(r.fileBytesAfter),
      r.fileBytesAfter === null ? '-' : `${(bytesBefore / r.fileBytesAfter).toFixed(2)}x`,
      q ? formatFigure('sqnr', q.sqnr) : '-',
      q ? formatFigure('agreement', q.agreement) : '-',
      verdict,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = [header, ...rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))];
  const floor = results.find((r) => r.quality)?.quality?.floor;
  if (floor) lines.push(`quality floor: end-to-end SQNR ${formatFigure('sqnr', floor.sqnr)}, top-1 agreement ${formatFigure('agreement', floor.agreement)} (docs/ci.md)`);
  for (const r of results) for (const e of r.report.filter((x) => x.level !== 'info')) lines.push(`${r.dtype}: ${e.level} ${e.target ? `${e.target}: ` : ''}${e.message}`);
  return lines.join('\n');
}

function size(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}
/** JSON has no Infinity: an exact match is written as null. */
function jsonNumbers(_k: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? null : v;
}
