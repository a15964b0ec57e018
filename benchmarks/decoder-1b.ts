// Benchmark: `slimformer quantize --scheme w4` on a decoder with TinyLlama's shape, as child
// processes, with their wall time and peak RSS.
//
//   npm run build && npm run bench:decoder-1b [-- --layers 22] [-- --seq 64] [-- --samples 16]
//       [-- --methods rtn,gptq,flexround] [-- --variants kv,nocache] [-- --past 128] [-- --no-latency]
//       [-- --flexround-iters 500] [-- --flexround-start gptq|rtn]
//
// The decoder (tests/helpers/llama-builder.ts): TinyLlama-1.1B's dimensions (hidden 2048, 22
// layers, 32 query heads / 4 key/value heads, SwiGLU MLP 5632, vocabulary 32000, no biases),
// embedding table (Gather over input_ids) and LM head (MatMul to logits), RMSNorm, rotary from
// position_ids, causal mask over past + new combined with attention_mask; random weights, saved
// with external data. Variant 'kv' has the Optimum / transformers.js cache signature
// (past_key_values.N.key/value [batch, 4, past, 64] in, present.N.key/value out); 'nocache'
// is the same graph (the same weights) without it. --layers N builds a shorter one.
//
// For each variant and method: wall time, peak RSS of the quantize process (VmHWM, which counts
// the onnxruntime-mapped weight file pages too), its ratio to the fp32 model's bytes, output size,
// load averages, and what quantize did with the embedding table and the LM head. A watchdog kills
// a child above 12 GB RSS (the machine is shared). Latency, float vs w4 RTN (median, batch 1):
// a decode step (one token with a cache of --past tokens, kv variant) and a prefill of --past
// tokens (empty past). Targets (issue 17): RTN < 3 min, GPTQ < 30 min, peak RSS < 1.5x the fp32
// model.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Random } from '../src/autodiff/random.js';
import type { ArrayTensor } from '../src/ir/array-tensor.js';
import { DataType } from '../src/ir/dtype.js';
import { tensorFromArray } from '../src/ir/array-tensor.js';
import { loadModel, saveModel, writeTensorFile } from '../src/onnx/index.js';
import { medianLatencies } from '../src/runtime/latency.js';
import { buildLlama, cacheNames, llamaFeeds, llamaParameters, llamaDefaults, TINYLLAMA } from '../tests/helpers/llama-builder.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SELF = fileURLToPath(import.meta.url);
const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : fallback);
const LIMIT_BYTES = 12 * 2 ** 30;
const HEAD = TINYLLAMA.hidden / TINYLLAMA.heads;

const shape = (layers: number, kvCache: boolean) => ({ ...TINYLLAMA, layers, kvCache, seed: 7 });

/** Child mode: builds the model and writes `samples` calibration samples of `seq` tokens (empty past). */
function build(dir: string, layers: number, seq: number, samples: number, variant: string): void {
  const kv = variant === 'kv';
  const built = buildLlama(shape(layers, kv));
  saveModel(built.model, path.join(dir, `${variant}.onnx`), { externalData: true });
  const rng = new Random(11);
  for (let i = 0; i < samples; i++) {
    const d = path.join(dir, `${variant}-calib`, `test_data_set_${i}`);
    fs.mkdirSync(d, { recursive: true });
    const feeds = llamaFeeds(Array.from({ length: seq }, () => Math.floor(rng.uniform() * TINYLLAMA.vocab)));
    if (kv) for (const n of cacheNames('past_key_values', layers)) feeds[n] = { dtype: DataType.FLOAT, dims: [1, TINYLLAMA.kvHeads, 0, HEAD], data: new Float32Array(0) };
    Object.entries(feeds).forEach(([name, t], k) => writeTensorFile(path.join(d, `input_${k}.pb`), tensorFromArray(name, t)));
  }
}

/** Child mode: median latencies of the float and w4 model, decode step with a cache (kv) and prefill. */
async function latency(float: string, w4: string, variant: string, layers: number, past: number): Promise<void> {
  const models = [loadModel(float), loadModel(w4)];
  const rng = new Random(5);
  const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rng.uniform() * TINYLLAMA.vocab));
  const threads = os.availableParallelism();
  const out: Record<string, number[]> = {};
  if (variant === 'kv') {
    const step: Record<string, ArrayTensor> = llamaFeeds(ids(1), past);
    for (const n of cacheNames('past_key_values', layers)) {
      step[n] = { dtype: DataType.FLOAT, dims: [1, TINYLLAMA.kvHeads, past, HEAD], data: Float32Array.from({ length: TINYLLAMA.kvHeads * past * HEAD }, () => rng.normal()) };
    }
    out.decode = await medianLatencies(models, step, { rounds: 10, warmup: 2, threads });
  }
  const prefill: Record<string, ArrayTensor> = llamaFeeds(ids(past));
  if (variant === 'kv') for (const n of cacheNames('past_key_values', layers)) prefill[n] = { dtype: DataType.FLOAT, dims: [1, TINYLLAMA.kvHeads, 0, HEAD], data: new Float32Array(0) };
  out.prefill = await medianLatencies(models, prefill, { rounds: 3, warmup: 1, threads });
  process.stdout.write(JSON.stringify(out));
}

