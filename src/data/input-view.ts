import type { ArrayTensor } from '../ir/array-tensor.js';
import type { Dataset, NamedArray } from './dataset.js';

/**
 * The samples of `dataset` with one input removed or set to a fixed tensor, for a model whose
 * inputs are those of the data's model less or with that one (a merged decoder's with-past
 * branch has no `use_cache_branch`). Unnamed tensors are named by position among `inputNames`
 * (the data's model's inputs) first, since removing one shifts the positions.
 */
export function withInput(dataset: Dataset, inputNames: readonly string[], name: string, value: ArrayTensor | undefined): Dataset {
  return {
    path: dataset.path,
    size: dataset.size,
    where: (i) => dataset.where(i),
    read(i) {
      const sample = dataset.read(i);
      const named: NamedArray[] = sample.inputs.map((a, k) => ({ ...a, name: a.name || inputNames[k] || '' }));
      const inputs = named.filter((a) => a.name !== name);
      if (value) inputs.push({ ...value, name });
      const kept = sample.files?.inputs.filter((_, k) => named[k]!.name !== name);
      const files = sample.files && { ...sample.files, inputs: value ? [...kept!, `'${name}' (set by slimformer)`] : kept! };
      return { ...sample, inputs, files };
    },
  };
}
