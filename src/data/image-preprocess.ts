import type { Metadata, OutputInfo, SharpConstructor } from 'sharp';
import { UserError } from '../errors.js';
import { readJson } from './model-folder.js';

/**
 * The steps of a Hugging Face image processor (ViTImageProcessor and the like), read from
 * preprocessor_config.json, in the order they run: convert to RGB, resize, center-crop,
 * rescale, normalize, then lay out as channels-first or channels-last.
 */
export interface ImagePreprocessing {
  /** Target size: exact height and width, or the shortest edge (aspect kept), when resizing. */
  resize: { height: number; width: number } | { shortestEdge: number } | undefined;
  /** PIL resampling filter number of the config (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic). */
  resample: number;
  crop: { height: number; width: number } | undefined;
  /** Pixel values (0..255) are multiplied by this, when set. */
  rescale: number | undefined;
  normalize: { mean: number[]; std: number[] } | undefined;
}

const IMAGENET_MEAN = [0.5, 0.5, 0.5];
const IMAGENET_STD = [0.5, 0.5, 0.5];

/** Reads preprocessor_config.json with the defaults of transformers' BaseImageProcessor (rescale 1/255, mean/std 0.5). */
export function readPreprocessorConfig(file: string): ImagePreprocessing {
  const c = readJson(file);
  const size = (v: unknown, what: string): { height: number; width: number } | { shortestEdge: number } => {
    if (typeof v === 'number') return { height: v, width: v };
    const o = (v ?? {}) as Record<string, unknown>;
    if (typeof o.height === 'number' && typeof o.width === 'number') return { height: o.height, width: o.width };
    if (typeof o.shortest_edge === 'number') return { shortestEdge: o.shortest_edge };
    throw new UserError(`${file}: "${what}" must be a number, {height, width} or {shortest_edge}, not ${JSON.stringify(v)}`);
  };
  const numbers = (v: unknown, fallback: number[], what: string): number[] => {
    if (v === undefined) return fallback;
    const a = typeof v === 'number' ? [v, v, v] : v;
    if (!Array.isArray(a) || !a.every((x) => typeof x === 'number')) throw new UserError(`${file}: "${what}" must be a number or a list of numbers`);
    return a as number[];
  };
  const on = (key: string, dflt: boolean): boolean => (c[key] === undefined ? dflt : c[key] === true);
  const crop = on('do_center_crop', false) ? size(c.crop_size, 'crop_size') : undefined;
  if (crop && 'shortestEdge' in crop) throw new UserError(`${file}: "crop_size" must give height and width`);
  return {
    resize: on('do_resize', true) && c.size !== undefined ? size(c.size, 'size') : undefined,
    resample: typeof c.resample === 'number' ? c.resample : 2,
    crop,
    rescale: on('do_rescale', true) ? (typeof c.rescale_factor === 'number' ? c.rescale_factor : 1 / 255) : undefined,
    normalize: on('do_normalize', true) ? { mean: numbers(c.image_mean, IMAGENET_MEAN, 'image_mean'), std: numbers(c.image_std, IMAGENET_STD, 'image_std') } : undefined,
  };
}

/** sharp's kernel for a PIL resampling filter. */
const KERNELS: Record<number, 'nearest' | 'lanczos3' | 'linear' | 'cubic'> = { 0: 'nearest', 1: 'lanczos3', 2: 'linear', 3: 'cubic', 4: 'linear', 5: 'linear' };

export interface ImageLayout {
  channels: number;
  /** true: [C, H, W] (pixel_values of PyTorch exports); false: [H, W, C]. */
  channelsFirst: boolean;
}

/**
 * Decodes one PNG/JPEG (or anything sharp reads) and runs the steps; returns float32 values
 * in the layout asked for, and the height and width after resizing and cropping.
 */
export async function preprocessImage(file: string, steps: ImagePreprocessing, layout: ImageLayout): Promise<{ data: Float32Array; height: number; width: number }> {
  const sharp = await loadSharp();
  let img = sharp(file, { failOn: 'error' }).removeAlpha();
  img = layout.channels === 1 ? img.greyscale() : img.toColourspace('srgb');
  let meta: Metadata;
  try {
    meta = await sharp(file).metadata();
  } catch (e) {
    throw new UserError(`${file} is not an image sharp can read (${e instanceof Error ? e.message : String(e)})`);
  }
  // stored orientation, as transformers reads pixels (EXIF rotation is not applied)
  let h = meta.height;
  let w = meta.width;
  if (steps.resize) {
    const target = 'shortestEdge' in steps.resize ? shortestEdgeSize(h, w, steps.resize.shortestEdge) : steps.resize;
    img = img.resize(target.width, target.height, { fit: 'fill', kernel: KERNELS[steps.resample] ?? 'linear' });
    h = target.height;
    w = target.width;
  }
  if (steps.crop) {
    const { height: ch, width: cw } = steps.crop;
    if (ch > h || cw > w) throw new UserError(`${file}: the center crop ${ch}x${cw} is larger than the image (${h}x${w} after resizing)`);
    // transformers' center_crop: top = (h - ch) // 2, left = (w - cw) // 2
    img = img.extract({ top: Math.floor((h - ch) / 2), left: Math.floor((w - cw) / 2), height: ch, width: cw });
    h = ch;
    w = cw;
  }
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await img.raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new UserError(`${file} cannot be decoded (${e instanceof Error ? e.message : String(e)})`);
  }
  const c = layout.channels;
  if (raw.info.channels !== c || raw.info.height !== h || raw.info.width !== w) {
    throw new Error(`sharp gave ${raw.info.height}x${raw.info.width}x${raw.info.channels} for ${file}, expected ${h}x${w}x${c}`);
  }
  const scale = steps.rescale ?? 1;
  const mean = steps.normalize?.mean ?? [0];
  const std = steps.normalize?.std ?? [1];
  if (steps.normalize && (mean.length < c || std.length < c)) throw new UserError(`image_mean/image_std give ${mean.length}/${std.length} values for a model with ${c} channels`);
  const out = new Float32Array(h * w * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        const v = (raw.data[(y * w + x) * c + k]! * scale - (mean[k] ?? mean[0]!)) / (std[k] ?? std[0]!);
        out[layout.channelsFirst ? (k * h + y) * w + x : (y * w + x) * c + k] = v;
      }
    }
  }
  return { data: out, height: h, width: w };
}

let sharpModule: SharpConstructor | undefined;

/**
 * sharp is loaded on first use: it is a native module (libvips), and a platform without its
 * prebuilt binary should lose image datasets only, not the whole library.
 */
async function loadSharp(): Promise<SharpConstructor> {
  if (!sharpModule) {
    try {
      sharpModule = (await import('sharp')).default;
    } catch (e) {
      throw new UserError(`image datasets need the sharp package, which did not load on this platform (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); see https://sharp.pixelplumbing.com/install, or give tensors (--calib/--data)`);
    }
  }
  return sharpModule;
}

/** transformers' get_resize_output_image_size for {shortest_edge}: short side = edge, long side scaled and truncated. */
function shortestEdgeSize(h: number, w: number, edge: number): { height: number; width: number } {
  return h <= w ? { height: edge, width: Math.trunc((edge * w) / h) } : { height: Math.trunc((edge * h) / w), width: edge };
}
