import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { imageDataset } from '../../src/data/image-dataset.js';
import { preprocessImage, readPreprocessorConfig, type ImagePreprocessing } from '../../src/data/image-preprocess.js';
import { openRawDataset } from '../../src/data/raw-dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { cli } from '../helpers/cli.js';
import { expectOneSentence } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const VIT = path.join(ROOT, 'fixtures/zoo/folders/tv_vit_mnist');
const MODEL = path.join(VIT, 'onnx/model.onnx');
const dir = tempDir('slimformer-image-data-');

/** The zoo's eval sample each PNG was made from: images/<digit>/<k>.png holds eval sample k. */
function evalIndex(where: string): number {
  return Number(path.basename(where, '.png'));
}

/**
 * Largest |a - b| over the images of a folder against `expected` applied to the zoo eval tensor of
 * the same MNIST digit (labels compared too).
 */
async function maxErrorAgainstZoo(folder: string, expected: (zoo: Float32Array) => Float32Array = (z) => z): Promise<number> {
  const got = await openRawDataset(loadModel(MODEL), MODEL, { images: folder });
  const zoo = openDataset(path.join(ROOT, 'calibration/zoo/tv_vit_mnist/eval'));
  expect(got.size).toBe(20);
  let worst = 0;
  for (let i = 0; i < got.size; i++) {
    const k = evalIndex(got.where(i));
    const g = got.read(i);
    const w = zoo.read(k);
    expect(g.inputs[0]!.dims).toEqual([1, 3, 28, 28]);
    expect(g.label!.data[0]).toBe(w.label!.data[0]); // class from the sub-folder's name
    const a = g.inputs[0]!.data as Float32Array;
    const b = expected(w.inputs[0]!.data as Float32Array);
    for (let j = 0; j < b.length; j++) worst = Math.max(worst, Math.abs(a[j]! - b[j]!));
  }
  return worst;
}

/**
 * PIL's bilinear reduction by 2 (transformers' resample=2), written out: a triangle filter
 * stretched to the scale, i.e. weights 1/8, 3/8, 3/8, 1/8 over four source pixels; on an image of
 * 2x2 blocks that is 1/8, 3/4, 1/8 over the blocks, renormalized at the border.
 */
function pilBilinearHalfOfBlocks(zoo: Float32Array): Float32Array {
  const n = 28;
  const taps = (j: number): [number, number][] => {
    const t = ([[j - 1, 0.125], [j, 0.75], [j + 1, 0.125]] as [number, number][]).filter(([k]) => k >= 0 && k < n);
    const sum = t.reduce((s, [, w]) => s + w, 0);
    return t.map(([k, w]) => [k, w / sum]);
  };
  const out = new Float32Array(zoo.length);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        let v = 0;
        for (const [yy, wy] of taps(y)) for (const [xx, wx] of taps(x)) v += wy * wx * zoo[(c * n + yy) * n + xx]!;
        out[(c * n + y) * n + x] = v;
      }
    }
  }
  return out;
}

