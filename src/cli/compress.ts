import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { UserError, isUserError } from '../errors.js';
import { loadModel } from '../onnx/load.js';
import { saveModel } from '../onnx/save.js';
import { compressModel } from '../pipeline/compress.js';
import { DEFAULT_RECIPE, fromRecipe, loadRecipe } from '../pipeline/recipe.js';
import { consoleProgress, silentProgress } from '../progress.js';
import { analyzeModel } from '../analyze/analyze.js';
import { type CompressReport, outlierRows } from '../report/compress-report.js';
import { renderReport, reportJson, selectionText, size, summaryRows, textTable, trialRows } from '../report/render.js';
import { writeFileAtomic, writeJunit, type JunitCase, type JunitSuite } from '../report/junit.js';
import { autoCompress } from '../search/auto.js';
import { OBJECTIVES, parseObjective } from '../search/objective.js';
import { parseLimits } from '../validate/limits.js';
import { METRICS, isMetricName, type MetricName } from '../validate/metrics.js';
import { positiveInt } from './eval.js';
import { FORCE_HELP, refuseBelowFloor } from './quality-floor.js';
import { OutputPlan } from './output-paths.js';
import { repeatable } from './repeatable.js';
import { addRawDataFlags, datasetFromFlags, type RawDataFlags } from './raw-data.js';
import { openDataset } from '../data/dataset.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

interface CompressFlags extends RawDataFlags {
  output: string;
  calib?: string;
  calibText?: string;
  calibImages?: string;
  recipe?: string;
  data?: string;
  dataText?: string;
  dataImages?: string;
  metric: string;
  maxDrop?: string;
  auto?: boolean;
  objective: string;
  selectionData?: string;
  report: string[];
  junit?: string;
  threads?: string;
  latencyRuns: string;
  decodeCache: string;
  json?: boolean;
  quiet?: boolean;
  force?: boolean;
}

