import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { constantDims, constantSource, isConstant } from './constants.js';
import { describeValue, fail, NoMatch, otherInput, soleConsumer } from './match.js';
import type { LinearLayer } from './structure.js';

/**
 * Matches a linear layer at a MatMul (constant 2-D weight as second input, optional constant
 * bias Add after it, in either operand order) or a Gemm (constant B, optional constant C).
 */
export function matchLinear(node: Node): LinearLayer | NoMatch {
  if (node.opType === 'Gemm') return matchGemm(node);
  if (node.opType !== 'MatMul') return fail(node, 'not a MatMul or Gemm');
  const input = node.input(0);
  const weight = constantSource(node.input(1));
  if (!input) return fail(node, 'first input is missing');
  if (!weight) return fail(node, `second input is not a constant (it comes from ${describeValue(node.input(1))})`);
  if (isConstant(input)) return fail(node, 'first input is a constant too');
  const dims = constantDims(weight)!;
  if (dims.length !== 2) return fail(node, `weight '${weight.name}' has shape [${dims.join(',')}], not [in, out]`);
  const [inFeatures, outFeatures] = dims as [number, number];
  const linear: LinearLayer = { name: '', node, weight, inFeatures, outFeatures, transB: false, input, output: node.output(0) };
  const add = soleConsumer(node.output(0));
  if (add?.opType === 'Add') {
    const bias = constantSource(otherInput(add, node.output(0)));
    if (bias && isBiasShape(constantDims(bias)!, outFeatures)) {
      linear.bias = bias;
      linear.biasAdd = add;
      linear.output = add.output(0);
    }
  }
  linear.name = linearName(linear);
  return linear;
}

function matchGemm(node: Node): LinearLayer | NoMatch {
  const input = node.input(0);
  const weight = constantSource(node.input(1));
  if (!input) return fail(node, 'first input is missing');
  if (!weight) return fail(node, `second input is not a constant (it comes from ${describeValue(node.input(1))})`);
  if (node.intAttr('transA', 0) !== 0) return fail(node, 'transA=1: the input is transposed');
  const alpha = node.floatAttr('alpha', 1);
  const beta = node.floatAttr('beta', 1);
  if (alpha !== 1 || beta !== 1) return fail(node, `alpha=${alpha}, beta=${beta}: only 1 and 1 are recognised`);
  const dims = constantDims(weight)!;
  if (dims.length !== 2) return fail(node, `weight '${weight.name}' has shape [${dims.join(',')}], not 2-D`);
  const transB = node.intAttr('transB', 0) === 1;
  const [inFeatures, outFeatures] = (transB ? [dims[1], dims[0]] : [dims[0], dims[1]]) as [number, number];
  const linear: LinearLayer = { name: '', node, weight, inFeatures, outFeatures, transB, input, output: node.output(0) };
  if (node.input(2)) {
    const bias = constantSource(node.input(2));
    if (!bias) return fail(node, `bias C is not a constant (it comes from ${describeValue(node.input(2))})`);
    if (!isBiasShape(constantDims(bias)!, outFeatures)) {
      return fail(node, `bias '${bias.name}' has shape [${constantDims(bias)!.join(',')}], not [${outFeatures}]`);
    }
    linear.bias = bias;
  }
  linear.name = linearName(linear);
  return linear;
}

/** [out], or [1, ..., 1, out]: one value per output feature. */
function isBiasShape(dims: readonly number[], out: number): boolean {
  return dims.length >= 1 && dims[dims.length - 1] === out && dims.slice(0, -1).every((d) => d === 1);
}

/**
 * A module-like name: torch names nodes "/blocks.0/attn/query/MatMul", other exporters name the
 * weight "blocks.0.attn.query.weight"; fall back to the node name.
 */
function linearName(l: LinearLayer): string {
  const m = /^\/(.+)\/(MatMul|Gemm)(_\d+)?$/.exec(l.node.name);
  if (m) return m[1]!.replace(/\//g, '.');
  const w = l.weight.name;
  if (/\.weight$/.test(w)) return w.slice(0, -'.weight'.length);
  return l.node.name || l.output.name;
}

/** Index of linears by node and by output value, for the other matchers. */
export class LinearIndex {
  private readonly byNode = new Map<Node, LinearLayer>();
  private readonly byOutput = new Map<Value, LinearLayer>();

  constructor(readonly all: readonly LinearLayer[]) {
    for (const l of all) {
      this.byNode.set(l.node, l);
      this.byOutput.set(l.output, l);
    }
  }

  atNode(n: Node | undefined): LinearLayer | undefined {
    return n ? this.byNode.get(n) : undefined;
  }

  producing(v: Value | undefined): LinearLayer | undefined {
    return v ? this.byOutput.get(v) : undefined;
  }

  /** The linear layers that read `v` as their input. */
  reading(v: Value): LinearLayer[] {
    return v.consumers().flatMap((n) => {
      const l = this.byNode.get(n);
      return l && l.input === v ? [l] : [];
    });
  }
}
