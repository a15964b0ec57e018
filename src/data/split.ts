import { Random } from '../autodiff/random.js';
import { UserError } from '../errors.js';
import type { Dataset } from './dataset.js';

/** Two disjoint views of one dataset, with the sample indices each holds (ascending). */
export interface DatasetSplit {
  selection: Dataset;
  holdout: Dataset;
  selectionIndices: number[];
  holdoutIndices: number[];
}

/** A dataset view holding the given samples of `d`, in that order. */
export function datasetView(d: Dataset, indices: readonly number[]): Dataset {
  return { path: d.path, size: indices.length, read: (i) => d.read(indices[i]!), where: (i) => d.where(indices[i]!) };
}

/**
 * Splits `d` into two disjoint halves (the selection half gets the extra sample of an odd
 * count) by a seeded shuffle, so a dataset stored sorted by class still gives both halves
 * every class, and the same dataset always splits the same way.
 */
export function splitDataset(d: Dataset, seed = 19): DatasetSplit {
  if (d.size < 2) throw new UserError(`dataset ${d.path} has ${d.size} sample; holding some out for the reported accuracy needs at least 2`);
  const order = new Random(seed).shuffle([...Array(d.size).keys()]);
  const cut = Math.ceil(d.size / 2);
  const selectionIndices = order.slice(0, cut).sort((a, b) => a - b);
  const holdoutIndices = order.slice(cut).sort((a, b) => a - b);
  return { selection: datasetView(d, selectionIndices), holdout: datasetView(d, holdoutIndices), selectionIndices, holdoutIndices };
}