export function registerCompress(program: Command): void {
  const cmd = program
    .command('compress')
    .description('run a recipe of passes (default: w8a8), check the result against the original, and print size, latency and accuracy before and after')
    .argument('<model>', 'float ONNX model file, or a model folder (docs/byo.md)')
    .requiredOption('-o, --output <file>', 'where to write the compressed model (written atomically)')
    .option('--calib <path>', 'calibration dataset (sets activation ranges; the result is checked against the original on it); or --calib-text / --calib-images')
    .option('--recipe <file>', 'recipe (.json or .yaml, see docs/recipes.md); default: quantize w8a8 + cleanup')
    .option('--data <path>', 'labelled evaluation dataset: accuracy before and after')
    .option('--metric <name>', `accuracy metric on --data: ${METRICS.join(', ')}`, 'top1')
    .option('--max-drop <limit>', 'largest allowed accuracy drop (0.005 absolute, or 0.5% relative); with --data, exit 1 when exceeded')
    .option('--auto', 'search for the best model within --max-drop by --objective (needs --data and --max-drop); trials are judged on half of --data, the reported accuracy is from the other half')
    .option('--objective <what>', `what --auto optimizes among the passing models: ${OBJECTIVES.join(', ')} (latency and balanced time them on this machine)`, 'size')
    .option('--selection-data <path>', 'labelled data the --auto trials are judged on; then all of --data is held out for the reported accuracy')
    .option('--report <file>', 'also write the report: .json, .md or .html; repeat the flag for more files', repeatable, [])
    .option('--junit <file>', 'write the accuracy check (and the auto search result) as JUnit XML for CI')
    .option('--threads <n>', 'onnxruntime intra-op threads')
    .option('--latency-runs <n>', 'timed runs per model for the latency figure', '20')
    .option('--decode-cache <n>', 'decoders with a key/value cache: tokens already cached when one decode step is timed', '32')
    .option('--json', 'print the report as one JSON object')
    .option('-q, --quiet', 'no progress and no table (errors only)')
    .option('--force', FORCE_HELP);
  addRawDataFlags(addRawDataFlags(cmd, 'calib', 'calibration data'), 'data', 'labelled evaluation data')
    .action((modelPath: string, flags: CompressFlags) =>
      runCommand(async (signal) => {
        modelPath = modelFile(modelPath);
        if (!isMetricName(flags.metric)) throw new UserError(`unknown metric '${flags.metric}' (choose from ${METRICS.join(', ')})`);
        for (const r of flags.report) if (!/\.(json|md|html?)$/.test(r)) throw new UserError(`--report ${r}: the file must end in .json, .md or .html`);
        const outputs = OutputPlan.check(
          [{ flag: '-o', file: flags.output, what: 'compressed model' }, ...flags.report.map((file) => ({ flag: '--report', file, what: 'report' })), flags.junit ? { flag: '--junit', file: flags.junit, what: 'JUnit report' } : undefined],
          [{ file: modelPath, what: 'input model' }, flags.calib ? { file: flags.calib, what: 'calibration dataset' } : undefined, flags.data ? { file: flags.data, what: 'evaluation dataset' } : undefined, flags.selectionData ? { file: flags.selectionData, what: 'selection dataset' } : undefined, flags.recipe ? { file: flags.recipe, what: 'recipe' } : undefined],
        );
        const hasData = flags.data !== undefined || flags.dataText !== undefined || flags.dataImages !== undefined;
        if (flags.auto && (!hasData || !flags.maxDrop)) throw new UserError('--auto needs --data (labelled evaluation data) and --max-drop (the accuracy limit)');
        if (flags.auto && flags.recipe) throw new UserError('--auto chooses its own recipe; leave out --recipe');
        const objective = parseObjective(flags.objective);
        if (!flags.auto && (flags.objective !== 'size' || flags.selectionData)) throw new UserError(`${flags.selectionData ? '--selection-data' : '--objective'} applies to --auto only`);
        const limit = flags.maxDrop ? parseLimits({ maxDrop: [flags.maxDrop] }).all : undefined;
        if (flags.maxDrop && !limit) throw new UserError(`--max-drop takes one VALUE or VALUE%, not '${flags.maxDrop}'`);
        if (limit && !hasData) throw new UserError('--max-drop needs --data (labelled evaluation data) to measure the drop');
        const recipe = flags.recipe ? loadRecipe(flags.recipe) : DEFAULT_RECIPE;
        const threads = flags.threads ? positiveInt(flags.threads, '--threads') : undefined;
        const latencyRuns = Number(flags.latencyRuns);
        if (!Number.isInteger(latencyRuns) || latencyRuns < 0) throw new UserError(`--latency-runs takes a whole number, not '${flags.latencyRuns}'`);
        const decodeCache = Number(flags.decodeCache);
        if (!Number.isInteger(decodeCache) || decodeCache < 0) throw new UserError(`--decode-cache takes a whole number, not '${flags.decodeCache}'`);
        const model = loadModel(modelPath);
        const calibration = await datasetFromFlags({ tensors: flags.calib, text: flags.calibText, images: flags.calibImages, flags: '--calib, --calib-text, --calib-images' }, flags, model, modelPath);
        if (!calibration) throw new UserError('give the calibration data: --calib PATH, --calib-text FILE or --calib-images DIR');
        const data = await datasetFromFlags({ tensors: flags.data, text: flags.dataText, images: flags.dataImages, flags: '--data, --data-text, --data-images' }, flags, model, modelPath);
        const selection = flags.selectionData ? openDataset(flags.selectionData) : undefined;
        const quiet = flags.quiet || flags.json;
        const progress = quiet ? silentProgress : consoleProgress();
        const log = (s: string): void => {
          if (!quiet) process.stderr.write(s + '\n');
        };
        let report: CompressReport;
        let out;
        try {
          if (flags.auto) {
            const goal = { size: 'the smallest model', latency: 'the fastest model (timed on this machine)', balanced: 'the smallest model no slower than the original (timed on this machine)' }[objective];
            log(`auto: searching for ${goal} within ${flags.maxDrop} ${flags.metric} of the original`);
            const r = await autoCompress(model, {
              calibration,
              data: data!,
              selection,
              objective,
              limit: limit!,
              metric: flags.metric as MetricName,
              threads,
              progress,
              signal,
              latencyRuns,
              onRanking: (ranked) => log(`sensitivity (output SQNR with one layer alone at 4 bits, most sensitive first): ${ranked.slice(0, 8).map((x) => `${x.name} ${x.outputSqnr.toFixed(1)} dB`).join(', ')}${ranked.length > 8 ? `, ... (${ranked.length} in all)` : ''}`),
              onTrial: (t) => log(`trial ${t.index}: ${t.label.padEnd(44)} ${size(t.bytes).padStart(10)}  ${flags.metric} ${t.accuracy === null ? '-' : (t.accuracy * 100).toFixed(2) + '%'}  ${t.pass ? 'pass' : 'fail'}`),
              force: flags.force,
            });
            out = r.model;
            report = r.report;
          } else {
            const r = await compressModel(model, fromRecipe(recipe, flags.recipe), recipe.name ?? path.basename(flags.recipe ?? 'recipe'), { calibration, data, metric: flags.metric as MetricName, limit, threads, progress, signal, latencyRuns, decodeCache, force: flags.force });
            out = r.model;
            report = r.report;
          }
        } catch (e) {
          return refuseBelowFloor(e, modelPath, flags.output, flags.json === true);
        }
        signal.throwIfAborted();
        if (flags.report.length > 0) {
          // the report plots the original model's outliers per block (as `slimformer analyze` measures them)
          try {
            report.outliers = outlierRows(await analyzeModel(model, calibration, { samples: Math.min(32, calibration.size), threads, signal, progress }));
          } catch (e) {
            if (!isUserError(e)) throw e;
            report.entries.push({ pass: 'analyze', level: 'warning', message: `outlier metrics not measured: ${e.message}` });
          }
        }
        await outputs.write(() => {
          const saved = saveModel(out, flags.output);
          report.output = flags.output;
          report.size.after = fs.statSync(saved.path).size + (saved.dataPath ? fs.statSync(saved.dataPath).size : 0);
          report.size.before = fileBytes(modelPath);
          for (const file of flags.report) writeFileAtomic(file, renderReport(report, file));
          if (flags.junit) writeJunit(flags.junit, junitSuite(report, modelPath, flags.auto === true));
        });
        if (flags.json) process.stdout.write(reportJson(report).replace(/\n\s*/g, '') + '\n');
        else if (!flags.quiet) {
          const lines = [`${modelPath} -> ${flags.output}  (recipe ${report.recipe.name}: ${report.recipe.passes.join(', ')})`, '', textTable(summaryRows(report))];
          if (report.trials.length) {
            lines.push('', textTable(trialRows(report)), '', report.chosen === null ? `no trial passed the gate (${flags.maxDrop}); kept the closest` : `chosen: trial ${report.chosen}${chosenLayers(report)}`, selectionText(report));
          }
          for (const e of report.entries.filter((x) => x.level === 'warning')) lines.push(`warning: ${e.target ? `${e.target}: ` : ''}${e.message}`);
          process.stdout.write(lines.join('\n') + '\n');
        }
        if (report.accuracy?.pass === false) return 1;
        if (flags.auto && report.chosen === null) return 1;
      }),
    );
}

