// A ready-made plan: learn the weights of a block's linear layers directly (AdaQuant-style
// weight reconstruction without a quantizer). It also serves as the engine's reference user:
// started at the weights themselves it is an identity objective.
import { constantSource } from '../discover/constants.js';
import type { LinearLayer } from '../discover/structure.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { BlockSpan } from './blocks.js';
import type { ReconstructionPlan } from './engine.js';

export interface WeightPlanOptions {
  /** Which linear layers to learn (default: all of the block's). */
  select?: (linear: LinearLayer) => boolean;
  /** Starting values from the float weights (default: the weights themselves). */
  init?: (weight: Float32Array, name: string) => Float32Array;
}

/** The linear layers of a block, as discovery named them. */
export function blockLinears(span: BlockSpan): LinearLayer[] {
  const a = span.block.attention;
  const m = span.block.mlp;
  return [...(a ? [a.q, a.k, a.v, a.o] : []), ...(m ? [m.fc1, ...(m.gate ? [m.gate] : []), m.fc2] : [])];
}

export function weightPlan(options: WeightPlanOptions = {}): ReconstructionPlan {
  return (span, block, model: Model) => {
    const weights = [...new Set(blockLinears(span).filter(options.select ?? (() => true)).map((l) => constantSource(l.weight)?.name))]
      .filter((n): n is string => n !== undefined)
      .filter((n) => block.graph.value(n)?.initializer?.dtype === DataType.FLOAT && model.graph.value(n)?.initializer !== undefined);
    if (weights.length === 0) return undefined;
    const params = weights.map((n) => {
      const t = block.graph.value(n)!.initializer!;
      const w = t.toFloat32();
      return { name: `${n}__learned`, dims: [...t.dims], init: options.init ? options.init(w, n) : w };
    });
    return {
      params,
      buildBlock(graph, values) {
        weights.forEach((n, i) => {
          const v = graph.value(n)!;
          const p = values.get(params[i]!.name)!;
          for (const use of [...v.uses()]) use.node.setInput(use.index, p);
        });
        graph.removeUnusedInitializers();
      },
      bake(target, values) {
        weights.forEach((n, i) => {
          const v = target.graph.value(n)!;
          const data = values.get(params[i]!.name)!;
          v.graph!.setInitializer(v, Tensor.fromBytes(n, DataType.FLOAT, params[i]!.dims, new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice()));
        });
      },
    };
  };
}
