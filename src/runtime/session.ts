// The only module that imports onnxruntime-node. Everything else passes ArrayTensors.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.js';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType, dtypeFromName, dtypeName } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { floatToFloat16Bits } from '../ir/float-bits.js';
import type { TypedArray } from '../ir/tensor.js';
import { modelToBytes, saveModel } from '../onnx/save.js';
import { traceMemory } from './memory-trace.js';

export interface SessionOptions {
  /** Threads inside one operator (default: SLIMFORMER_THREADS, or the machine's cores). */
  threads?: number;
  /** onnxruntime graph optimization level (default 'all'). Use 'disabled' to see every tensor. */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Intermediate tensors to return besides the model's outputs, by value name. They are added
   * as graph outputs to a copy of the model; the caller's model is not touched.
   */
  expose?: string[];
  /** Writes the graph onnxruntime actually runs (after its fusions) to this file. */
  optimizedModelPath?: string;
  /**
   * Keep onnxruntime's memory arena and memory-pattern planning (default true: fastest). Off
   * for sessions that expose many large intermediates, where the arena would keep the peak.
   */
  memoryArena?: boolean;
  /** Record onnxruntime's per-node timings; read them with `endProfiling()`. */
  profile?: boolean;
  /**
   * Let onnxruntime's worker threads spin between runs and ops (onnxruntime's default) instead of
   * sleeping. Default false: slimformer alternates runs with JS work (binding batches, metrics)
   * and with other sessions (baseline and candidate), and spinning workers take the cores that
   * work needs. Measured on 2 cores: a gate-style loop over bert_spam's eval set, two sessions
   * alternating, 459 ms spinning against 190 ms not; one session with JS between runs (vit_mnist)
   * 115 against 71 ms. Spinning helps only back-to-back runs of one session (bert_spam batch 1:
   * 0.28 against 0.33 ms), which is what a latency measurement does: it turns this on.
   */
  spinning?: boolean;
}

/** One node's kernel times from an onnxruntime profile. */
export interface NodeTiming {
  node: string;
  op: string;
  /** Microseconds in each run since the session was created (0 where a run did not run it). */
  micros: number[];
}

const SESSION_BYTES_LIMIT = 2 ** 31 - 1 - 64 * 2 ** 20;

/**
 * Above this many bytes of weights a session is handed a file with external data instead of
 * the model's bytes. From bytes, onnxruntime keeps the protobuf buffer, its parsed copy and the
 * initializers it makes from it: a BERT-base session (325 MB of weights) took 1.0-1.2 GB of
 * resident memory. From a file it maps the data (page-aligned by saveModel) and, prepacking
 * MatMul weights, keeps about one copy: 0.36 GB (measured with onnxruntime-node 1.30). Small
 * sessions too: a 10 MiB segment of block-wise verification raised the resident memory by
 * 37 MiB from bytes; at 4 MiB (was 32) BERT-base's w4 RTN verification peaked 546 -> 490 MiB.
 * SLIMFORMER_SESSION_FILE_BYTES overrides it (0: always through a file).
 */
function sessionFileBytes(): number {
  const env = process.env.SLIMFORMER_SESSION_FILE_BYTES;
  const n = env === undefined || env === '' ? NaN : Number(env);
  return Number.isFinite(n) && n >= 0 ? n : 4 * 2 ** 20;
}

