import { describe, expect, it } from 'vitest';
import { sliceBatch } from '../../src/ir/array-tensor.js';
import type { Dataset } from '../../src/data/dataset.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { reconstructionPass } from '../../src/reconstruct/pass.js';
import { weightPlan } from '../../src/reconstruct/plans.js';
import { buildTransformer } from '../helpers/transformer-builder.js';

describe('reconstructionPass', () => {
  it('runs in a pipeline on the context calibration data and reports each block', async () => {
    const built = buildTransformer({ blocks: 2, hidden: 16, heads: 2, mlpWidth: 32, seq: 6 });
    const feeds = built.feeds(8);
    const data: Dataset = { path: '<memory>', size: 8, where: (i) => `#${i}`, read: (i) => ({ inputs: [{ name: 'x', ...sliceBatch(feeds.x!, i, i + 1) }], label: undefined, expected: [] }) };
    const pass = reconstructionPass('reconstruct-weights', weightPlan({ init: (w) => w.map((v) => v * 1.05) }), { iterations: 5, batchSize: 4, optimizer: { kind: 'adam', lr: 1e-3 } });
    const { report, modified } = await pipeline([pass]).apply(built.model, { calibration: data });
    expect(modified).toBe(true);
    const blocks = report.entries.filter((e) => e.pass === 'reconstruct-weights');
    expect(blocks.map((e) => e.target)).toEqual(['block 0', 'block 1']);
    expect(blocks[0]!.message).toMatch(/calibration MSE .* -> /);
    expect(report.passes[0]!.summary).toMatchObject({ blocks: 2 });
  });

  it('asks for calibration data when there is none', async () => {
    const built = buildTransformer({ blocks: 1, hidden: 16, heads: 2, mlpWidth: 32, seq: 6 });
    await expect(pipeline([reconstructionPass('reconstruct-weights', weightPlan())]).apply(built.model)).rejects.toThrow(/needs calibration data/);
  });
});