describe('image datasets with preprocessor_config.json', () => {
  it('MNIST PNGs (written in Python from the zoo eval tensors, 8-bit) preprocess to those tensors within half a grey level (0.5/255)', async () => {
    const worst = await maxErrorAgainstZoo(path.join(VIT, 'images'));
    // the only difference is the PNG's rounding to 8 bits: |v - round(255 v)/255| <= 0.5/255
    expect(worst).toBeLessThanOrEqual(0.5 / 255 + 1e-7);
  });

  it('the same digits at 56x56 (2x2 blocks) resized to 28x28 (resample 2, bilinear) equal PIL-style bilinear of the zoo tensors within 3/255', async () => {
    const worst = await maxErrorAgainstZoo(path.join(VIT, 'images_56'), pilBilinearHalfOfBlocks);
    // measured 2.2 grey levels of libvips' linear reduce against the formula, plus the PNG's 0.5: a stated bound of 3 levels
    expect(worst).toBeLessThanOrEqual(3 / 255);
    // and not the plain block average (the unresized digits): the resize really filters
    expect(await maxErrorAgainstZoo(path.join(VIT, 'images_56'))).toBeGreaterThan(20 / 255);
  });

  it('center crop, rescale, per-channel normalize and channel order equal a hand computation (exact to float32 rounding)', async () => {
    // a 4x6 RGB image: pixel (y, x) = (10y + x, 100 + 10y + x, 200 + y + x)
    const h = 4;
    const w = 6;
    const px = (y: number, x: number): number[] => [10 * y + x, 100 + 10 * y + x, 200 + y + x];
    const raw = Buffer.alloc(h * w * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set(px(y, x), (y * w + x) * 3);
    const file = path.join(dir, 'rgb.png');
    await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
    const steps: ImagePreprocessing = { resize: undefined, resample: 2, crop: { height: 2, width: 3 }, rescale: 1 / 255, normalize: { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.5] } };
    // transformers' center crop of 4x6 to 2x3: top (4-2)//2 = 1, left (6-3)//2 = 1
    const hand = (y: number, x: number, c: number): number => (px(1 + y, 1 + x)[c]! / 255 - steps.normalize!.mean[c]!) / steps.normalize!.std[c]!;
    const first = await preprocessImage(file, steps, { channels: 3, channelsFirst: true });
    const last = await preprocessImage(file, steps, { channels: 3, channelsFirst: false });
    expect([first.height, first.width]).toEqual([2, 3]);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 2; y++) {
        for (let x = 0; x < 3; x++) {
          expect(first.data[(c * 2 + y) * 3 + x]).toBeCloseTo(hand(y, x, c), 6);
          expect(last.data[(y * 3 + x) * 3 + c]).toBeCloseTo(hand(y, x, c), 6);
        }
      }
    }
  });

  it('reads size, crop and defaults from preprocessor_config.json (shortest_edge, crop_size, mean/std default 0.5)', () => {
    const f = path.join(dir, 'preprocessor_config.json');
    fs.writeFileSync(f, JSON.stringify({ size: { shortest_edge: 32 }, do_center_crop: true, crop_size: { height: 28, width: 28 }, resample: 3 }));
    expect(readPreprocessorConfig(f)).toEqual({ resize: { shortestEdge: 32 }, resample: 3, crop: { height: 28, width: 28 }, rescale: 1 / 255, normalize: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } });
    expect(readPreprocessorConfig(path.join(VIT, 'preprocessor_config.json'))).toEqual({ resize: { height: 28, width: 28 }, resample: 2, crop: undefined, rescale: 1 / 255, normalize: undefined });
  });

  it('a shortest_edge resize keeps the aspect ratio, then the crop takes the middle', async () => {
    const raw = Buffer.alloc(40 * 80 * 3, 128);
    const file = path.join(dir, 'wide.png');
    await sharp(raw, { raw: { width: 80, height: 40, channels: 3 } }).png().toFile(file);
    const out = await preprocessImage(file, { resize: { shortestEdge: 20 }, resample: 2, crop: { height: 16, width: 30 }, rescale: 1 / 255, normalize: undefined }, { channels: 3, channelsFirst: true });
    expect([out.height, out.width]).toEqual([16, 30]);
    for (const v of out.data) expect(v).toBeCloseTo(128 / 255, 6); // a flat image stays flat
  });

  it('eval --data-images equals eval on the folder dataset make wrote from the same images', () => {
    const made = path.join(dir, 'vit-made');
    expect(cli('dataset', 'make', MODEL, '--images', path.join(VIT, 'images'), '-o', made).code).toBe(0);
    const top1 = (args: string[]): number => {
      const r = cli('eval', MODEL, ...args, '--metric', 'top1,nll', '--json');
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { metrics: { top1: number } }).metrics.top1;
    };
    const fromImages = top1(['--data-images', path.join(VIT, 'images')]);
    expect(top1(['--data', made])).toBe(fromImages);
    expect(fromImages).toBeGreaterThanOrEqual(0.9); // tv_vit_mnist's eval top-1 is about 0.95
  });

  it('refuses an image folder mixing loose images and class folders, and a class not in label2id, naming it', async () => {
    const mixed = path.join(dir, 'mixed');
    fs.mkdirSync(path.join(mixed, '3'), { recursive: true });
    fs.copyFileSync(path.join(VIT, 'images/3/08.png'), path.join(mixed, 'loose.png'));
    fs.copyFileSync(path.join(VIT, 'images/3/08.png'), path.join(mixed, '3/a.png'));
    expectOneSentence(cli('eval', MODEL, '--data-images', mixed), /image folder .*mixed mixes images at its top with class sub-folders/);
    const cats = path.join(dir, 'cats');
    fs.mkdirSync(path.join(cats, 'cat'), { recursive: true });
    fs.copyFileSync(path.join(VIT, 'images/3/08.png'), path.join(cats, 'cat/a.png'));
    await expect(imageDataset(loadModel(MODEL), cats, { preprocessing: readPreprocessorConfig(path.join(VIT, 'preprocessor_config.json')), labelIds: new Map([['3', 3]]) })).rejects.toThrow(/'cat' is not a class of the model/);
  });
});
