// Benchmark: which operators onnxruntime-node's CPU build runs in float16, how accurately and how
// fast. The figures behind the list of operators `--scheme fp16` keeps in float32 (docs/fp16.md,
// src/export/fp16.ts).
//
//   npm run build && node dist/benchmarks/fp16-ops.js [--runs 30]
//
// For each operator: one single-node model in float32 and the same node with float16 inputs and
// outputs. Both get the same inputs (random values rounded to float16 first, so only the
// operator's own arithmetic differs). Printed per operator:
//  - kernel: 'fp16' when onnxruntime runs the node as it is; 'cast' when it wraps the node in
//    Casts to float32 and back (its InsertCastTransformer, for operators without a float16 CPU
//    kernel: the node then computes in float32 anyway); 'fails' when the model does not load/run;
//  - SQNR of the float16 node's output against the float32 node's (dB), and the largest
//    relative error;
//  - the float16 model's kernel time (onnxruntime's profile: the node and any Casts it inserted)
//    over the float32 node's, median of --runs runs, one thread.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ArrayTensor } from '../src/ir/array-tensor.js';
import type { Attribute } from '../src/ir/attribute.js';
import { DataType } from '../src/ir/dtype.js';
import { float16BitsToFloat, floatToFloat16Bits } from '../src/ir/float-bits.js';
import { Graph } from '../src/ir/graph.js';
import { Model } from '../src/ir/model.js';
import { Tensor } from '../src/ir/tensor.js';
import { loadModel } from '../src/onnx/load.js';
import { Session } from '../src/runtime/session.js';

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] ?? 30) || 30;

interface Operand {
  dims: number[];
  /** Random uniform in [lo, hi]; or fixed values. */
  range?: [number, number];
  values?: number[];
  /** Integer operand (int64), never converted. */
  int?: boolean;
  /** A constant (initializer) rather than a graph input. */
  constant?: boolean;
}

interface Probe {
  label: string;
  op: string;
  domain?: string;
  opset?: number;
  inputs: Operand[];
  attributes?: Record<string, Attribute>;
  outputs?: number;
}

const X = [16, 128, 256];
const f = (dims: number[], lo = -4, hi = 4, constant = false): Operand => ({ dims, range: [lo, hi], constant });
const ints = (values: number[]): Operand => ({ dims: [values.length], values, int: true, constant: true });
const int = (name: string, value: number): Record<string, Attribute> => ({ [name]: { type: 'int', value } });

