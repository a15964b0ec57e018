// Benchmark: `slimformer quantize --scheme w4` on a decoder with TinyLlama's dimensions, as child
// processes, with their wall time and peak RSS.
//
//   npm run build && npm run bench:decoder-1b [-- --layers 22] [-- --seq 64] [-- --samples 16]
//                                             [-- --methods rtn,gptq,flexround] [-- --no-latency]
//                                             [-- --flexround-iters 500] [-- --flexround-start gptq|rtn]
//
// The decoder: hidden 2048, 32 heads, SwiGLU MLP 5632, RMSNorm, rotary, causal mask, pre-norm,
// random weights (tests/helpers/transformer-builder.ts), saved with external data. It differs
// from TinyLlama in three ways the builder imposes: key/value heads are 32 (no grouped-query
// attention: k and v are 2048x2048, not 2048x256), there is no embedding table or LM head (the
// input is the hidden state), and no key/value cache inputs/outputs. 22 layers hold 1.13B
// parameters (4.5 GB in fp32), about TinyLlama's 1.1B. --layers N builds a shorter one.
//
// For each method: wall time, peak RSS of the quantize process (VmHWM, which counts the
// onnxruntime-mapped weight file pages too), its ratio to the fp32 model's bytes, output size.
// A watchdog kills a child above 12 GB RSS (the machine is shared). Decode-step latency: one
// token (batch 1, sequence 1, no cache) through the float and the w4 (RTN) model built at
// sequence 1 from the same seed (the same weights). Targets (issue 17): RTN < 3 min, GPTQ < 30
// min, peak RSS < 1.5x the fp32 model.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Random } from '../src/autodiff/random.js';
import { DataType } from '../src/ir/dtype.js';
import { tensorFromArray } from '../src/ir/array-tensor.js';
import { loadModel, saveModel, writeTensorFile } from '../src/onnx/index.js';
import { medianLatencies } from '../src/runtime/latency.js';
import { buildTransformer, type TransformerOptions } from '../tests/helpers/transformer-builder.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SELF = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const LIMIT_BYTES = 12 * 2 ** 30;

const HIDDEN = 2048;
function decoder(layers: number, seq: number): TransformerOptions {
  return { blocks: layers, hidden: HIDDEN, heads: 32, mlpWidth: 5632, seq, placement: 'pre', norm: 'rmsnorm', rotary: true, activation: 'swiglu', mask: 'causal-where', opset: 17, seed: 7 };
}

/** Child mode: builds the model at `seq` and writes it with `samples` calibration samples. */
function build(dir: string, layers: number, seq: number, samples: number, name: string): void {
  const built = buildTransformer(decoder(layers, seq));
  saveModel(built.model, path.join(dir, `${name}.onnx`), { externalData: true });
  const rng = new Random(11);
  for (let i = 0; i < samples; i++) {
    const d = path.join(dir, `${name}-calib`, `test_data_set_${i}`);
    fs.mkdirSync(d, { recursive: true });
    const x = Float32Array.from({ length: seq * HIDDEN }, () => rng.normal());
    writeTensorFile(path.join(d, 'input_0.pb'), tensorFromArray('x', { dtype: DataType.FLOAT, dims: [1, seq, HIDDEN], data: x }));
  }
}

interface ChildRun {
  status: number | null;
  seconds: number;
  peakBytes: number;
  killed: boolean;
  stdout: string;
  stderr: string;
}

/** Runs node with `argv`, polling its RSS; kills it past LIMIT_BYTES. */
function watched(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildRun> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20000)));
    let peak = 0;
    let killed = false;
    const poll = setInterval(() => {
      try {
        const s = fs.readFileSync(`/proc/${c.pid}/status`, 'utf8');
        const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(s)?.[1] ?? 0) * 1024;
        const rss = Number(/VmRSS:\s+(\d+) kB/.exec(s)?.[1] ?? 0) * 1024;
        peak = Math.max(peak, hwm);
        if (rss > LIMIT_BYTES && !killed) {
          killed = true;
          c.kill('SIGKILL');
        }
      } catch {
        /* the child has exited */
      }
    }, 100);
    c.on('exit', (status) => {
      clearInterval(poll);
      resolve({ status, seconds: (Date.now() - t0) / 1000, peakBytes: peak, killed, stdout, stderr });
    });
  });
}

