// Times structure discovery (discoverStructure: symbolic shapes, linears, norms, attention
// layouts, MLPs, blocks) on BERT-base-sized graphs and on the zoo of real exporter output.
//
//   node dist/benchmarks/discover.js [model.onnx ...]
//
// Without arguments: a BERT-base-sized encoder built in memory (12 blocks, hidden 768, 12 heads,
// MLP 3072, torch-style dynamic shapes) and every fixtures/zoo/**/*.onnx. Prints, per model, the
// median of 5 discovery runs, the node count and what was found.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { discoverStructure } from '../src/discover/index.js';
import type { Model } from '../src/ir/model.js';
import { loadModel } from '../src/onnx/index.js';
import { buildTransformer } from '../tests/helpers/transformer-builder.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function zooFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.onnx')).sort().map((f) => path.join(dir, f));
}

function time(model: Model): { ms: number; blocks: number; heads: string; unmatched: number } {
  const runs: number[] = [];
  let s = discoverStructure(model);
  for (let i = 0; i < 5; i++) {
    const t = process.hrtime.bigint();
    s = discoverStructure(model);
    runs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  runs.sort((a, b) => a - b);
  const a = s.attentions[0];
  return { ms: runs[2]!, blocks: s.blocks.length, heads: a ? `${a.numHeads}/${a.numKvHeads}x${a.headSize}` : '-', unmatched: s.unmatched.length };
}

function main(): void {
  const args = process.argv.slice(2);
  const rows: [string, Model][] = [];
  if (args.length === 0) {
    rows.push(['BERT-base-sized (builder, dynamic shapes)', buildTransformer({ blocks: 12, hidden: 768, heads: 12, mlpWidth: 3072, seq: 128, opset: 14, mask: 'additive-input', placement: 'post', activation: 'gelu', seed: 1 }).model]);
    for (const f of zooFiles(path.join(ROOT, 'fixtures/zoo'))) rows.push([path.relative(ROOT, f), loadModel(f)]);
  } else {
    for (const f of args) rows.push([f, loadModel(f)]);
  }
  console.log('model | nodes | discover ms (median of 5) | blocks | heads/kv x size | not recognised');
  for (const [name, model] of rows) {
    const r = time(model);
    console.log(`${name} | ${model.graph.nodes.length} | ${r.ms.toFixed(1)} | ${r.blocks} | ${r.heads} | ${r.unmatched}`);
  }
}

main();