const PROBES: Probe[] = [
  { label: 'MatMul [16,128,256]x[256,256]', op: 'MatMul', inputs: [f(X, -2, 2), f([256, 256], -0.1, 0.1, true)] },
  { label: 'Gemm [2048,256]x[256,256]^T', op: 'Gemm', inputs: [f([2048, 256], -2, 2), f([256, 256], -0.1, 0.1, true), f([256], -0.1, 0.1, true)], attributes: int('transB', 1) },
  { label: 'Add', op: 'Add', inputs: [f(X), f([256], -1, 1, true)] },
  { label: 'Sub', op: 'Sub', inputs: [f(X), f(X)] },
  { label: 'Mul', op: 'Mul', inputs: [f(X), f([256], -1, 1, true)] },
  { label: 'Div', op: 'Div', inputs: [f(X), f(X, 0.5, 4)] },
  { label: 'Pow x^2', op: 'Pow', inputs: [f(X), { dims: [], values: [2], constant: true }] },
  { label: 'Sqrt', op: 'Sqrt', inputs: [f(X, 0.01, 100)] },
  { label: 'Reciprocal', op: 'Reciprocal', inputs: [f(X, 0.1, 10)] },
  { label: 'Exp', op: 'Exp', inputs: [f(X, -8, 8)] },
  { label: 'Log', op: 'Log', inputs: [f(X, 0.01, 100)] },
  { label: 'Neg', op: 'Neg', inputs: [f(X)] },
  { label: 'Erf', op: 'Erf', inputs: [f(X)] },
  { label: 'Tanh', op: 'Tanh', inputs: [f(X)] },
  { label: 'Sigmoid', op: 'Sigmoid', inputs: [f(X, -8, 8)] },
  { label: 'Relu', op: 'Relu', inputs: [f(X)] },
  { label: 'Gelu (opset 20)', op: 'Gelu', opset: 20, inputs: [f(X)] },
  { label: 'Sin', op: 'Sin', inputs: [f(X)] },
  { label: 'Cos', op: 'Cos', inputs: [f(X)] },
  { label: 'Clip', op: 'Clip', inputs: [f(X), { dims: [], values: [-1], constant: true }, { dims: [], values: [1], constant: true }] },
  { label: 'Softmax axis -1', op: 'Softmax', inputs: [f(X, -8, 8)], attributes: int('axis', -1) },
  { label: 'LayerNormalization', op: 'LayerNormalization', opset: 17, inputs: [f(X, -4, 4), f([256], 0.5, 1.5, true), f([256], -0.1, 0.1, true)], attributes: int('axis', -1) },
  { label: 'ReduceMean axis -1', op: 'ReduceMean', opset: 14, inputs: [f(X)], attributes: { axes: { type: 'ints', value: [-1] } } },
  { label: 'ReduceSum axis -1', op: 'ReduceSum', opset: 14, inputs: [f(X), ints([-1])] },
  { label: 'ReduceMax axis -1', op: 'ReduceMax', opset: 14, inputs: [f(X)], attributes: { axes: { type: 'ints', value: [-1] } } },
  { label: 'Where', op: 'Where', inputs: [{ dims: X, values: undefined, range: [0, 1] }, f(X), f(X)] },
  { label: 'Equal', op: 'Equal', inputs: [f(X, -2, 2), f(X, -2, 2)] },
  { label: 'Less', op: 'Less', inputs: [f(X), f(X)] },
  { label: 'Max', op: 'Max', inputs: [f(X), f(X)] },
  { label: 'Min', op: 'Min', inputs: [f(X), f(X)] },
  { label: 'Transpose', op: 'Transpose', inputs: [f(X)], attributes: { perm: { type: 'ints', value: [0, 2, 1] } } },
  { label: 'Reshape', op: 'Reshape', inputs: [f(X), ints([16, 128, 8, 32])] },
  { label: 'Concat', op: 'Concat', inputs: [f(X), f(X)], attributes: int('axis', -1) },
  { label: 'Gather (embedding rows)', op: 'Gather', inputs: [f([1000, 256], -1, 1, true), { dims: [16, 128], range: [0, 999], int: true }], attributes: int('axis', 0) },
  { label: 'Slice', op: 'Slice', inputs: [f(X), ints([0]), ints([64]), ints([-1])] },
  { label: 'Split', op: 'Split', opset: 13, inputs: [f(X), ints([128, 128])], attributes: int('axis', -1), outputs: 2 },
  { label: 'Expand', op: 'Expand', inputs: [f([16, 1, 256]), ints([16, 128, 256])] },
  { label: 'Unsqueeze', op: 'Unsqueeze', inputs: [f(X), ints([1])] },
  { label: 'Range', op: 'Range', inputs: [{ dims: [], values: [0], constant: true }, { dims: [], values: [100], constant: true }, { dims: [], values: [1], constant: true }] },
  { label: 'CumSum', op: 'CumSum', inputs: [f(X, 0, 1), { dims: [], values: [-1], int: true, constant: true }] },
  { label: 'Trilu', op: 'Trilu', inputs: [f([16, 128, 128])] },
  { label: 'Conv 3x3 (patch)', op: 'Conv', inputs: [f([16, 3, 32, 32], -1, 1), f([64, 3, 4, 4], -0.2, 0.2, true), f([64], -0.1, 0.1, true)], attributes: { strides: { type: 'ints', value: [4, 4] } } },
  { label: 'ConstantOfShape', op: 'ConstantOfShape', inputs: [ints([16, 128, 256])], attributes: { value: { type: 'tensor', value: Tensor.from('value', DataType.FLOAT, [1], [0.5]) } } },
  { label: 'com.microsoft MatMulNBits 4-bit', op: 'MatMulNBits', domain: 'com.microsoft', inputs: [f(X, -2, 2), { dims: [256, 8, 16], range: [0, 255], int: true, constant: true }, f([256 * 8], 0.001, 0.02, true)], attributes: { K: { type: 'int', value: 256 }, N: { type: 'int', value: 256 }, bits: { type: 'int', value: 4 }, block_size: { type: 'int', value: 32 }, accuracy_level: { type: 'int', value: 4 } } },
  { label: 'com.microsoft SimplifiedLayerNormalization', op: 'SimplifiedLayerNormalization', inputs: [f(X), f([256], 0.5, 1.5, true)], attributes: { axis: { type: 'int', value: -1 }, epsilon: { type: 'float', value: 1e-6 } } },
];

/** Deterministic pseudo-random numbers (mulberry32), so every run prints the same figures. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function size(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The operand's values, rounded to float16 for float operands. */
function valuesOf(o: Operand, rand: () => number, op: string, index: number): number[] {
  if (o.values) return o.values;
  const [lo, hi] = o.range!;
  const n = size(o.dims);
  const out = new Array<number>(n);
  if (op === 'Where' && index === 0) {
    for (let i = 0; i < n; i++) out[i] = rand() < 0.5 ? 1 : 0;
    return out;
  }
  for (let i = 0; i < n; i++) {
    const x = lo + (hi - lo) * rand();
    out[i] = o.int ? Math.floor(x) : float16BitsToFloat(floatToFloat16Bits(x));
  }
  return out;
}

function operandType(p: Probe, i: number, o: Operand, floatType: DataType): DataType {
  if (p.op === 'Where' && i === 0) return DataType.BOOL;
  if (p.op === 'MatMulNBits' && i === 1) return DataType.UINT8;
  if (o.int) return DataType.INT64;
  return floatType;
}

