// The table of backward rules, by op. Tests and callers may pass their own table (a copy of
// this one with entries replaced) to buildGradientGraph.
import * as ew from './elementwise.js';
import { gemm, matmul } from './matmul.js';
import { layerNorm, rmsNorm } from './norm.js';
import { dequantizeLinear, quantizeLinear } from './quant.js';
import { logSoftmax, reduceExtreme, reduceMean, reduceSum, softmax } from './reduce.js';
import { concat, expand, gather, reshapeLike, slice, split, transpose } from './shape.js';
import type { OpRule, RuleTable } from './types.js';

export type { OpRule, RuleContext, RuleTable } from './types.js';
export { ruleKey } from './types.js';

const entries: [string, OpRule][] = [
  ['MatMul', matmul],
  ['Gemm', gemm],
  ['Add', ew.add],
  ['Sub', ew.sub],
  ['Mul', ew.mul],
  ['Div', ew.div],
  ['Sum', ew.sum],
  ['Pow', ew.pow],
  ['Sqrt', ew.sqrt],
  ['Reciprocal', ew.reciprocal],
  ['Neg', ew.neg],
  ['Abs', ew.abs],
  ['Exp', ew.exp],
  ['Log', ew.log],
  ['Erf', ew.erf],
  ['Tanh', ew.tanh],
  ['Sigmoid', ew.sigmoid],
  ['Relu', ew.relu],
  ['Gelu', ew.gelu],
  ['com.microsoft::Gelu', ew.msGelu],
  ['com.microsoft::FastGelu', ew.msFastGelu],
  ['Clip', ew.clip],
  ['Where', ew.where],
  ['Cast', ew.cast],
  ['Identity', ew.identity],
  ['Dropout', ew.dropout],
  ['Round', ew.round],
  ['ReduceSum', reduceSum],
  ['ReduceMean', reduceMean],
  ['ReduceMax', reduceExtreme],
  ['ReduceMin', reduceExtreme],
  ['Softmax', softmax],
  ['LogSoftmax', logSoftmax],
  ['LayerNormalization', layerNorm],
  ['SimplifiedLayerNormalization', rmsNorm],
  ['com.microsoft::SimplifiedLayerNormalization', rmsNorm],
  ['RMSNormalization', rmsNorm],
  ['Reshape', reshapeLike],
  ['Flatten', reshapeLike],
  ['Squeeze', reshapeLike],
  ['Unsqueeze', reshapeLike],
  ['Transpose', transpose],
  ['Expand', expand],
  ['Concat', concat],
  ['Split', split],
  ['Slice', slice],
  ['Gather', gather],
  ['QuantizeLinear', quantizeLinear],
  ['DequantizeLinear', dequantizeLinear],
];

/** The built-in rules. */
export const defaultRules: RuleTable = new Map(entries);

/** A copy of the built-in rules with some entries replaced or added. */
export function withRules(overrides: Record<string, OpRule>, base: RuleTable = defaultRules): RuleTable {
  const m = new Map(base);
  for (const [k, v] of Object.entries(overrides)) m.set(k, v);
  return m;
}
