import type { Structure } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';
import type { ActivationParams } from './qdq.js';

/** An attention's softmax and the MatMul that multiplies its probabilities by v, by node name. */
export interface SoftmaxSite {
  softmax: string;
  /** The probabilities · v MatMul. */
  pv: string;
  /** The v operand of that MatMul (a tensor name, calibrated for the uniform form). */
  v: string;
}

/** Softmaxes whose only reader is the MatMul with v (input 0); others are listed with a reason. */
export function findSoftmaxSites(structure: Structure): { sites: SoftmaxSite[]; skipped: { name: string; reason: string }[] } {
  const sites: SoftmaxSite[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const a of structure.attentions) {
    const probs = a.softmax.output(0);
    const uses = probs.uses();
    const pv = uses[0]?.node;
    if (uses.length !== 1 || !pv || pv.opType !== 'MatMul' || uses[0]!.index !== 0 || probs.isGraphOutput()) {
      skipped.push({ name: a.softmax.name, reason: `the softmax output is read by ${uses.map((u) => `${u.node.opType} '${u.node.name}'`).join(', ') || 'nothing'}, not by one MatMul with v` });
      continue;
    }
    sites.push({ softmax: a.softmax.name, pv: pv.name, v: pv.input(1)!.name });
  }
  return { sites, skipped };
}

function nodeNamed(g: Graph, name: string): Node {
  const n = g.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`node '${name}' is not in graph '${g.name}'`);
  return n;
}

function qdq(g: Graph, x: Value, p: ActivationParams, base: string, before: Node): Value {
  const s = g.addInitializer(Tensor.from(`${base}_scale`, DataType.FLOAT, [], [p.scale]));
  const z = g.addInitializer(Tensor.from(`${base}_zero_point`, DataType.UINT8, [], [p.zeroPoint]));
  const q = g.addNode('QuantizeLinear', [x, s, z], [`${base}_quantized`], { name: g.uniqueNodeName(`${base}/QuantizeLinear`), before }).output(0);
  return g.addNode('DequantizeLinear', [q, s, z], [`${base}_dequantized`], { name: g.uniqueNodeName(`${base}/DequantizeLinear`), before }).output(0);
}

/**
 * Uniform 8-bit form: the probabilities through QuantizeLinear/DequantizeLinear with scale
 * 1/255 and zero point 0 (they lie in [0, 1]), v with its calibrated per-tensor parameters, so
 * onnxruntime runs the MatMul with an integer kernel (MatMulIntegerToFloat).
 */
export function quantizeSoftmaxUniform(g: Graph, site: SoftmaxSite, v: ActivationParams): void {
  const pv = nodeNamed(g, site.pv);
  pv.setInput(0, qdq(g, pv.input(0)!, { scale: Math.fround(1 / 255), zeroPoint: 0 }, `${site.softmax}.probs`, pv));
  pv.setInput(1, qdq(g, pv.input(1)!, v, `${site.pv}.v`, pv));
}

/**
 * Simulated log2 form of RepQ-ViT's log√2 quantizer, reparameterized (the odd-level factor is
 * folded into the scale): with scale s = 1 (probabilities are at most 1),
 *   A_Z = clamp(round(-2·log2 A), 0, 2^b - 1),  Â = 2^(-⌈A_Z/2⌉) · (1 + (√2 - 1)·[A_Z odd]),
 * and codes that would be ≥ 2^b give 0. An integer kernel computes Â·v with shifts by
 * ⌈A_Z/2⌉ (two partial sums, the odd one times √2); ONNX has no such op, so the export
 * evaluates the same values with float ops (Log, Round, Clip, Pow, Where): for accuracy
 * validation only.
 */
export function quantizeSoftmaxLog2(g: Graph, site: SoftmaxSite, bits: number): void {
  const pv = nodeNamed(g, site.pv);
  const base = `${site.softmax}.log2`;
  const c = (name: string, v: number, dtype = DataType.FLOAT): Value => g.addInitializer(Tensor.from(`${base}.${name}`, dtype, [], [v]));
  const op = (type: string, inputs: Value[]): Value => g.addNode(type, inputs, [`${base}_${type.toLowerCase()}`], { name: g.uniqueNodeName(`${base}/${type}`), before: pv }).output(0);
  const qmax = 2 ** bits - 1;
  const a = pv.input(0)!;
  const z = op('Round', [op('Mul', [op('Log', [a]), c('neg_two_over_ln2', -2 / Math.LN2)])]);
  const keep = op('Less', [z, c('levels', 2 ** bits)]);
  const zc = op('Clip', [z, c('zero', 0), c('qmax', qmax)]);
  const halfFloor = op('Floor', [op('Mul', [zc, c('half', 0.5)])]);
  const halfCeil = op('Ceil', [op('Mul', [zc, c('half_c', 0.5)])]);
  const odd = op('Sub', [zc, op('Mul', [halfFloor, c('two', 2)])]);
  const factor = op('Add', [c('one', 1), op('Mul', [odd, c('sqrt2_minus_1', Math.SQRT2 - 1)])]);
  const value = op('Mul', [op('Pow', [c('base', 2), op('Neg', [halfCeil])]), factor]);
  pv.setInput(0, op('Where', [keep, value, c('zero_out', 0)]));
}

/** The log√2 quantizer in plain arithmetic (the reference the export is checked against). */
export function log2QuantReference(a: number, bits: number): number {
  const z = roundHalfEvenLocal(-2 * Math.log2(a));
  if (!(z < 2 ** bits)) return 0;
  const zc = Math.min(2 ** bits - 1, Math.max(0, z));
  return 2 ** -Math.ceil(zc / 2) * (zc % 2 === 1 ? Math.SQRT2 : 1);
}

function roundHalfEvenLocal(x: number): number {
  if (!Number.isFinite(x)) return x;
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
