// Block reconstruction as a pipeline step: what FlexRound-style passes build on.
import { UserError } from '../errors.js';
import type { Pass } from '../passes/pass.js';
import { reconstructBlocks, type ReconstructionPlan, type ReconstructOptions } from './engine.js';

export type ReconstructionPassOptions = Omit<ReconstructOptions, 'calibration' | 'plan' | 'progress' | 'signal' | 'threads'>;

/** What a reconstruction pass did: blocks seen and learned, and where the activations were kept. */
export interface ReconstructionSummary {
  blocks: number;
  learned: number;
  activationBytesInMemory: number;
  activationBytesOnDisk: number;
}

/**
 * A pass that reconstructs every block with `plan` on the context's calibration data, with the
 * context's progress, abort signal and threads. Each block's calibration loss before and after
 * goes to the report.
 */
export function reconstructionPass(name: string, plan: ReconstructionPlan, options: ReconstructionPassOptions = {}): Pass<ReconstructionSummary> {
  return {
    name,
    async run(model, ctx) {
      if (!ctx.calibration) throw new UserError(`${name} needs calibration data (option 'calibration')`);
      const r = await reconstructBlocks(model, { ...options, calibration: ctx.calibration, plan, progress: ctx.progress, signal: ctx.signal, threads: ctx.threads });
      for (const b of r.blocks) {
        if (b.kept === 'untouched') continue;
        const verdict = b.kept === 'learned' ? 'learned' : 'kept its starting values (learning did not lower the loss)';
        ctx.report.info(name, `block ${b.index}: calibration MSE ${b.lossBefore.toExponential(3)} -> ${b.lossAfter.toExponential(3)}, ${verdict}`, {
          target: `block ${b.index}`,
          data: { lossBefore: b.lossBefore, lossAfter: b.lossAfter, kept: b.kept, steps: b.curve.length, seconds: b.seconds },
        });
      }
      return {
        model: r.model,
        modified: r.blocks.some((b) => b.kept !== 'untouched'),
        summary: { blocks: r.blocks.length, learned: r.blocks.filter((b) => b.kept === 'learned').length, activationBytesInMemory: r.cache.memory, activationBytesOnDisk: r.cache.disk },
      };
    },
  };
}
