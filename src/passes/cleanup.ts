import type { Model } from '../ir/model.js';
import { CLEANUP_OPTIONS } from './option-specs.js';
import { checkOptions } from './options.js';
import type { Pass } from './pass.js';

export interface CleanupOptions {
  /** Remove Identity nodes by rewiring their readers (default true). */
  identities?: boolean;
}

/** What cleanup removed. */
export interface CleanupSummary {
  identitiesRemoved: number;
  deadNodesRemoved: number;
  initializersRemoved: number;
}

/**
 * Tidies a graph after rewrites: removes Identity nodes, nodes that reach no output and
 * initializers nothing reads, then sorts the nodes topologically. An Identity that connects a
 * graph input (or initializer) straight to a graph output is kept, since removing it would
 * rename a model input or output; the report says so.
 */
export function cleanup(options: CleanupOptions = {}): Pass<CleanupSummary> {
  checkOptions('cleanup', CLEANUP_OPTIONS, options);
  return {
    name: 'cleanup',
    run(model: Model, ctx) {
      const g = model.graph;
      let identities = 0;
      if (options.identities ?? true) {
        for (const node of [...g.nodes]) {
          if (node.opType !== 'Identity' || node.domain !== '') continue;
          const src = node.input(0);
          const out = node.output(0);
          if (!src) continue;
          if (out.isGraphOutput() && (src.isGraphInput() || src.isConstant() || src.isGraphOutput() || src.graph !== g)) {
            ctx.report.skip('cleanup', node.name, `Identity '${node.name}' joins '${src.name}' to graph output '${out.name}'; kept so the model's interface is unchanged`);
            continue;
          }
          out.replaceAllUsesWith(src);
          g.removeNode(node);
          identities++;
        }
      }
      const deadNodes = g.removeDeadNodes();
      const initializers = g.removeUnusedInitializers();
      g.toposort();
      const modified = identities + deadNodes + initializers.length > 0;
      return { model, modified, summary: { identitiesRemoved: identities, deadNodesRemoved: deadNodes, initializersRemoved: initializers.length } };
    },
  };
}
