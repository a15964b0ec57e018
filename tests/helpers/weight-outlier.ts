import { constantSource } from '../../src/discover/constants.js';
import { discoverStructure } from '../../src/discover/index.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Value } from '../../src/ir/value.js';

function rewrite(v: Value, f: (data: Float32Array) => void): void {
  const src = constantSource(v)!;
  const t = src.initializer!;
  const data = t.toFloat32().slice();
  f(data);
  src.graph!.setInitializer(src, Tensor.from(t.name, t.dtype, [...t.dims], data));
}

/**
 * A giant-outlier weight row that leaves the float function unchanged (up to rounding), as
 * folding a LayerNorm's scale into the next linear leaves in real checkpoints: in every block,
 * channel `channel` of the norm in front of the MLP has its gamma and beta divided by `factor`
 * and the input row `channel` of fc1's weight multiplied by it. fc1's largest weight is then
 * `factor` times the rest, so one scale per tensor rounds every other weight of fc1 to zero.
 * Returns how many fc1 weights were rewritten.
 */
export function injectWeightOutlier(model: Model, channel = 0, factor = 1e4): number {
  const s = discoverStructure(model);
  let count = 0;
  for (const b of s.blocks) {
    const norm = b.mlpNorm;
    const fc1 = b.mlp?.fc1;
    if (!norm?.scale || !norm.bias || !fc1) continue;
    for (const v of [norm.scale, norm.bias]) rewrite(v, (d) => void (d[channel] = d[channel]! / factor));
    rewrite(fc1.weight, (d) => {
      for (let o = 0; o < fc1.outFeatures; o++) {
        const i = fc1.transB ? o * fc1.inFeatures + channel : channel * fc1.outFeatures + o;
        d[i] = d[i]! * factor;
      }
    });
    count++;
  }
  return count;
}