/** FlexRound's share of the run from its JSON report, and the run scaled to 500 steps per linear (only the steps scale). */
function flexRoundSteps(wall: number, stdout: string): string {
  const fr = (JSON.parse(stdout) as { flexround: { iters: number; seconds: number; units: { stepSeconds?: number; kept: string }[] } }).flexround;
  const steps = fr.units.reduce((a, u) => a + (u.stepSeconds ?? 0), 0);
  const perStep = steps / fr.iters;
  const learned = fr.units.filter((u) => u.kept === 'learned').length;
  return `  flexround: ${fr.units.length} linears x ${fr.iters} steps in ${fr.seconds.toFixed(0)} s (${steps.toFixed(0)} s in steps: ${perStep.toFixed(1)} s per step over all linears, ${((1000 * perStep) / fr.units.length).toFixed(0)} ms per linear-step); ${learned} learned, ${fr.units.length - learned} kept their start; at 500 steps: ~${((wall + perStep * (500 - fr.iters)) / 3600).toFixed(1)} h`;
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');

async function main(): Promise<void> {
  if (args[0] === '--build') {
    build(args[1]!, Number(args[2]), Number(args[3]), Number(args[4]), args[5]!);
    return;
  }
  if (args[0] === '--latency') {
    const [a, b] = [loadModel(args[1]!), loadModel(args[2]!)];
    const feeds = { x: { dtype: DataType.FLOAT, dims: [1, 1, HIDDEN], data: Float32Array.from({ length: HIDDEN }, (_, i) => Math.sin(i)) } };
    const ms = await medianLatencies([a, b], feeds, { rounds: 10, warmup: 2, threads: os.availableParallelism() });
    process.stdout.write(JSON.stringify(ms));
    return;
  }
  const layers = Number(opt('--layers', '22'));
  const seq = Number(opt('--seq', '64'));
  const samples = Number(opt('--samples', '16'));
  const methods = opt('--methods', 'rtn,gptq,flexround').split(',');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-bench-1b-'));
  const cli = path.join(ROOT, 'bin/slimformer.js');
  try {
    console.log(`decoder: ${layers} layers, hidden 2048, 32 heads, MLP 5632 (SwiGLU), RMSNorm, rotary; calibration ${samples} samples x ${seq} tokens; ${os.availableParallelism()} cores, load ${load()}`);
    const b = await watched([SELF, '--build', dir, String(layers), String(seq), String(samples), 'decoder']);
    if (b.status !== 0) throw new Error(`building the decoder failed: ${b.killed ? 'killed above 12 GB' : b.stderr}`);
    const modelBytes = fs.statSync(path.join(dir, 'decoder.onnx.data')).size;
    console.log(`built in ${b.seconds.toFixed(0)} s: fp32 weights ${gib(modelBytes)} (${(modelBytes / 4 / 1e9).toFixed(2)}B parameters)`);
    console.log('method     wall      peak RSS    x fp32   output     load (1/5/15 min)');
    for (const method of methods) {
      const out = path.join(dir, `w4-${method}.onnx`);
      // layer-wise (the rows of each linear's input, a segment of the graph at a time); its steps per linear and start
      const extra = method === 'flexround' ? ['--flexround-mode', 'layer', '--iters', opt('--flexround-iters', '500'), '--flexround-start', opt('--flexround-start', 'gptq')] : [];
      const r = await watched([cli, 'quantize', path.join(dir, 'decoder.onnx'), '-o', out, '--scheme', 'w4', '--method', method, ...extra, '--calib', path.join(dir, 'decoder-calib'), '--json'], { SLIMFORMER_MEMTRACE: '1' });
      const outBytes = r.status === 0 ? fs.statSync(out).size + (fs.existsSync(`${out}.data`) ? fs.statSync(`${out}.data`).size : 0) : 0;
      const what = r.status === 0 ? gib(outBytes) : r.killed ? 'killed >12 GB' : `failed (${r.status})`;
      console.log(`${method.padEnd(10)} ${`${r.seconds.toFixed(0)} s`.padEnd(9)} ${gib(r.peakBytes).padEnd(11)} ${(r.peakBytes / modelBytes).toFixed(2).padEnd(8)} ${what.padEnd(10)} ${load()}`);
      if (r.status !== 0) console.log(r.stderr.split('\n').filter((l) => !l.startsWith('[memory]')).slice(-5).join('\n'));
      if (method === 'flexround' && r.status === 0) console.log(flexRoundSteps(r.seconds, r.stdout));
      fs.writeFileSync(path.join(os.tmpdir(), `slimformer-decoder-1b-${method}.memtrace.txt`), r.stderr);
      for (const f of [out, `${out}.data`]) if (method !== 'rtn') fs.rmSync(f, { force: true });
    }
    if (!args.includes('--no-latency')) {
      const s = await watched([SELF, '--build', dir, String(layers), '1', '2', 'step']);
      if (s.status !== 0) throw new Error(`building the one-token decoder failed: ${s.stderr}`);
      const q = await watched([cli, 'quantize', path.join(dir, 'step.onnx'), '-o', path.join(dir, 'step-w4.onnx'), '--scheme', 'w4', '--calib', path.join(dir, 'step-calib'), '--json']);
      if (q.status !== 0) throw new Error(`quantizing the one-token decoder failed: ${q.stderr}`);
      const l = spawnSync(process.execPath, [SELF, '--latency', path.join(dir, 'step.onnx'), path.join(dir, 'step-w4.onnx')], { encoding: 'utf8' });
      if (l.status !== 0) throw new Error(`latency failed: ${l.stderr}`);
      const [f, w] = JSON.parse(l.stdout) as number[];
      console.log(`decode step (batch 1, one token, no cache; median of 10): float ${f!.toFixed(1)} ms, w4 ${w!.toFixed(1)} ms (${(f! / w!).toFixed(2)}x faster); load ${load()}`);
    }
    console.log(`memory traces of each run: ${path.join(os.tmpdir(), 'slimformer-decoder-1b-<method>.memtrace.txt')}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
