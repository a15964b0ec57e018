import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { constantDims, constantNumbers, constantScalar, constantSource } from './constants.js';
import { describeReaders, fail, NoMatch, otherInput, producerOf, skipCastsDown, skipCastsUp, soleConsumer } from './match.js';
import type { NormLayer } from './structure.js';

const FUSED = new Map<string, NormLayer['kind']>([
  ['LayerNormalization', 'layernorm'],
  ['SimplifiedLayerNormalization', 'rmsnorm'],
  ['RMSNormalization', 'rmsnorm'],
]);

/** Ops where a norm match starts: the fused ops, and the Sqrt of the decomposed forms. */
export function isNormAnchor(node: Node): boolean {
  return FUSED.has(node.opType) || node.opType === 'Sqrt';
}

/**
 * Matches a norm at its anchor. Returns undefined when the node is plainly not part of a norm
 * (a Sqrt of something else), and NoMatch when the variance part matched but the rest did not.
 */
export function matchNorm(node: Node): NormLayer | NoMatch | undefined {
  const kind = FUSED.get(node.opType);
  if (kind) return matchFused(node, kind);
  if (node.opType === 'Sqrt') return matchDecomposed(node);
  return undefined;
}

function matchFused(node: Node, kind: NormLayer['kind']): NormLayer | NoMatch {
  const input = node.input(0);
  if (!input) return fail(node, 'input X is missing');
  const scale = constantSource(node.input(1));
  const bias = kind === 'layernorm' ? constantSource(node.input(2)) : undefined;
  const axis = node.intAttr('axis', -1);
  const rank = input.shape?.length;
  if (axis !== -1 && (rank === undefined || axis !== rank - 1)) return fail(node, `normalizes from axis ${axis}, not over the last axis only`);
  return {
    kind,
    form: 'fused',
    nodes: [node],
    input,
    output: node.output(0),
    scale,
    bias,
    epsilon: node.floatAttr('epsilon', 1e-5),
    hidden: hiddenOf(scale, input),
  };
}

/**
 * LayerNorm: ReduceMean(x) -> Sub(x, mean) -> Pow(d, 2) -> ReduceMean -> Add(eps) -> Sqrt ->
 * Div(d, sqrt) -> Mul(scale) -> Add(bias). RMSNorm: the same without the mean, usually with
 * Div(1, sqrt) or Reciprocal then Mul(x, .). Casts anywhere in between are skipped (and listed
 * in `nodes`, which is in no particular order).
 */
function matchDecomposed(sqrt: Node): NormLayer | NoMatch | undefined {
  const casts: Node[] = [];
  if (!sqrt.input(0)) return undefined;
  const addEps = producerOf(skipCastsUp(sqrt.input(0)!, casts), 'Add');
  if (!addEps) return undefined;
  const eps = [addEps.input(0), addEps.input(1)].map(constantScalar);
  const epsilon = eps[1] ?? eps[0];
  const varianceOut = eps[1] !== undefined ? addEps.input(0) : addEps.input(1);
  const variance = varianceOut && producerOf(skipCastsUp(varianceOut, casts), 'ReduceMean');
  if (epsilon === undefined || !variance || !singleAxis(variance)) return undefined;
  const square = producerOf(skipCastsUp(variance.input(0)!, casts), 'Pow', 'Mul');
  const d = square && squaredValue(square, casts);
  if (!square || !d) return undefined;

  // from here on the node is a norm's variance: a mismatch is worth a reason
  const centre = producerOf(d, 'Sub');
  const mean = centre && producerOf(skipCastsUp(centre.input(1)!, casts), 'ReduceMean');
  const isLayerNorm = !!mean && !!mean.input(0) && skipCastsUp(mean.input(0)!) === skipCastsUp(centre!.input(0)!);
  const input = isLayerNorm ? skipCastsUp(centre!.input(0)!, casts) : d;
  if (isLayerNorm) skipCastsUp(mean.input(0)!, casts);
  const nodes: Node[] = [...(isLayerNorm ? [mean, centre!] : []), square, variance, addEps, sqrt];

  let out = normalizedOutput(sqrt, d, nodes);
  if (out instanceof NoMatch) return out;
  out = skipCastsDown(out, nodes);
  let scale: Value | undefined;
  let bias: Value | undefined;
  const mul = soleConsumer(out);
  if (mul?.opType === 'Mul') {
    scale = constantSource(otherInput(mul, out));
    if (scale) {
      nodes.push(mul);
      out = skipCastsDown(mul.output(0), nodes);
    }
  }
  const add = scale && soleConsumer(out);
  if (add?.opType === 'Add') {
    bias = constantSource(otherInput(add, out));
    if (bias) {
      nodes.push(add);
      out = add.output(0);
    }
  }
  for (const c of casts) if (!nodes.includes(c)) nodes.push(c);
  const kind = isLayerNorm ? 'layernorm' : 'rmsnorm';
  return { kind, form: 'decomposed', nodes, input, output: out, scale, bias, epsilon, hidden: hiddenOf(scale ?? bias, input) };
}

/** The x of Pow(x, 2) or Mul(x, x). */
function squaredValue(square: Node, casts: Node[]): Value | undefined {
  const x = square.input(0);
  if (!x) return undefined;
  if (square.opType === 'Pow') return constantScalar(square.input(1)) === 2 ? skipCastsUp(x, casts) : undefined;
  return square.input(1) === x ? skipCastsUp(x, casts) : undefined;
}

/** d / sqrt, d * Reciprocal(sqrt) or d * Div(1, sqrt): the normalized value. */
function normalizedOutput(sqrt: Node, d: Value, nodes: Node[]): Value | NoMatch {
  const s = skipCastsDown(sqrt.output(0), nodes);
  for (const c of s.consumers()) {
    if (c.opType === 'Div' && c.input(1) === s && skipCastsUp(c.input(0)!) === d) {
      nodes.push(c);
      return c.output(0);
    }
    const isReciprocal = c.opType === 'Reciprocal' || (c.opType === 'Div' && c.input(1) === s && constantScalar(c.input(0)) === 1);
    if (!isReciprocal) continue;
    const r = skipCastsDown(c.output(0));
    for (const m of r.consumers()) {
      const other = m.opType === 'Mul' ? otherInput(m, r) : undefined;
      if (other && skipCastsUp(other) === d) {
        nodes.push(c, m);
        return m.output(0);
      }
    }
  }
  return fail(sqrt, `the square root of the variance is not divided into the normalized value (read by ${describeReaders(s)})`);
}

/** ReduceMean over one axis (attribute before opset 18, second input from 18 on). */
function singleAxis(node: Node): boolean {
  const axes = node.intsAttr('axes') ?? constantNumbers(node.input(1));
  return axes?.length === 1;
}

function hiddenOf(param: Value | undefined, input: Value): number {
  const dims = constantDims(param);
  if (dims && dims.length > 0) return dims[dims.length - 1]!;
  const last = input.shape?.[input.shape.length - 1];
  return typeof last === 'number' ? last : 0;
}
