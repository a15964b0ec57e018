// Sequential GPTQ's segment plan with wide layer inputs recomputed instead of kept: a segment
// starts at every linear, and every value crossing a cut is kept for all calibration batches
// until its last reader's segment runs. Before an MLP's down projection that is its input, 4x
// the hidden width (BERT-base: 192 MiB for 128 samples, held by the quantized model and by the
// float reference running in step). The down projection's segment can compute that input again
// from the narrower value the up projection read (kept anyway, or cheaper to keep), so the wide
// one is only yielded for its Gram matrix, batch by batch, and never kept.
import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';
import type { Model } from '../ir/model.js';
import type { SegmentPlan } from '../runtime/block-runner.js';

/**
 * `plan` (planSegments with a cut before every linear) with each wide linear input recomputed
 * in the segment that reads it. A value v of width k(v) (`widths`: the linear inputs and their
 * widths), read only by segment s and produced before it, is recomputed there when the nodes
 * producing it, followed back, reach only linear inputs narrower than v (no graph input), and
 * those that s does not read already are narrower than v in all. The nodes are
 * prepended to segment s (they stay in their own segment too, which still yields v for its
 * Gram matrix); their linears are quantized by then, since segment s is created only after the
 * linears before it are.
 */
export function recomputeWideInputs(model: Model, plan: SegmentPlan, widths: ReadonlyMap<string, number>): SegmentPlan {
  const nodes = plan.nodes.map((list) => [...list]);
  const inputs = plan.inputs.map((list) => [...list]);
  const position = new Map<Node, number>();
  plan.nodes.flat().forEach((n, i) => position.set(n, i));
  const readers = new Map<string, number>();
  for (const list of inputs) for (const name of list) readers.set(name, (readers.get(name) ?? 0) + 1);
  for (let s = 1; s < nodes.length; s++) {
    for (const v of [...inputs[s]!]) {
      const width = widths.get(v);
      if (width === undefined || readers.get(v) !== 1) continue;
      // only an input wider than everything it is computed from: recomputing a value no wider
      // (attention's output from the block's input) would cost a block's work to save nothing
      const chain = producers(model.graph, v, (name) => (widths.get(name) ?? Infinity) < width);
      if (!chain) continue;
      const reads = new Set(inputs[s]);
      const made = new Set(chain.nodes.flatMap((n) => n.outputs.map((o) => o.name)));
      const added = chain.reads.filter((name) => !reads.has(name));
      if (added.reduce((a, name) => a + widths.get(name)!, 0) >= width) continue;
      nodes[s] = [...chain.nodes.sort((a, b) => position.get(a)! - position.get(b)!), ...nodes[s]!];
      inputs[s] = [...inputs[s]!.filter((name) => !made.has(name)), ...added];
      for (const name of made) if (reads.has(name)) readers.set(name, readers.get(name)! - 1);
      for (const name of added) readers.set(name, (readers.get(name) ?? 0) + 1);
    }
  }
  return { ...plan, nodes, inputs };
}

/**
 * The nodes computing `value` followed back until values `stop` accepts (then read from
 * outside), or undefined when a graph input or a value from a node with subgraphs comes first.
 * Initializers are the nodes' own.
 */
function producers(graph: Graph, value: string, stop: (name: string) => boolean): { nodes: Node[]; reads: string[] } | undefined {
  const nodes = new Set<Node>();
  const reads = new Set<string>();
  const pending = [value];
  const visited = new Set<string>();
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (visited.has(name)) continue;
    visited.add(name);
    const v = graph.value(name);
    if (!v || v.initializer) continue;
    if (name !== value && stop(name)) {
      reads.add(name);
      continue;
    }
    const p = v.producer();
    if (!p || p.subgraphs().length > 0) return undefined;
    nodes.add(p);
    for (const i of p.inputs) if (i && i.name !== '') pending.push(i.name);
  }
  return { nodes: [...nodes], reads: [...reads] };
}

/**
 * The same plan over `copy`, a clone of the model `plan` was made for (Model.clone keeps the
 * order of nodes), so that the float reference runs the same segments, recomputed nodes included.
 */
export function planForClone(plan: SegmentPlan, model: Model, copy: Model): SegmentPlan {
  const a = model.graph.nodes;
  const b = copy.graph.nodes;
  if (a.length !== b.length || a.some((n, i) => n.opType !== b[i]!.opType || n.name !== b[i]!.name)) throw new Error('sequential GPTQ: the reference is not a copy of the model');
  const counterpart = new Map(a.map((n, i) => [n, b[i]!]));
  return { ...plan, nodes: plan.nodes.map((list) => list.map((n) => counterpart.get(n)!)) };
}
