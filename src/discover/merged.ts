import { UserError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';

/**
 * A merged decoder (Optimum's `decoder_model_merged.onnx`): an If on a graph input
 * (`use_cache_branch`) whose two branches hold the same layers, one reading the KV cache and
 * one not, both reading weights stored once in the outer graph.
 */
export interface MergedDecoder {
  node: Node;
  /** The graph input the If branches on. */
  flag: Value;
  /** The branch that reads more graph inputs (the cache): the one discovery describes. */
  withPast: Graph;
  noPast: Graph;
  /** Which attribute holds withPast, so the flag value that selects it is known. */
  withPastIs: 'then_branch' | 'else_branch';
}

/**
 * Finds the If of a merged decoder in the main graph: its condition is a graph input and both
 * branches read a matrix stored in the outer graph (shared weights).
 */
export function findMergedDecoder(model: Model): MergedDecoder | undefined {
  const g = model.graph;
  for (const node of g.nodes) {
    if (node.opType !== 'If' || node.domain !== '') continue;
    const flag = node.input(0);
    const thenG = node.attr('then_branch');
    const elseG = node.attr('else_branch');
    if (!flag || !g.inputs.includes(flag) || thenG?.type !== 'graph' || elseG?.type !== 'graph') continue;
    if (!readsSharedWeight(thenG.value, g) || !readsSharedWeight(elseG.value, g)) continue;
    const inputsRead = (b: Graph): number => [...outerReads(b, g)].filter((v) => g.inputs.includes(v)).length;
    const thenFirst = inputsRead(thenG.value) >= inputsRead(elseG.value);
    return thenFirst
      ? { node, flag, withPast: thenG.value, noPast: elseG.value, withPastIs: 'then_branch' }
      : { node, flag, withPast: elseG.value, noPast: thenG.value, withPastIs: 'else_branch' };
  }
  return undefined;
}

/** Values of `outer` read by nodes of `branch` (nested subgraphs included). */
export function outerReads(branch: Graph, outer: Graph): Set<Value> {
  const out = new Set<Value>();
  for (const n of branch.allNodes()) for (const v of n.inputs) if (v && v.graph === outer) out.add(v);
  return out;
}

function readsSharedWeight(branch: Graph, outer: Graph): boolean {
  for (const n of branch.allNodes()) {
    // MatMul/Gemm in a float model; MatMulNBits, MatMulInteger or a quantized Gather once quantized
    if (n.inputs.some((v) => v?.graph === outer && v.initializer && v.initializer.dims.length >= 2)) return true;
  }
  return false;
}

/**
 * The with-past branch of a merged decoder as a model of its own, for the work that runs the
 * model and reads tensors inside it (calibration, GPTQ's Gram matrices, FlexRound,
 * verification): onnxruntime cannot return a value from inside an If. Its inputs are the
 * merged model's inputs without the flag (in their order), its initializers the shared ones the
 * branch reads, its outputs the If's outputs; every other value keeps its name. `model` is not
 * changed (the branch of a copy is taken).
 */
export function withPastBranchModel(model: Model): Model {
  const copy = model.clone();
  const merged = findMergedDecoder(copy);
  if (!merged) throw new Error(`${model.sourcePath ?? 'the model'} is not a merged decoder`);
  const outer = copy.graph;
  const branch = merged.withPast;
  const read = outerReads(branch, outer);
  for (const v of read) {
    if (!v.initializer && !outer.inputs.includes(v)) {
      throw new UserError(`${model.sourcePath ?? 'the model'}: the ${merged.withPastIs} of If '${merged.node.name}' reads '${v.name}', which the outer graph computes; slimformer takes merged decoders whose branches read only graph inputs and shared weights`);
    }
  }
  // the copy's other branch and the If itself go: their reads of the shared values would
  // otherwise count as uses (a weight read by one linear would look shared)
  for (const n of merged.noPast.allNodes()) n.clearInputs();
  merged.node.clearInputs();
  branch.parent = undefined;
  for (const v of outer.inputs) {
    if (v === merged.flag) continue;
    branch.adoptValue(v);
    branch.inputs.push(v);
  }
  for (const v of outer.initializers) if (read.has(v)) branch.registerInitializer(v);
  merged.node.outputs.forEach((o, i) => {
    const b = branch.outputs[i];
    if (!b || b.name === o.name) return;
    const clash = branch.value(o.name);
    if (clash) branch.renameValue(clash, branch.uniqueName(`${o.name}_inner`));
    branch.renameValue(b, o.name);
  });
  branch.name = `${outer.name}.${merged.withPastIs}`;
  copy.graph = branch;
  return copy;
}
