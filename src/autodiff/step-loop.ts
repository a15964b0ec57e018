// Several training steps in one onnxruntime run: the training graph (loss, gradients and the
// fused update) becomes the body of an ONNX Loop whose loop-carried values are the parameters
// and the optimizer state. Between single-step runs those go out to JS and back every step: for
// a BERT-base-sized block with Adam that is 84 MB copied out per step, about a sixth of a
// FlexRound step. In the Loop they stay in onnxruntime until the last step.
import { DataType } from '../ir/dtype.js';
import { Graph } from '../ir/graph.js';
import { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

export interface StepLoop {
  model: Model;
  /** The trip count input (int64 scalar): how many steps the run takes. */
  steps: string;
  /** Input of the loop model holding each carried value's start, by the training graph's input name. */
  start: Map<string, string>;
  /** Output of the loop model holding each carried value after the last step. */
  final: Map<string, string>;
  /** Input of the loop model holding a per-step feed stacked over the steps ([steps, ...dims]). */
  stacked: Map<string, string>;
  /** Output of the loop model: the loss of every step, stacked. */
  losses: string;
}

/**
 * Wraps `train` (a training graph: inputs are the carried values, the per-step feeds and any
 * per-step scalars; outputs include the loss and each carried value's next value) in a Loop.
 * `next` maps each carried input to the output holding its next value. Every other input of
 * `train` is fed stacked over the steps, step t reading row t.
 */
export function stepLoop(train: Model, loss: string, next: ReadonlyMap<string, string>): StepLoop {
  const bodyModel = train.clone();
  const body = bodyModel.graph;
  const outer = new Graph(`${body.name}_steps`);
  body.parent = outer;
  body.name = `${body.name}_step`;
  const tensor = (dtype: DataType, shape: (number | string | null)[]) => ({ kind: 'tensor' as const, dtype, shape });
  const steps = outer.addInput('__loop_steps', tensor(DataType.INT64, []));
  const iter = body.addInput(body.uniqueName('__loop_iteration'), tensor(DataType.INT64, []));
  const cond = body.addInput(body.uniqueName('__loop_condition'), tensor(DataType.BOOL, []));

  const carried = [...next.keys()];
  const start = new Map<string, string>();
  const stacked = new Map<string, string>();
  for (const input of [...body.inputs]) {
    if (input === iter || input === cond || next.has(input.name)) continue;
    // a per-step feed: row `iteration` of its stacked outer input
    const t = input.type;
    const row = outer.addInput(outer.uniqueName(`${input.name}__stacked`), t?.kind === 'tensor' ? tensor(t.dtype, ['steps', ...(t.shape ?? [])]) : undefined);
    stacked.set(input.name, row.name);
    const picked = body.addNode('Gather', [row, iter], [body.uniqueName(`${input.name}__row`)], { attributes: { axis: { type: 'int', value: 0 } } }).output(0);
    input.replaceAllUsesWith(picked);
  }
  const carriedValues = carried.map((name) => {
    const v = body.value(name);
    if (!v || !body.inputs.includes(v)) throw new Error(`step loop: '${name}' is not an input of the training graph`);
    return v;
  });
  body.inputs = [iter, cond, ...carriedValues];
  const outputOf = (name: string): Value => {
    const v = body.outputs.find((o) => o.name === name);
    if (!v) throw new Error(`step loop: '${name}' is not an output of the training graph`);
    return v;
  };
  const condOut = body.addNode('Identity', [cond], [body.uniqueName('__loop_condition_out')]).output(0);
  body.toposort(); // the Gathers were added after their readers
  body.outputs = [condOut, ...carried.map((name) => outputOf(next.get(name)!)), outputOf(loss)];

  const starts = carriedValues.map((v) => {
    const s = outer.addInput(outer.uniqueName(`${v.name}__start`), v.type);
    start.set(v.name, s.name);
    return s;
  });
  const always = outer.addInitializer(Tensor.from('__loop_true', DataType.BOOL, [], [1]));
  const finalNames = carried.map((name) => outer.uniqueName(`${name}__final`));
  const lossesName = outer.uniqueName('__loop_losses');
  const loop = outer.addNode('Loop', [steps, always, ...starts], [...finalNames, lossesName], { attributes: { body: { type: 'graph', value: body } } });
  outer.outputs = [...loop.outputs];
  const final = new Map(carried.map((name, i) => [name, loop.output(i).name]));

  const model = new Model(outer);
  model.irVersion = bodyModel.irVersion;
  model.opsetImports = new Map(bodyModel.opsetImports);
  return { model, steps: steps.name, start, final, stacked, losses: loop.output(carried.length).name };
}