export function defaultThreads(): number {
  const env = Number(process.env.SLIMFORMER_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/** An onnxruntime session over an IR model. */
export class Session {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    private readonly constants: Map<string, ArrayTensor>,
    private readonly tempDir: string | undefined,
    private readonly profileDir: string | undefined,
    /** The model's float16 inputs: float32 feeds for them are rounded to float16. */
    private readonly float16Inputs: ReadonlySet<string> = new Set(),
  ) {}

  static async create(model: Model, options: SessionOptions = {}): Promise<Session> {
    let m = model;
    const constants = new Map<string, ArrayTensor>();
    if (options.expose && options.expose.length > 0) {
      m = model.clone();
      const outputs = new Set(m.graph.outputs.map((v) => v.name));
      for (const name of options.expose) {
        const v = m.graph.value(name);
        if (!v) throw new UserError(`the model has no tensor named '${name}' to expose`);
        if (outputs.has(name) || v.isGraphInput()) continue;
        if (v.initializer) {
          constants.set(name, { dtype: v.initializer.dtype, dims: [...v.initializer.dims], data: v.initializer.toTypedArray() });
          continue;
        }
        m.graph.outputs.push(v);
        outputs.add(name);
      }
    }
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: options.optimization ?? 'all',
      // fatal only: a failed run is reported by slimformer's own sentence, not also by onnxruntime's log line
      logSeverityLevel: 4,
    };
    if (!options.spinning) sessionOptions.extra = { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } };
    if (options.memoryArena === false) {
      sessionOptions.enableCpuMemArena = false;
      sessionOptions.enableMemPattern = false;
    }
    if (options.optimizedModelPath) sessionOptions.optimizedModelFilePath = options.optimizedModelPath;
    const profileDir = options.profile ? fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-profile-')) : undefined;
    if (profileDir) {
      sessionOptions.enableProfiling = true;
      sessionOptions.profileFilePrefix = path.join(profileDir, 'profile');
    }
    let tempDir: string | undefined;
    let session: ort.InferenceSession;
    const dataBytes = m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
    try {
      if (dataBytes > SESSION_BYTES_LIMIT || dataBytes > sessionFileBytes()) {
        // too big for one protobuf buffer, or big enough that memory counts: hand onnxruntime a
        // file with external data (written from where the tensors are, no copy in memory)
        tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-session-'));
        const file = path.join(tempDir, 'model.onnx');
        saveModel(m, file, { externalData: true, scratch: true });
        session = await ort.InferenceSession.create(file, sessionOptions);
      } else {
        session = await ort.InferenceSession.create(modelToBytes(m), sessionOptions);
      }
    } catch (e) {
      if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
      if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
      const why = e instanceof Error ? e.message : String(e);
      throw new UserError(`onnxruntime cannot load ${model.sourcePath ?? 'the model'}: ${why.split('\n')[0]}`);
    }
    traceMemory(`onnxruntime session over ${(dataBytes / 2 ** 20).toFixed(0)} MiB of weights${tempDir ? ' (from a file)' : ''} created`);
    const float16Inputs = new Set(m.graph.inputs.filter((v) => v.dtype === DataType.FLOAT16).map((v) => v.name));
    return new Session(session, session.inputNames, session.outputNames, constants, tempDir, profileDir, float16Inputs);
  }

  /** Runs the model; returns the requested outputs (default: all, plus exposed tensors). */
  async run(feeds: Record<string, ArrayTensor>, fetch?: string[]): Promise<Record<string, ArrayTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = toOrt(t.dtype === DataType.FLOAT && this.float16Inputs.has(name) ? toFloat16(t) : t);
    const wanted = fetch ?? [...this.outputNames, ...this.constants.keys()];
    const fromSession = wanted.filter((n) => !this.constants.has(n) && !(n in feeds));
    let results: ort.InferenceSession.OnnxValueMapType = {};
    try {
      // onnxruntime refuses an empty fetch list; everything asked for may be a feed or constant
      if (fromSession.length > 0) results = await this.session.run(ortFeeds, fromSession);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new UserError(`onnxruntime failed to run the model: ${why.split('\n')[0]}`);
    }
    const out: Record<string, ArrayTensor> = {};
    for (const name of wanted) {
      const c = this.constants.get(name) ?? feeds[name];
      if (c) out[name] = c;
      else out[name] = fromOrt(results[name] as ort.Tensor, name);
    }
    return out;
  }

  /**
   * Stops profiling (a session created with `profile: true`) and returns each node's kernel time
   * in every run so far, slowest in total first. The session runs on, unprofiled.
   */
  endProfiling(): NodeTiming[] {
    if (!this.profileDir) throw new Error('this session was not created with profile: true');
    this.session.endProfiling();
    const file = fs.readdirSync(this.profileDir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error(`onnxruntime wrote no profile into ${this.profileDir}`);
    type Event = { cat?: string; name?: string; ts?: number; dur?: number; args?: { op_name?: string } };
    const events = JSON.parse(fs.readFileSync(path.join(this.profileDir, file), 'utf8')) as Event[];
    fs.rmSync(this.profileDir, { recursive: true, force: true });
    // a node's event belongs to the run whose span holds its start
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts! - b.ts!);
    const runOf = (ts: number): number => runs.findIndex((r) => ts >= r.ts! && ts <= r.ts! + r.dur!);
    const byNode = new Map<string, NodeTiming>();
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time')) continue;
      const run = runOf(e.ts ?? 0);
      if (run < 0) continue;
      const node = e.name.slice(0, -'_kernel_time'.length);
      const t = byNode.get(node) ?? { node, op: e.args?.op_name ?? '?', micros: new Array<number>(runs.length).fill(0) };
      t.micros[run]! += e.dur ?? 0;
      byNode.set(node, t);
    }
    const total = (t: NodeTiming) => t.micros.reduce((a, b) => a + b, 0);
    return [...byNode.values()].sort((a, b) => total(b) - total(a));
  }

  async release(): Promise<void> {
    await this.session.release();
    if (this.tempDir) fs.rmSync(this.tempDir, { recursive: true, force: true });
    if (this.profileDir) fs.rmSync(this.profileDir, { recursive: true, force: true });
  }
}

/** A float32 tensor rounded to float16 (a model converted with float16 inputs takes the same datasets). */
function toFloat16(t: ArrayTensor): ArrayTensor {
  const src = t.data as Float32Array;
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToFloat16Bits(src[i]!);
  return { dtype: DataType.FLOAT16, dims: t.dims, data: out };
}

function toOrt(t: ArrayTensor): ort.Tensor {
  if (t.dtype === DataType.BOOL) return new ort.Tensor('bool', t.data as Uint8Array, t.dims);
  if (t.dtype === DataType.FLOAT16) return new ort.Tensor('float16', t.data as Uint16Array, t.dims);
  const name = dtypeName(t.dtype) as ort.Tensor.Type;
  return new ort.Tensor(name, t.data as never, t.dims);
}

function fromOrt(t: ort.Tensor, name: string): ArrayTensor {
  const dtype = dtypeFromName(t.type);
  if (dtype === undefined) throw new Error(`output '${name}' has type ${t.type}, which slimformer does not handle`);
  let data = t.data as TypedArray;
  if (dtype === DataType.BOOL && !(data instanceof Uint8Array)) data = Uint8Array.from(data as unknown as ArrayLike<number>);
  return { dtype, dims: [...t.dims], data };
}

