import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { modelInputs } from './bind.js';
import type { Dataset, Sample } from './dataset.js';
import { preprocessImage, type ImageLayout, type ImagePreprocessing } from './image-preprocess.js';

const IMAGE_FILE = /\.(png|jpe?g|webp|gif|tiff?|bmp|avif)$/i;

export interface ImageDatasetOptions {
  preprocessing: ImagePreprocessing;
  /** Class name (sub-folder name) to index: config.json's label2id. Without it, numeric folder names are their own index and other names are numbered in sorted order. */
  labelIds?: Map<string, number>;
  /** Keep the first N images (in sorted path order). */
  maxSamples?: number;
}

/**
 * A dataset made from a folder of images: images directly in it (unlabelled), or one
 * sub-folder per class (labelled by the sub-folder's name). Every image is decoded and
 * preprocessed when the dataset is opened, into the model's single image input.
 */
export async function imageDataset(model: Model, dir: string, options: ImageDatasetOptions): Promise<Dataset> {
  const input = imageInput(model);
  const files = listImages(dir);
  const classes = [...new Set(files.map((f) => f.className).filter((c): c is string => c !== undefined))];
  if (classes.length > 0 && files.some((f) => f.className === undefined)) {
    throw new UserError(`image folder ${dir} mixes images at its top with class sub-folders; put every image in a class folder, or none`);
  }
  const index = classIndex(classes, options.labelIds, dir);
  const samples: Sample[] = [];
  const places: string[] = [];
  for (const f of files.slice(0, options.maxSamples ?? Infinity)) {
    const { data, height, width } = await preprocessImage(f.file, options.preprocessing, input.layout);
    const dims = input.layout.channelsFirst ? [1, input.layout.channels, height, width] : [1, height, width, input.layout.channels];
    const label = f.className === undefined ? undefined : { dtype: DataType.INT64, dims: [1], data: BigInt64Array.of(BigInt(index.get(f.className)!)) };
    samples.push({ inputs: [{ name: input.name, dtype: DataType.FLOAT, dims, data }], label, expected: [] });
    places.push(f.file);
  }
  return { path: dir, size: samples.length, read: (i) => samples[i]!, where: (i) => places[i]! };
}

/** The model's one float image input, [batch, C, H, W] or [batch, H, W, C] with C = 1 or 3. */
function imageInput(model: Model): { name: string; layout: ImageLayout } {
  const inputs = modelInputs(model);
  if (inputs.length !== 1) throw new UserError(`an image dataset feeds one input, but the model takes ${inputs.length} (${inputs.map((i) => `'${i.name}'`).join(', ')})`);
  const { name, dtype, shape } = inputs[0]!;
  if (dtype !== DataType.FLOAT || shape?.length !== 4) throw new UserError(`the model's input '${name}' is not a float image tensor [batch, channels, height, width]`);
  const isChannels = (d: unknown): d is number => d === 1 || d === 3;
  if (isChannels(shape[1])) return { name, layout: { channels: shape[1], channelsFirst: true } };
  if (isChannels(shape[3])) return { name, layout: { channels: shape[3], channelsFirst: false } };
  throw new UserError(`the model's input '${name}' [${shape.map((d) => d ?? '?').join(',')}] has no axis of 1 or 3 channels after the batch axis or at the end`);
}

function listImages(dir: string): { file: string; className: string | undefined }[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    throw new UserError(`image folder ${dir} does not exist or is not a folder`);
  }
  const out: { file: string; className: string | undefined }[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (e.isFile() && IMAGE_FILE.test(e.name)) out.push({ file: path.join(dir, e.name), className: undefined });
    if (e.isDirectory()) {
      const sub = path.join(dir, e.name);
      for (const n of fs.readdirSync(sub).sort()) if (IMAGE_FILE.test(n)) out.push({ file: path.join(sub, n), className: e.name });
    }
  }
  if (out.length === 0) throw new UserError(`image folder ${dir} holds no PNG/JPEG images (directly or in class sub-folders)`);
  return out;
}

function classIndex(classes: string[], labelIds: Map<string, number> | undefined, dir: string): Map<string, number> {
  if (labelIds) {
    const unknown = classes.find((c) => !labelIds.has(c));
    if (unknown !== undefined) throw new UserError(`${path.join(dir, unknown)}: '${unknown}' is not a class of the model (config.json's label2id has ${[...labelIds.keys()].map((k) => `'${k}'`).join(', ')})`);
    return labelIds;
  }
  if (classes.every((c) => /^\d+$/.test(c))) return new Map(classes.map((c) => [c, Number(c)]));
  return new Map([...classes].sort().map((c, i) => [c, i]));
}
