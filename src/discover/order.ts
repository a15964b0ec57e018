import type { Graph } from '../ir/graph.js';
import type { Node } from '../ir/node.js';

/**
 * Each node's position in a topological order of the graph, computed on the side so discovery
 * never reorders the caller's graph. A graph with a cycle (no valid model has one) keeps its
 * stored order: discovery must not throw.
 */
export function topoPositions(graph: Graph): Map<Node, number> {
  let order: readonly Node[];
  try {
    order = graph.topologicalOrder();
  } catch {
    order = graph.nodes;
  }
  return new Map(order.map((n, i) => [n, i]));
}
