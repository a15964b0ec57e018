import type { Structure } from '../../src/discover/structure.js';
import { discoverStructure } from '../../src/discover/index.js';
import { constantSource } from '../../src/discover/constants.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Value } from '../../src/ir/value.js';

function scaleValues(v: Value, f: (data: Float32Array) => void): void {
  const src = constantSource(v)!;
  const t = src.initializer!;
  const data = t.toFloat32().slice();
  f(data);
  src.graph!.setInitializer(src, Tensor.from(t.name, t.dtype, [...t.dims], data));
}

/**
 * The same function with outlier channels: the `mlpNorm` (LayerNorm before the MLP) of
 * `block` has gamma and beta of `channels` multiplied by `factor`, and the rows of fc1's
 * weight reading those channels divided by it. Outputs are unchanged (up to rounding); the
 * LayerNorm output now holds channels `factor` times larger than the rest.
 */
export function injectOutliers(model: Model, block: number, channels: number[], factor = 50): Structure {
  const s = discoverStructure(model);
  const b = s.blocks[block]!;
  const norm = b.mlpNorm!;
  const fc1 = b.mlp!.fc1;
  for (const v of [norm.scale!, norm.bias!]) {
    scaleValues(v, (d) => {
      for (const c of channels) d[c] = d[c]! * factor;
    });
  }
  // fc1 reads the norm's channels as its input features
  scaleValues(fc1.weight, (d) => {
    for (const c of channels) {
      if (fc1.transB) for (let o = 0; o < fc1.outFeatures; o++) d[o * fc1.inFeatures + c] = d[o * fc1.inFeatures + c]! / factor;
      else for (let o = 0; o < fc1.outFeatures; o++) d[c * fc1.outFeatures + o] = d[c * fc1.outFeatures + o]! / factor;
    }
  });
  return s;
}
