// Benchmark: load and save a BERT-base-sized ONNX model (12 layers, hidden 768, ~110M
// parameters, ~440 MB) and report times and the peak resident memory of the process doing it.
//
//   npm run build && npm run bench:io [-- --dir /tmp/bench] [-- --layers 72]
//
// With --layers 72 the model is over 2 GB: more than one protobuf message can hold, so it is
// saved with external data (the default 'auto' mode) and loaded back from it.
//
// Each measured step runs in a fresh child process so its peak RSS (getrusage maxrss) belongs
// to that step alone. Target: peak memory under 2x the model's size.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataType } from '../src/ir/dtype.js';
import { Graph } from '../src/ir/graph.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import type { Value } from '../src/ir/value.js';
import { loadModel } from '../src/onnx/load.js';
import { saveModel } from '../src/onnx/save.js';

const layersArg = process.argv.indexOf('--layers');
const LAYERS = layersArg >= 0 ? Number(process.argv[layersArg + 1]) : 12;
const HIDDEN = 768;
const MLP = 3072;
const VOCAB = 30522;
const SEQ = 512;

function randomTensor(name: string, dims: number[], seed: number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = ((s >>> 0) / 2 ** 32 - 0.5) * 0.04;
  }
  return Tensor.fromBytes(name, DataType.FLOAT, dims, new Uint8Array(data.buffer));
}

/** A BERT-base-shaped encoder stack (embeddings, 12 x [LN, q/k/v/o, LN, fc1, Gelu, fc2]). */
function buildBertBase(): Model {
  const g = new Graph('bert_base_sized');
  const ids = g.addInput('input_ids', { kind: 'tensor', dtype: DataType.INT64, shape: ['batch', 'seq'] });
  let seed = 1;
  const w = (name: string, dims: number[]): Value => g.addInitializer(randomTensor(name, dims, seed++));
  const one = (name: string, dims: number[], v: number): Value => g.addInitializer(Tensor.from(name, DataType.FLOAT, dims, new Array(dims.reduce((a, b) => a * b, 1)).fill(v)));
  const op = (type: string, inputs: Value[], attributes = {}): Value => g.addNode(type, inputs, 1, { attributes }).output(0);
  w('embeddings.position', [SEQ, HIDDEN]);
  w('embeddings.token_type', [2, HIDDEN]);
  let x = op('Gather', [w('embeddings.word', [VOCAB, HIDDEN]), ids]);
  const ln = (v: Value, p: string): Value => op('LayerNormalization', [v, one(`${p}.weight`, [HIDDEN], 1), one(`${p}.bias`, [HIDDEN], 0)], { axis: { type: 'int', value: -1 } });
  const linear = (v: Value, p: string, i: number, o: number): Value => op('Add', [op('MatMul', [v, w(`${p}.weight`, [i, o])]), one(`${p}.bias`, [o], 0)]);
  for (let l = 0; l < LAYERS; l++) {
    const p = `layer.${l}`;
    const h = ln(x, `${p}.attention.ln`);
    const qkv = op('Add', [op('Add', [linear(h, `${p}.attention.q`, HIDDEN, HIDDEN), linear(h, `${p}.attention.k`, HIDDEN, HIDDEN)]), linear(h, `${p}.attention.v`, HIDDEN, HIDDEN)]);
    x = op('Add', [x, linear(qkv, `${p}.attention.o`, HIDDEN, HIDDEN)]);
    const m = ln(x, `${p}.mlp.ln`);
    x = op('Add', [x, linear(op('Relu', [linear(m, `${p}.mlp.fc1`, HIDDEN, MLP)]), `${p}.mlp.fc2`, MLP, HIDDEN)]);
  }
  const out = ln(x, 'final_ln');
  g.outputs.push(out);
  const model = new Model(g);
  model.opsetImports = new Map([['', 17]]);
  return model;
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

/** Child-process step: load (and touch every weight), then save; prints timings as JSON. */
function child(step: string, src: string, dst: string): void {
  const t0 = performance.now();
  const m = loadModel(src);
  let checksum = 0;
  for (const v of m.graph.initializers) checksum += v.initializer!.bytes[0] ?? 0; // reads lazy data too
  const t1 = performance.now();
  saveModel(m, dst, { externalData: step === 'external' ? true : step === 'auto' ? 'auto' : false });
  const t2 = performance.now();
  const maxRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(JSON.stringify({ loadSeconds: (t1 - t0) / 1000, saveSeconds: (t2 - t1) / 1000, maxRssBytes, checksum }) + '\n');
}

function main(): void {
  const args = process.argv.slice(2);
  if (args[0] === '--child') return child(args[1]!, args[2]!, args[3]!);
  const dirArg = args.indexOf('--dir');
  const dir = dirArg >= 0 ? args[dirArg + 1]! : fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-bench-'));
  fs.mkdirSync(dir, { recursive: true });
  const inline = path.join(dir, 'bert-base.onnx');
  const external = path.join(dir, 'bert-base-ext.onnx');

  const t0 = performance.now();
  const model = buildBertBase();
  const built = performance.now();
  // 'auto' keeps weights inline when they fit in one protobuf message, external otherwise
  const first = saveModel(model, inline, { externalData: 'auto' });
  const saved = performance.now();
  saveModel(model, external, { externalData: true });
  const params = model.parameterCount();
  const size = fs.statSync(inline).size + (first.dataPath ? fs.statSync(first.dataPath).size : 0);
  console.log(`model: ${LAYERS} layers, hidden ${HIDDEN}, ${(params / 1e6).toFixed(1)}M parameters, ${mib(size)} on disk (build ${((built - t0) / 1000).toFixed(1)}s)`);
  console.log(`save from memory (${first.dataPath ? 'over 2 GB: external data' : 'inline'}): ${((saved - built) / 1000).toFixed(2)}s`);

  const self = fileURLToPath(import.meta.url);
  for (const [label, step, src, dst] of [
    [first.dataPath ? 'auto     load + save' : 'inline   load + save', first.dataPath ? 'auto' : 'inline', inline, path.join(dir, 'copy.onnx')],
    ['external load + save', 'external', external, path.join(dir, 'copy-ext.onnx')],
  ] as const) {
    const r = spawnSync(process.execPath, [self, '--child', step, src, dst], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`child '${step}' failed: ${r.stderr}`);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { loadSeconds: number; saveSeconds: number; maxRssBytes: number };
    console.log(`${label}: load ${res.loadSeconds.toFixed(2)}s, save ${res.saveSeconds.toFixed(2)}s, peak RSS ${mib(res.maxRssBytes)} = ${(res.maxRssBytes / size).toFixed(2)}x model size (target < 2x)`);
  }
  if (dirArg < 0) fs.rmSync(dir, { recursive: true, force: true });
}

main();
