import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { findMergedDecoder } from './merged.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { matchAttention } from './attention.js';
import { assembleBlocks } from './blocks.js';
import { isNormAnchor, matchNorm } from './layer-norm.js';
import { LinearIndex, matchLinear } from './linear.js';
import { NoMatch } from './match.js';
import { matchMlp } from './mlp.js';
import { topoPositions } from './order.js';
import { findResidual } from './residual.js';
import { SymbolicShapes } from './infer-shapes.js';
import type { Attention, LinearLayer, Mlp, NormLayer, Residual, Structure } from './structure.js';

export type * from './structure.js';
export { constantSource, constantTensor } from './constants.js';
export { summarizeStructure } from './summary.js';
export { findMergedDecoder, withPastBranchModel, type MergedDecoder } from './merged.js';

/**
 * Finds the transformer structure of a model's main graph (or, for a merged decoder, of its
 * with-past branch): linear layers, norms, attentions, MLPs, residual adds and the blocks they form. Never throws on a graph it does not
 * understand: what it looked for and did not find is listed in `unmatched` with a reason.
 * The model is not modified.
 */
export function discoverStructure(model: Model): Structure {
  const main = discoverGraph(model.graph);
  if (main.blocks.length > 0) return main;
  // a merged decoder keeps its blocks in the branches of an If on use_cache_branch: describe
  // the with-past branch, whose linears read the outer-graph weights both branches share
  const merged = findMergedDecoder(model);
  if (merged) {
    const branch = discoverGraph(merged.withPast);
    if (branch.blocks.length > 0) return { ...branch, branch: `the ${merged.withPastIs} of If '${merged.node.name}' (the with-past branch of a merged decoder; the other branch reads the same weights)` };
  }
  for (const n of model.graph.nodes) {
    if (n.subgraphs().some((sub) => sub.nodes.some((x) => x.opType === 'MatMul' || x.opType === 'Gemm'))) {
      main.unmatched.push({ node: n.name, opType: n.opType, reason: `the model's layers are inside the subgraphs of this ${n.opType}, which discovery does not search (only a merged decoder's If on a graph input is looked into)` });
    }
  }
  return main;
}

/** Discovery in one graph (the main graph, or a branch of a merged decoder). */
function discoverGraph(graph: Graph): Structure {
  const positions = topoPositions(graph);
  const position = (n: Node): number => positions.get(n) ?? Number.MAX_SAFE_INTEGER;
  const nodes = [...graph.nodes].sort((a, b) => position(a) - position(b));
  const failures = new Map<Node, NoMatch>();
  const attempt = <T>(node: Node, match: () => T | NoMatch | undefined): T | undefined => {
    let r: T | NoMatch | undefined;
    try {
      r = match();
    } catch (e) {
      r = new NoMatch(node, `discovery failed here: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (r instanceof NoMatch) {
      if (!failures.has(r.node)) failures.set(r.node, r);
      return undefined;
    }
    return r;
  };

  const linears: LinearLayer[] = [];
  const norms: NormLayer[] = [];
  for (const n of nodes) {
    if (n.opType === 'MatMul' || n.opType === 'Gemm') {
      const l = attempt(n, () => matchLinear(n));
      if (l) linears.push(l);
    } else if (isNormAnchor(n)) {
      const norm = attempt(n, () => matchNorm(n));
      if (norm) norms.push(norm);
    }
  }
  uniqueNames(linears);
  const index = new LinearIndex(linears);

  const shapes = new SymbolicShapes(graph, nodes);
  const attentions: Attention[] = [];
  for (const n of nodes) {
    if (n.opType !== 'Softmax') continue;
    const a = attempt(n, () => matchAttention(n, index, shapes));
    if (!a) continue;
    attentions.push(a);
    // the q @ k and probs @ v MatMuls have no constant weight by design
    for (const m of a.nodes) failures.delete(m);
  }
  // a rotary embedding's inv_freq @ position_ids is a product of two computed values by design
  for (const n of [...failures.keys()]) if (n.opType === 'MatMul' && feedsRotaryTable(n)) failures.delete(n);

  const used = new Set<LinearLayer>(attentions.flatMap((a) => [a.q, a.k, a.v]));
  const mlps: Mlp[] = [];
  for (const l of linears) {
    if (used.has(l)) continue;
    const m = attempt(l.node, () => matchMlp(l, index, shapes));
    if (!m || [m.fc1, m.gate, m.fc2].some((x) => x && used.has(x))) continue;
    mlps.push(m);
    for (const x of [m.fc1, m.gate]) if (x) used.add(x);
  }

  const residualByOutput = new Map<Value, Residual>();
  for (const out of [...attentions.map((a) => a.output), ...mlps.map((m) => m.output)]) {
    const r = findResidual(out);
    if (r) residualByOutput.set(out, r);
  }
  const blocks = assembleBlocks(attentions, mlps, norms, (v) => residualByOutput.get(v), position);
  const unmatched = [...failures.values()].sort((a, b) => position(a.node) - position(b.node)).map((f) => f.toUnmatched());
  return { linears, norms, attentions, mlps, residuals: [...residualByOutput.values()], blocks, unmatched };
}

/** Whether a MatMul's output becomes the angles of a rotary table (reaches Cos or Sin through layout ops). */
function feedsRotaryTable(n: Node): boolean {
  let frontier = [n.output(0)];
  for (let depth = 0; depth < 5 && frontier.length > 0; depth++) {
    const next: Value[] = [];
    for (const v of frontier) {
      for (const c of v.consumers()) {
        if (c.opType === 'Cos' || c.opType === 'Sin') return true;
        if (['Transpose', 'Concat', 'Cast', 'Reshape', 'Unsqueeze', 'Mul'].includes(c.opType)) next.push(c.output(0));
      }
    }
    frontier = next;
  }
  return false;
}

/** Linear names come from node scopes, which can repeat (two MatMuls in one module): keep them unique. */
function uniqueNames(linears: LinearLayer[]): void {
  const seen = new Set<string>();
  for (const l of linears) {
    let name = l.name;
    for (let k = 1; seen.has(name); k++) name = `${l.name}_${k}`;
    l.name = name;
    seen.add(name);
  }
}
