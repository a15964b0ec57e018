import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { attrString } from '../ir/attribute.js';
import { constantScalar } from './constants.js';

/** Elementwise ops an activation between two linear layers may be built from. */
export const ELEMENTWISE = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sqrt', 'Neg', 'Abs', 'Exp', 'Log', 'Min', 'Max', 'Clip',
  'Erf', 'Tanh', 'Sigmoid', 'Relu', 'LeakyRelu', 'Elu', 'Selu', 'Celu', 'Softplus', 'Softsign',
  'HardSigmoid', 'HardSwish', 'Mish', 'Gelu', 'FastGelu', 'BiasGelu', 'QuickGelu', 'Cast', 'Identity',
]);

const SINGLE_OP = new Map<string, string>([
  ['Relu', 'relu'],
  ['LeakyRelu', 'leaky_relu'],
  ['Elu', 'elu'],
  ['Selu', 'selu'],
  ['Celu', 'celu'],
  ['HardSwish', 'hardswish'],
  ['Mish', 'mish'],
  ['Softplus', 'softplus'],
  ['Tanh', 'tanh'],
  ['Sigmoid', 'sigmoid'],
  ['FastGelu', 'gelu_tanh'],
  ['BiasGelu', 'gelu'],
  ['QuickGelu', 'quick_gelu'],
]);

/** The activation an elementwise region computes from `x`, as a name. */
export type ActivationGuess = { name: string } | { unknown: string[] } | undefined;

/**
 * Names the activation that `nodes` (every op between fc1's output `x` and fc2) compute.
 * Returns undefined when they contain no nonlinearity at all (then it is not an MLP), and
 * the op list when there is one that is not recognised. Classifying by the ops present,
 * not their order, covers the orders torch writes GELU's erf and tanh forms in.
 */
export function classifyActivation(nodes: readonly Node[], x: Value): ActivationGuess {
  const real = nodes.filter((n) => n.opType !== 'Cast' && n.opType !== 'Identity');
  const ops = new Set(real.map((n) => n.opType));
  const only = (...allowed: string[]): boolean => [...ops].every((o) => allowed.includes(o));
  if (real.length === 0 || only('Add', 'Sub', 'Mul', 'Div')) return undefined;
  if (real.length === 1) {
    const n = real[0]!;
    if (n.opType === 'Gelu') return { name: attrString(n.attr('approximate')) === 'tanh' ? 'gelu_tanh' : 'gelu' };
    const name = SINGLE_OP.get(n.opType);
    if (name) return { name };
  }
  if (ops.has('Erf') && only('Erf', 'Div', 'Mul', 'Add')) return { name: 'gelu' };
  if (ops.has('Softplus') && ops.has('Tanh') && only('Softplus', 'Tanh', 'Mul')) return { name: 'mish' };
  if (ops.has('Tanh') && only('Tanh', 'Pow', 'Mul', 'Add')) return { name: 'gelu_tanh' };
  if (ops.has('HardSigmoid') && only('HardSigmoid', 'Mul')) return { name: 'hardswish' };
  if (ops.has('Sigmoid') && only('Sigmoid', 'Mul')) {
    const sig = real.find((n) => n.opType === 'Sigmoid')!;
    if (sig.input(0) === x) return { name: 'silu' };
    const pre = sig.input(0)?.producer();
    const k = pre?.opType === 'Mul' ? (constantScalar(pre.input(1)) ?? constantScalar(pre.input(0))) : undefined;
    if (k !== undefined && Math.abs(k - 1.702) < 1e-2) return { name: 'quick_gelu' };
  }
  return { unknown: real.map((n) => n.opType) };
}

/** The name of a gated activation act(gate(x)) * up(x). */
export function gatedName(act: string): string {
  if (act === 'silu') return 'swiglu';
  if (act === 'gelu' || act === 'gelu_tanh') return 'geglu';
  if (act === 'relu') return 'reglu';
  return `${act}_glu`;
}
