// The .npy/.npz readers on files numpy itself wrote (fixtures/numpy/make_numpy_arrays.py):
// stored and deflated archives, bool and float16 kept as their bytes, and the layouts refused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { parseNpy } from '../../src/data/npy.js';
import { readZipEntries } from '../../src/data/zip.js';
import { float16ToFloat32 } from 'npyjs';

const DIR = path.resolve(__dirname, '../../fixtures/numpy');
const read = (f: string): Uint8Array => fs.readFileSync(path.join(DIR, f));
// the script's arrays, recomputed here
const features = Array.from({ length: 24 }, (_, i) => (i - 11.5) / 4);
const ids = [5, 0, 7, 1, 2, 3, 9, 9, 9, 0, 1, 0];
const mask = [1, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0];
// float16 values exactly representable, except 1e-4 (nearest half: 1.0001659393310547e-4)
const half = [0.5, -1.25, 65504, 1.0001659393310547e-4, 0, -0, 3.140625, 2];

describe('numpy-written arrays', () => {
  for (const archive of ['stored.npz', 'deflated.npz']) {
    it(`${archive}: every member read with numpy's shapes and values`, () => {
      const members = readZipEntries(read(archive));
      expect([...members.keys()].sort()).toEqual(['features.npy', 'half.npy', 'input_ids.npy', 'label.npy', 'mask.npy']);
      const get = (n: string) => parseNpy(members.get(`${n}.npy`)!);
      const f = get('features');
      expect(f.dtype).toBe(DataType.FLOAT);
      expect(f.dims).toEqual([4, 6]);
      expect([...f.data]).toEqual(features);
      const t = get('input_ids');
      expect(t.dtype).toBe(DataType.INT64);
      expect([...t.data].map(Number)).toEqual(ids);
      const m = get('mask');
      expect(m.dtype).toBe(DataType.BOOL);
      expect([...m.data]).toEqual(mask);
      const h = get('half');
      expect(h.dtype).toBe(DataType.FLOAT16);
      expect(h.dims).toEqual([4, 2]);
      // raw half bits, decoded by the reference formula of npyjs (tolerance: exact)
      expect([...(h.data as Uint16Array)].map(float16ToFloat32)).toEqual(half);
      expect([...get('label').data].map(Number)).toEqual([1, 0, 2, 1]);
    });
  }

  it('a single .npy reads; Fortran order and big-endian are refused with the reason', () => {
    expect([...parseNpy(read('features.npy')).data]).toEqual(features);
    expect(() => parseNpy(read('fortran.npy'))).toThrow(/Fortran-ordered/);
    expect(() => parseNpy(read('big_endian.npy'))).toThrow(/>f4/);
    const full = read('features.npy');
    expect(() => parseNpy(full.subarray(0, full.byteLength - 8))).toThrow(/truncated \.npy data: 24 elements/);
  });
});