/** The per-layer precision of the chosen trial, as the recipe writes it. */
function chosenLayers(report: CompressReport): string {
  const t = report.trials.find((x) => x.index === report.chosen);
  const entries = Object.entries(t?.layerBits ?? {});
  return entries.length ? ` (${t!.scheme}; ${entries.map(([n, b]) => `${n}: ${b}`).join(', ')})` : '';
}

function fileBytes(f: string): number {
  const data = `${f}.data`;
  return fs.statSync(f).size + (fs.existsSync(data) ? fs.statSync(data).size : 0);
}

/** The compress run as JUnit: the accuracy check, and for --auto whether any trial passed. */
function junitSuite(report: CompressReport, modelPath: string, auto: boolean): JunitSuite {
  const cases: JunitCase[] = [];
  const a = report.accuracy;
  const name = a ? `${a.metric} within ${a.limit ?? 'no limit'}` : 'accuracy';
  const detail = a ? `${a.metric} ${a.before} -> ${a.after} on ${a.samples} samples` : '';
  if (!a) cases.push({ name, classname: 'slimformer.compress', skipped: 'no --data: accuracy not measured' });
  else if (a.pass === null) cases.push({ name, classname: 'slimformer.compress', skipped: `no --max-drop: ${detail}`, systemOut: detail });
  else if (a.pass) cases.push({ name, classname: 'slimformer.compress', systemOut: detail });
  else cases.push({ name, classname: 'slimformer.compress', failure: { message: `${detail} exceeds ${a.limit}`, type: 'LimitExceeded' } });
  if (auto) {
    cases.push(
      report.chosen === null
        ? { name: 'auto search', classname: 'slimformer.compress', failure: { message: `none of ${report.trials.length} trials passed; kept the closest`, type: 'NoPassingTrial' } }
        : { name: 'auto search', classname: 'slimformer.compress', systemOut: `chose trial ${report.chosen} of ${report.trials.length}` },
    );
  }
  return { name: `compress ${modelPath}`, timestamp: new Date(), properties: { output: report.output ?? '', recipe: report.recipe.name }, cases };
}
