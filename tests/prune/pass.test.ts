import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { discoverStructure } from '../../src/discover/index.js';
import { isUserError } from '../../src/errors.js';
import { loadModel } from '../../src/onnx/index.js';
import { prune, type PruneSummary } from '../../src/passes/prune.js';
import { quantize } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { gate } from '../../src/validate/gate.js';
import { fixtures } from '../helpers/fixtures.js';

const fx = Object.fromEntries(fixtures().map((f) => [f.name, f]));
const vit = fx.vit_mnist!;
const bert = fx.bert_spam!;
const gpt = fx.gpt_moby!;

async function run(f: typeof vit, options: Parameters<typeof prune>[0], calib = true) {
  const model = loadModel(f.model);
  const { model: out, report } = await pipeline([prune(options)]).apply(model, { calibration: calib ? openDataset(f.calibration) : undefined, threads: 2 });
  return { model, out, summary: report.passes[0]!.summary as unknown as PruneSummary };
}

async function top1Drop(f: typeof vit, candidate: ReturnType<typeof loadModel>, maxDrop: number) {
  return gate({ baseline: loadModel(f.model), candidate, dataset: openDataset(f.dataset), metrics: ['top1'], limits: { kind: 'max-drop', value: maxDrop, relative: false }, threads: 2 });
}

describe('prune pass', () => {
  it('magnitude --ratio 0.3 removes 30% of every MLP without calibration data', async () => {
    const { out, summary } = await run(vit, { method: 'magnitude', ratio: 0.3 }, false);
    const s = discoverStructure(out);
    for (const m of s.mlps) expect(m.width).toBe(128 - Math.round(0.3 * 128));
    expect(summary.mlpParametersAfter / summary.mlpParametersBefore).toBeCloseTo(0.7, 1);
    expect(summary.parametersAfter).toBeLessThan(summary.parametersBefore);
    expect(summary.flopsBefore).toBeNull();
  });

  it('OPTIN under a FLOP budget of 0.6 meets the budget and keeps top1 within 2 points (bert_spam)', async () => {
    const { out, summary } = await run(bert, { method: 'optin', flops: 0.6, samples: 4 });
    expect(summary.flopsAfter!).toBeLessThanOrEqual(0.6 * summary.flopsBefore! * 1.001);
    expect(summary.flopsAfter!).toBeGreaterThan(0.5 * summary.flopsBefore!);
    const g = await top1Drop(bert, out, 0.02);
    expect(g.pass).toBe(true);
  });

  it('AMP (Taylor importance, entropy tolerance) narrows the MLPs of vit_mnist within its tolerance', async () => {
    const { out, summary } = await run(vit, { method: 'mlp', maxIncrease: 0.003, samples: 16 });
    expect(summary.mlpParametersAfter).toBeLessThan(summary.mlpParametersBefore);
    expect(summary.entropy!.after - summary.entropy!.before).toBeLessThanOrEqual(4 * 0.003 + 1e-6);
    const widths = discoverStructure(out).mlps.map((m) => m.width);
    expect(new Set(widths).size).toBeGreaterThan(1); // adaptive: widths differ per layer
  });

  it('AMP works on a causal language model (gpt_moby, global ratio)', async () => {
    const { summary } = await run(gpt, { method: 'mlp', ratio: 0.2, samples: 4 });
    expect(summary.mlpParametersAfter / summary.mlpParametersBefore).toBeCloseTo(0.8, 1);
  });

  it('drop-attention removes the attention sublayer most similar to its input', async () => {
    const { out, summary } = await run(vit, { method: 'drop-attention', count: 1, samples: 8 });
    expect(summary.sublayersRemoved).toBe(1);
    const dropped = summary.similarity![0]!.block;
    expect(summary.blocks[dropped]!.attentionDropped).toBe(true);
    expect(discoverStructure(out).attentions.length).toBe(3);
    expect(summary.flopsAfter!).toBeLessThan(summary.flopsBefore!);
  });

  it('prune (OPTIN, FLOPs 0.8) then w8a8 passes the gate at 2 points plus the quantization tolerance', async () => {
    const model = loadModel(vit.model);
    const { model: out } = await pipeline([prune({ method: 'optin', flops: 0.8, samples: 4 }), quantize({ scheme: 'w8a8' })]).apply(model, { calibration: openDataset(vit.calibration), threads: 2 });
    expect(out.graph.nodes.some((n) => n.opType === 'QuantizeLinear' || n.opType === 'DynamicQuantizeLinear' || n.opType === 'QLinearMatMul' || n.opType === 'MatMulInteger')).toBe(true);
    const g = await top1Drop(vit, out, 0.025);
    expect(g.pass).toBe(true);
  });

  it('user errors are one sentence', async () => {
    const cases: [() => unknown, RegExp][] = [
      // in option names (the CLI maps them to its flags), when the pass is built
      [() => prune({ method: 'optin' }), /^pass 'prune': method optin needs option 'ratio', option 'flops' or option 'headRatio'$/],
      [() => prune({ method: 'magnitude', ratio: 1.5 }), /^pass 'prune': option 'ratio' must be a number in \[0, 1\], not 1\.5$/],
      [() => prune({ method: 'mlp', ratio: 0.2, flops: 0.5 }), /either option 'ratio' or option 'flops'/],
      [() => prune({ method: 'nope' as never }), /^pass 'prune': option 'method' must be one of magnitude, mlp, optin, drop-attention, drop-mlp, not "nope"$/],
      [() => prune({ method: 'mlp', ratoi: 0.2 } as never), /^pass 'prune': unknown option 'ratoi' \(valid options: method, ratio, flops, headRatio, maxIncrease, count, samples, plan\)$/],
    ];
    for (const [f, re] of cases) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(isUserError(err)).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
    await expect(run(vit, { method: 'optin', flops: 0.6 }, false)).rejects.toThrow(/needs calibration data/);
  });
});
