import { Command } from 'commander';
import { registerAnalyze } from './analyze.js';
import { registerCompress } from './compress.js';
import { registerDataset } from './dataset.js';
import { registerEval } from './eval.js';
import { registerGate } from './gate.js';
import { registerInspect } from './inspect.js';
import { registerPrune } from './prune.js';
import { registerQuantize } from './quantize.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('slimformer')
    .description('compress transformer ONNX models after training, and prove they still work')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride((err) => {
      // commander's own usage errors (unknown option, missing argument) are user errors: exit 2
      process.exit(err.exitCode === 0 ? 0 : 2);
    });
  registerInspect(program);
  registerEval(program);
  registerGate(program);
  registerQuantize(program);
  registerPrune(program);
  registerAnalyze(program);
  registerCompress(program);
  registerDataset(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
