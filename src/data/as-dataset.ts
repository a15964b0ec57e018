import { openDataset, type Dataset } from './dataset.js';

/** A dataset given to the library: a Dataset, or the path of a dataset folder or .npz file. */
export type DatasetInput = Dataset | string;

/** Opens a path (openDataset) or returns the Dataset given. */
export function asDataset(d: DatasetInput): Dataset {
  return typeof d === 'string' ? openDataset(d) : d;
}