function outputType(p: Probe, floatType: DataType): DataType {
  if (['Equal', 'Less'].includes(p.op)) return DataType.BOOL;
  return floatType;
}

function build(p: Probe, values: number[][], floatType: DataType): { model: Model; feeds: Record<string, ArrayTensor> } {
  const g = new Graph('probe');
  const feeds: Record<string, ArrayTensor> = {};
  const ins = p.inputs.map((o, i) => {
    const dtype = operandType(p, i, o, floatType);
    const name = `in${i}`;
    if (o.constant) {
      const t = p.op === 'ConstantOfShape' ? Tensor.from(name, DataType.INT64, o.dims, values[i]!) : Tensor.from(name, dtype, o.dims, values[i]!);
      return g.addInitializer(t);
    }
    const v = g.addInput(name, { kind: 'tensor', dtype, shape: o.dims });
    feeds[name] = { dtype, dims: o.dims, data: Tensor.from(name, dtype, o.dims, values[i]!).toTypedArray() };
    return v;
  });
  let attributes = p.attributes;
  if (p.op === 'ConstantOfShape') attributes = { value: { type: 'tensor', value: Tensor.from('value', floatType, [1], [0.5]) } };
  const node = g.addNode(p.op, ins, Array.from({ length: p.outputs ?? 1 }, (_, i) => `out${i}`), { domain: p.domain, attributes });
  for (const o of node.outputs) {
    o.type = { kind: 'tensor', dtype: outputType(p, floatType), shape: undefined };
    g.outputs.push(o);
  }
  const m = new Model(g);
  m.irVersion = 8;
  m.opsetImports = new Map([['', p.opset ?? 17]]);
  if (p.domain) m.opsetImports.set(p.domain, 1);
  return { model: m, feeds };
}

function toNumbers(t: ArrayTensor): number[] {
  if (t.dtype === DataType.FLOAT16) return Array.from(t.data as Uint16Array, float16BitsToFloat);
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/** Median over runs of the summed kernel time of every node onnxruntime ran (inserted Casts included), ms. */
async function kernelMillis(model: Model, feeds: Record<string, ArrayTensor>): Promise<number> {
  const session = await Session.create(model, { threads: 1, profile: true });
  try {
    for (let i = 0; i < runs + 3; i++) await session.run(feeds);
    const nodes = session.endProfiling();
    const perRun = Array.from({ length: runs }, (_, r) => nodes.reduce((a, n) => a + n.micros[r + 3]!, 0) / 1000);
    perRun.sort((a, b) => a - b);
    return perRun[Math.floor(perRun.length / 2)]!;
  } finally {
    await session.release();
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-fp16-ops-'));
console.log(`onnxruntime-node CPU, float16 node against float32 node on the same (float16-rounded) inputs; ${runs} runs, 1 thread`);
console.log('operator'.padEnd(44) + 'kernel  SQNR dB   max rel err  time fp16/fp32');
try {
  for (const [k, p] of PROBES.entries()) {
    const rand = rng(1234 + k);
    const values = p.inputs.map((o, i) => valuesOf(o, rand, p.op, i));
    const a = build(p, values, DataType.FLOAT);
    const b = build(p, values, DataType.FLOAT16);
    const file = path.join(dir, `${k}.onnx`);
    let kernel = 'fp16';
    let line: string;
    try {
      const sa = await Session.create(a.model, { threads: 1 });
      const sb = await Session.create(b.model, { threads: 1, optimizedModelPath: file, optimization: 'basic' });
      const ya = await sa.run(a.feeds);
      const yb = await sb.run(b.feeds);
      // the transformer names the Casts it inserts; a float16 kernel needs none
      const optimized = loadModel(file);
      if (optimized.graph.nodes.some((n) => n.opType === 'Cast')) kernel = 'cast';
      const ra = toNumbers(ya['out0']!);
      const rb = toNumbers(yb['out0']!);
      let signal = 0;
      let noise = 0;
      let worst = 0;
      for (let i = 0; i < ra.length; i++) {
        signal += ra[i]! ** 2;
        noise += (ra[i]! - rb[i]!) ** 2;
        const rel = Math.abs(ra[i]! - rb[i]!) / Math.max(Math.abs(ra[i]!), 1e-3);
        if (!(rel <= worst)) worst = rel;
      }
      const sqnr = noise === 0 ? Infinity : 10 * Math.log10(signal / noise);
      await sa.release();
      await sb.release();
      const ta = await kernelMillis(a.model, a.feeds);
      const tb = await kernelMillis(b.model, b.feeds);
      line = `${kernel.padEnd(8)}${(Number.isFinite(sqnr) ? sqnr.toFixed(1) : 'exact').padStart(7)}  ${worst.toExponential(2).padStart(11)}  ${(tb / ta).toFixed(2).padStart(6)}x (${ta.toFixed(3)} -> ${tb.toFixed(3)} ms)`;
    } catch (e) {
      line = `fails   ${(e instanceof Error ? e.message : String(e)).slice(0, 110)}`;
    }
    console.log(p.label.padEnd(44) + line);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
