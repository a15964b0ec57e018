// The fp16 scheme of the quantize pass: the whole model converted to float16 (export/fp16.ts),
// then run against the float model on calibration samples before it is returned, like every
// quantized output.
import { UserError } from '../errors.js';
import { convertToFloat16, type Float16Result } from '../export/fp16.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { QuantizeOptions } from '../quantize/scheme.js';
import { assertNotQuantized } from '../quantize/select.js';
import { compareModels, type Comparison } from '../quantize/verify.js';
import { cleanup } from './cleanup.js';
import type { PassContext, PassResult } from './pass.js';
import type { QuantizeSummary } from './quantize.js';

/** What the float16 conversion did, for the quantize summary. */
export interface Float16Summary {
  keepIoTypes: boolean;
  tensors: number;
  elements: number;
  clamped: number;
  flushed: number;
  casts: number;
  /** Nodes kept in float32, counted per operator and reason. */
  kept: { op: string; reason: string; nodes: number }[];
}

export function float16Summary(r: Float16Result, keepIoTypes: boolean): Float16Summary {
  const groups = new Map<string, { op: string; reason: string; nodes: number }>();
  for (const k of r.kept) {
    const key = `${k.op}\u0000${k.reason}`;
    const g = groups.get(key) ?? { op: k.op, reason: k.reason, nodes: 0 };
    g.nodes++;
    groups.set(key, g);
  }
  return { keepIoTypes, tensors: r.tensors, elements: r.elements, clamped: r.clamped, flushed: r.flushed, casts: r.casts, kept: [...groups.values()] };
}

/** Reports what a float16 conversion kept in float32 and what it clamped. */
export function reportFloat16(ctx: PassContext, s: Float16Summary): void {
  for (const k of s.kept) ctx.report.info('quantize', `${k.nodes} ${k.op} node(s) kept in float32: ${k.reason}`);
  if (s.clamped > 0) ctx.report.info('quantize', `${s.clamped} constant element(s) beyond float16's range clamped to ±65504 (mask fills such as -3.4e38 among them)`);
  if (s.flushed > 0) ctx.report.info('quantize', `${s.flushed} non-zero constant element(s) below float16's smallest subnormal (6e-8) became 0`);
}

export async function float16Scheme(model: Model, ctx: PassContext, options: QuantizeOptions): Promise<PassResult<QuantizeSummary>> {
  const file = model.sourcePath ?? 'the model';
  assertNotQuantized(model, file, 'convert');
  const constants = [model.graph, ...[...model.graph.allNodes()].flatMap((n) => n.subgraphs())].flatMap((g) => g.initializers.map((v) => v.initializer?.dtype));
  for (const n of model.graph.allNodes()) {
    const a = n.opType === 'Constant' ? n.attr('value') : undefined;
    if (a?.type === 'tensor') constants.push(a.value.dtype);
  }
  if (constants.includes(DataType.FLOAT16)) throw new UserError(`${file} already has float16 weights; convert the float32 model instead`);
  if (!constants.includes(DataType.FLOAT)) throw new UserError(`${file} has no float32 weight to convert to float16`);
  const keepIoTypes = options.keepIoTypes ?? true;
  const float = model.clone();
  const converted = convertToFloat16(model, { keepIoTypes, keepOps: options.keepFloat32Ops });
  await cleanup().run(model, ctx);
  const f16 = float16Summary(converted, keepIoTypes);
  reportFloat16(ctx, f16);
  let comparison: Comparison = { layers: [], outputs: [], samples: 0 };
  if (ctx.calibration) {
    comparison = await compareModels(float, model, ctx.calibration, [], { samples: options.verifySamples ?? 16, batchSize: options.batchSize, threads: ctx.threads, signal: ctx.signal });
  } else {
    ctx.report.warn('quantize', 'no calibration data: the float16 model was not compared with the float one');
  }
  const bytes = (m: Model): number => m.graph.initializers.reduce((a, v) => a + (v.initializer?.byteLength ?? 0), 0);
  const summary: QuantizeSummary = {
    scheme: 'fp16',
    method: 'rtn',
    chain: [],
    methodChoice: null,
    calibMethod: null,
    reconstruct: 'none',
    activationBits: null,
    softmax: null,
    flexround: null,
    reparam: null,
    calibration: null,
    layers: [],
    convs: [],
    embeddings: [],
    excluded: [],
    skipped: [],
    outputs: comparison.outputs,
    verifiedSamples: comparison.samples,
    weightBytesBefore: bytes(float),
    weightBytesAfter: bytes(model),
    float16: f16,
  };
  return { model, modified: true, summary };
}
