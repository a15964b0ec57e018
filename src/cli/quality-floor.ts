import { QualityFloorError, describeFailing, formatFigure, type QualityCheck } from '../validate/quality-floor.js';

export const FORCE_HELP = 'write the output even when it measures below the quality floor (docs/ci.md); it is then reported as forced';

/**
 * A result refused by the quality floor (QualityFloorError): prints one sentence naming the
 * figure, its value and the floor, and the override; with --json also the figures on stdout.
 * Returns exit code 1 (a limit failed). Any other error is rethrown.
 */
export function refuseBelowFloor(e: unknown, input: string, output: string, json: boolean): number {
  if (!(e instanceof QualityFloorError)) throw e;
  const c = e.check;
  process.stderr.write(`slimformer: ${output} was not written: the result is below the quality floor, ${describeFailing(c, 'floor')} against ${input} on ${c.samples} calibration samples; pass --force to write it anyway\n`);
  if (json) process.stdout.write(JSON.stringify({ input, output, written: false, quality: c }) + '\n');
  return 1;
}

/** "end-to-end SQNR 39.6 dB, top-1 agreement 100.0% vs the input on 16 calibration samples: pass (floor 3.0 dB, 10.0%)". */
export function qualityLine(c: QualityCheck | null): string {
  if (!c) return 'not measured against the input (no calibration data)';
  const verdict = c.verdict === 'below-floor' ? 'BELOW THE FLOOR, written because of --force' : c.verdict === 'warning' ? 'warning' : 'pass';
  const floor = Number.isFinite(c.floor.sqnr) ? `floor ${formatFigure('sqnr', c.floor.sqnr)}, ${formatFigure('agreement', c.floor.agreement)}` : `floor ${formatFigure('agreement', c.floor.agreement)} agreement; SQNR not held after pruning`;
  return `end-to-end SQNR ${formatFigure('sqnr', c.sqnr)}, top-1 agreement ${formatFigure('agreement', c.agreement)} vs the input on ${c.samples} calibration samples: ${verdict} (${floor})`;
}
