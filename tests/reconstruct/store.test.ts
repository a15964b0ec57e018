import { describe, expect, it } from 'vitest';
import { ActivationCache } from '../../src/reconstruct/store.js';
import { MiniBatches } from '../../src/reconstruct/engine.js';
import { DataType } from '../../src/ir/dtype.js';

describe('ActivationCache', () => {
  for (const budget of [1 << 20, 0]) {
    it(`keeps rows and gathers them by index (${budget ? 'in memory' : 'on disk'})`, () => {
      const cache = new ActivationCache(budget);
      const f = cache.create('x/y:z', DataType.FLOAT, [2, 3], 5);
      const ids = cache.create('ids', DataType.INT64, [4], 5);
      expect(f.onDisk).toBe(budget === 0);
      f.write(0, { dtype: DataType.FLOAT, dims: [2, 2, 3], data: Float32Array.from({ length: 12 }, (_, i) => i) });
      f.write(2, { dtype: DataType.FLOAT, dims: [3, 2, 3], data: Float32Array.from({ length: 18 }, (_, i) => 12 + i) });
      ids.write(0, { dtype: DataType.INT64, dims: [5, 4], data: BigInt64Array.from({ length: 20 }, (_, i) => BigInt(i)) });
      const r = f.read([4, 0, 1]);
      expect(r.dims).toEqual([3, 2, 3]);
      expect([...(r.data as Float32Array)]).toEqual([24, 25, 26, 27, 28, 29, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect([...(ids.read([3]).data as BigInt64Array)]).toEqual([12n, 13n, 14n, 15n]);
      expect(() => f.write(4, { dtype: DataType.FLOAT, dims: [2, 2, 3], data: new Float32Array(12) })).toThrow(/past the 5 rows/);
      expect(cache.usage()).toEqual(budget ? { memory: 280, disk: 0 } : { memory: 0, disk: 280 });
      cache.drop(f);
      expect(cache.usage()).toEqual(budget ? { memory: 160, disk: 0 } : { memory: 0, disk: 160 });
      cache.dispose();
    });
  }
});

describe('MiniBatches', () => {
  it('draws every row once per epoch, in a seeded order', () => {
    const a = new MiniBatches(10, 3, 42);
    const b = new MiniBatches(10, 3, 42);
    const epoch = [a.next(), a.next(), a.next()].flat();
    expect(new Set(epoch).size).toBe(9);
    expect([b.next(), b.next(), b.next()].flat()).toEqual(epoch);
    expect(a.next()).toHaveLength(3); // a new epoch
    expect(new MiniBatches(10, 3, 43).next()).not.toEqual(new MiniBatches(10, 3, 42).next());
  });
});
