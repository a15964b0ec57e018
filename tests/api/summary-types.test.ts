// Pass summaries are typed per pass. The expectTypeOf lines are checked by the compiler
// (`npm run typecheck` compiles the tests; a wrong type fails it), the @ts-expect-error lines
// fail the compilation if the field they read ever becomes valid; the last test runs a pipeline
// so the typed summary is also the one recorded.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { cleanup, pipeline, prune, quantize, flexRound, gptq, smoothQuant, repQuant, type CleanupSummary, type DecisionSummary, type PassResult, type PruneSummary, type QuantizeSummary, type ReparamSummary, type Report } from '../../src/index.js';
import { tinyClassifier } from '../helpers/tiny-classifier.js';

describe('typed pass summaries', () => {
  it('each factory returns a Pass whose result carries its own summary type', () => {
    expectTypeOf(quantize({ scheme: 'w8' }).run).returns.resolves.toEqualTypeOf<PassResult<QuantizeSummary>>();
    // a decision pass writes the plan when it is last (QuantizeSummary) or leaves it to a later pass (DecisionSummary)
    expectTypeOf(gptq({ bits: 4 }).run).returns.resolves.toEqualTypeOf<PassResult<QuantizeSummary | DecisionSummary>>();
    expectTypeOf(flexRound({ bits: 4 }).run).returns.resolves.toEqualTypeOf<PassResult<QuantizeSummary | DecisionSummary>>();
    expectTypeOf(smoothQuant().run).returns.resolves.toEqualTypeOf<PassResult<ReparamSummary>>();
    expectTypeOf(repQuant().run).returns.resolves.toEqualTypeOf<PassResult<ReparamSummary>>();
    expectTypeOf(prune({ method: 'magnitude', ratio: 0.1 }).run).returns.resolves.toEqualTypeOf<PassResult<PruneSummary>>();
    expectTypeOf(cleanup().run).returns.resolves.toEqualTypeOf<PassResult<CleanupSummary>>();
  });

  it('Report.summaryOf gives the summary type of the pass it names', () => {
    expectTypeOf<Report['summaryOf']>().toBeFunction();
    const check = (r: Report): void => {
      expectTypeOf(r.summaryOf('quantize')).toEqualTypeOf<QuantizeSummary | undefined>();
      // a gptq run that left its decisions to a later pass is not what summaryOf('gptq') returns
      expectTypeOf(r.summaryOf('gptq')).toEqualTypeOf<QuantizeSummary | undefined>();
      expectTypeOf(r.summaryOf('repquant')).toEqualTypeOf<ReparamSummary | undefined>();
      expectTypeOf(r.summaryOf('prune')).toEqualTypeOf<PruneSummary | undefined>();
      expectTypeOf(r.summaryOf('cleanup')).toEqualTypeOf<CleanupSummary | undefined>();
      expectTypeOf(r.summaryOf('quantize')!.layers[0]!.bits).toEqualTypeOf<number>();
      // @ts-expect-error a quantize summary has no neuronsRemoved
      void r.summaryOf('quantize')?.neuronsRemoved;
      // @ts-expect-error a pass name that is not built in
      void r.summaryOf('quantise');
    };
    expect(typeof check).toBe('function');
  });

  it('the summary recorded by a run is the typed one', async () => {
    const { report } = await pipeline([cleanup()]).apply(tinyClassifier());
    const s = report.summaryOf('cleanup');
    expect(s).toEqual({ identitiesRemoved: 0, deadNodesRemoved: 0, initializersRemoved: 0 });
    expect(report.summaryOf('quantize')).toBeUndefined();
  });
});