interface ChildRun {
  status: number | null;
  seconds: number;
  peakBytes: number;
  killed: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Runs `command` (an executable and its arguments), polling its RSS; kills it past LIMIT_BYTES.
 * The CLI runs as bin/slimformer.js itself, as the installed `slimformer` command does: its
 * first line sets glibc's allocator for it (docs/scale.md), which `node bin/slimformer.js` skips.
 */
function watched(command: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildRun> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
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
  const fr = (JSON.parse(stdout.trim().split('\n').pop()!) as { flexround: { iters: number; seconds: number; units: { stepSeconds?: number; kept: string }[] } }).flexround;
  const steps = fr.units.reduce((a, u) => a + (u.stepSeconds ?? 0), 0);
  const perStep = steps / fr.iters;
  const learned = fr.units.filter((u) => u.kept === 'learned').length;
  return `  flexround: ${fr.units.length} linears x ${fr.iters} steps in ${fr.seconds.toFixed(0)} s (${steps.toFixed(0)} s in steps: ${perStep.toFixed(1)} s per step over all linears, ${((1000 * perStep) / fr.units.length).toFixed(0)} ms per linear-step); ${learned} learned, ${fr.units.length - learned} kept their start; at 500 steps: ~${((wall + perStep * (500 - fr.iters)) / 3600).toFixed(1)} h`;
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const size = (f: string): number => (fs.existsSync(f) ? fs.statSync(f).size : 0);

interface QuantizeJson {
  layers: { name: string; bits: number }[];
  embeddings: { name: string; bits: number }[];
  skipped: { name: string; reason: string }[];
  excluded: { name: string }[];
}

/** What quantize did with the embedding table and the LM head, from its --json summary. */
function tablesAndHead(stdout: string): string {
  try {
    const s = JSON.parse(stdout.trim().split('\n').pop()!) as QuantizeJson;
    const head = s.layers.find((l) => /lm_head/.test(l.name));
    const headSkip = s.skipped.find((l) => /lm_head/.test(l.name));
    const emb = s.embeddings.map((e) => `${e.name} ${e.bits}-bit`).join(', ') || 'no embedding table quantized';
    const bits = [...new Set(s.layers.map((l) => l.bits))].join('/');
    return `${s.layers.length} linears (${bits}-bit); embedding: ${emb}; LM head: ${head ? `${head.bits}-bit` : headSkip ? `skipped (${headSkip.reason})` : 'float'}; ${s.skipped.length} skipped, ${s.excluded.length} excluded`;
  } catch {
    return 'no summary';
  }
}

/** Bytes of the output's embedding table, LM head and everything else (initializers, as stored). */
function outputBytes(file: string): string {
  const parts = { embedding: 0, head: 0, rest: 0 };
  for (const v of loadModel(file).graph.initializers) {
    const b = v.initializer!.byteLength;
    if (v.name.includes('embed_tokens')) parts.embedding += b;
    else if (v.name.startsWith('lm_head')) parts.head += b;
    else parts.rest += b;
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  return `embedding table ${mib(parts.embedding)} (fp32 ${mib(TINYLLAMA.vocab * TINYLLAMA.hidden * 4)}), LM head ${mib(parts.head)} (fp32 ${mib(TINYLLAMA.vocab * TINYLLAMA.hidden * 4)}), the rest ${mib(parts.rest)}`;
}

async function main(): Promise<void> {
  if (args[0] === '--build') return build(args[1]!, Number(args[2]), Number(args[3]), Number(args[4]), args[5]!);
  if (args[0] === '--latency') return latency(args[1]!, args[2]!, args[3]!, Number(args[4]), Number(args[5]));
  const layers = Number(opt('--layers', '22'));
  const seq = Number(opt('--seq', '64'));
  const samples = Number(opt('--samples', '16'));
  const past = Number(opt('--past', '128'));
  const methods = opt('--methods', 'rtn,gptq,flexround').split(',');
  const variants = opt('--variants', 'kv,nocache').split(',');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-bench-1b-'));
  const cli = path.join(ROOT, 'bin/slimformer.js');
  const params = llamaParameters(llamaDefaults(shape(layers, false)));
  try {
    console.log(`decoder: ${layers} layers, hidden 2048, 32 heads / 4 kv heads, MLP 5632 (SwiGLU), vocabulary 32000, RMSNorm, rotary; ${(params / 1e9).toFixed(3)}B parameters; calibration ${samples} samples x ${seq} tokens; ${os.availableParallelism()} cores, load ${load()}`);
    for (const variant of variants) {
      const b = await watched([process.execPath, SELF, '--build', dir, String(layers), String(seq), String(samples), variant]);
      if (b.status !== 0) throw new Error(`building the ${variant} decoder failed: ${b.killed ? 'killed above 12 GB' : b.stderr}`);
      const model = path.join(dir, `${variant}.onnx`);
      const modelBytes = size(`${model}.data`);
      console.log(`\n[${variant}] built in ${b.seconds.toFixed(0)} s: fp32 weights ${gib(modelBytes)}`);
      console.log('method     wall      peak RSS    x fp32   output     load (1/5/15 min)');
      for (const method of methods) {
        const out = path.join(dir, `${variant}-w4-${method}.onnx`);
        // layer-wise (the rows of each linear's input, a segment of the graph at a time); its steps per linear and start
        const extra = method === 'flexround' ? ['--flexround-mode', 'layer', '--iters', opt('--flexround-iters', '500'), '--flexround-start', opt('--flexround-start', 'gptq')] : [];
        const r = await watched([cli, 'quantize', model, '-o', out, '--scheme', 'w4', '--method', method, ...extra, '--calib', path.join(dir, `${variant}-calib`), '--json'], { SLIMFORMER_MEMTRACE: '1' });
        const outBytes = r.status === 0 ? size(out) + size(`${out}.data`) : 0;
        const what = r.status === 0 ? gib(outBytes) : r.killed ? 'killed >12 GB' : `failed (${r.status})`;
        console.log(`${method.padEnd(10)} ${`${r.seconds.toFixed(0)} s`.padEnd(9)} ${gib(r.peakBytes).padEnd(11)} ${(r.peakBytes / modelBytes).toFixed(2).padEnd(8)} ${what.padEnd(10)} ${load()}`);
        if (r.status === 0) console.log(`           ${tablesAndHead(r.stdout)}\n           ${outputBytes(out)}`);
        else console.log(r.stderr.split('\n').filter((l) => !l.startsWith('[memory]')).slice(-5).join('\n'));
        if (method === 'flexround' && r.status === 0) console.log(flexRoundSteps(r.seconds, r.stdout));
        fs.writeFileSync(path.join(os.tmpdir(), `slimformer-decoder-1b-${variant}-${method}.memtrace.txt`), r.stderr);
        if (method !== 'rtn') for (const f of [out, `${out}.data`]) fs.rmSync(f, { force: true });
      }
      if (!args.includes('--no-latency')) {
        const w4 = path.join(dir, `${variant}-w4-rtn.onnx`);
        if (!fs.existsSync(w4)) {
          const q = await watched([cli, 'quantize', model, '-o', w4, '--scheme', 'w4', '--calib', path.join(dir, `${variant}-calib`), '--json']);
          if (q.status !== 0) throw new Error(`quantizing the ${variant} decoder for the latency failed: ${q.stderr}`);
        }
        const l = spawnSync(process.execPath, [SELF, '--latency', model, w4, variant, String(layers), String(past)], { encoding: 'utf8' });
        if (l.status !== 0) throw new Error(`latency failed: ${l.stderr}`);
        const ms = JSON.parse(l.stdout) as Record<string, number[]>;
        const line = (what: string, [f, w]: number[]) => `${what}: float ${f!.toFixed(1)} ms, w4 ${w!.toFixed(1)} ms (${(f! / w!).toFixed(2)}x)`;
        if (ms.decode) console.log(`${line(`decode step (batch 1, one token, cache of ${past} tokens; median of 10)`, ms.decode)}; load ${load()}`);
        console.log(`${line(`prefill (batch 1, ${past} tokens, empty past; median of 3)`, ms.prefill!)}; load ${load()}`);
      }
      for (const f of fs.readdirSync(dir)) if (f.startsWith(`${variant}`)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    }
    console.log(`\nmemory traces of each run: ${path.join(os.tmpdir(), 'slimformer-decoder-1b-<variant>-<method>.memtrace.txt')}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
