import type { Command } from 'commander';
import { discoverStructure, summarizeStructure } from '../discover/index.js';
import { describe } from '../ir/array-tensor.js';
import { DataType } from '../ir/dtype.js';
import type { Value } from '../ir/value.js';
import { loadModel } from '../onnx/load.js';
import { runCommand } from './run-command.js';
import { modelFile } from './model-input.js';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('show a model: inputs, outputs, op counts, parameters, and its transformer blocks')
    .argument('<model>', 'ONNX model file, or a model folder (docs/byo.md)')
    .option('--json', 'print the same as one JSON object')
    .action((modelPath: string, opts: { json?: boolean }) =>
      runCommand(async () => {
        modelPath = modelFile(modelPath);
        const model = loadModel(modelPath);
        const summary = summarizeStructure(model, discoverStructure(model));
        const io = {
          inputs: model.graph.inputs.filter((v) => !v.initializer).map(valueInfo),
          outputs: model.graph.outputs.map(valueInfo),
        };
        const header = {
          model: modelPath,
          irVersion: model.irVersion,
          opsetImports: Object.fromEntries(model.opsetImports),
          producer: `${model.producerName} ${model.producerVersion}`.trim(),
          weightBytes: model.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0),
        };
        if (opts.json) {
          process.stdout.write(JSON.stringify({ ...header, ...io, ...summary }, null, 2) + '\n');
          return;
        }
        const out: string[] = [];
        out.push(`${modelPath}  (ONNX IR ${header.irVersion}, opset ${summary.opset}${header.producer ? `, from ${header.producer}` : ''})`);
        out.push(`parameters  ${summary.parameters.toLocaleString('en-US')} (${(header.weightBytes / 2 ** 20).toFixed(2)} MiB of weights)`);
        for (const v of io.inputs) out.push(`input       ${v.name}: ${v.type}`);
        for (const v of io.outputs) out.push(`output      ${v.name}: ${v.type}`);
        const ops = Object.entries(summary.opCounts).sort((a, b) => b[1] - a[1]);
        out.push(`ops         ${ops.map(([k, n]) => `${k} ${n}`).join(', ')}`);
        out.push(`structure   ${summary.blocks.length} blocks, ${summary.linears} linear layers, ${summary.norms} norms, hidden ${summary.hidden ?? '?'}`);
        if (summary.branch) out.push(`            found in ${summary.branch}`);
        if (summary.blocks.length > 0) {
          out.push('');
          out.push(table(
            ['block', 'heads', 'kv heads', 'head size', 'q/k/v', 'rotary', 'hidden', 'mlp width', 'activation', 'norm'],
            summary.blocks.map((b) => [
              String(b.index),
              String(b.heads ?? '?'),
              String(b.kvHeads ?? '?'),
              String(b.headSize ?? '?'),
              b.projections ?? '?',
              b.rotaryDims === null ? '?' : b.rotaryDims === 0 ? 'none' : b.rotaryDims === b.headSize ? 'full' : `${b.rotaryDims} dims`,
              String(b.hidden ?? '?'),
              String(b.mlpWidth ?? '?'),
              b.activation ?? '?',
              `${b.norm}${b.normKind ? ` (${b.normKind}, ${b.normForm})` : ''}`,
            ]),
          ));
        }
        if (summary.unmatched.length > 0) {
          out.push('');
          out.push(`not recognised (${summary.unmatched.length}):`);
          for (const u of summary.unmatched.slice(0, 12)) out.push(`  ${u.opType} '${u.node}': ${u.reason}`);
          if (summary.unmatched.length > 12) out.push(`  ... ${summary.unmatched.length - 12} more (see --json)`);
        }
        process.stdout.write(out.join('\n') + '\n');
      }),
    );
}

function valueInfo(v: Value): { name: string; type: string } {
  return { name: v.name, type: v.dtype !== undefined ? describe({ dtype: v.dtype, dims: v.shape ?? [] }) : v.type?.kind === 'opaque' ? 'non-tensor' : describe({ dtype: DataType.UNDEFINED, dims: [] }) };
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

