import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { SpillStore, SPILL_MIN_BYTES } from '../../src/runtime/spill-store.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

// a batch of hidden state (8 x 64 x 64 floats, 128 KiB) and of an int64 mask (8 x 64, 4 KiB)
const hidden = (seed: number) => ({ dtype: DataType.FLOAT, dims: [8, 64, 64], data: Float32Array.from({ length: 8 * 64 * 64 }, (_, i) => Math.sin(seed + i)) });
const mask = (seed: number) => ({ dtype: DataType.INT64, dims: [8, 64], data: BigInt64Array.from({ length: 8 * 64 }, (_, i) => BigInt((seed + i) % 3)) });

describe('spill store', () => {
  it('writes large tensors to one file per value and reads each batch back equal, into a fresh array; small ones stay in memory', () => {
    const store = new SpillStore();
    try {
      expect(store.dir).toBeUndefined();
      const m0 = mask(0);
      store.put('mask', 0, m0);
      // a small tensor alone makes no folder
      expect(store.dir).toBeUndefined();
      expect(hidden(0).data.byteLength).toBeGreaterThanOrEqual(SPILL_MIN_BYTES);
      expect(m0.data.byteLength).toBeLessThan(SPILL_MIN_BYTES);
      for (let b = 0; b < 3; b++) store.put('h', b, hidden(b));
      store.put('h2', 0, hidden(9));
      store.put('mask', 1, mask(1));
      expect(fs.readdirSync(store.dir!).sort()).toEqual(['0.bin', '1.bin']);
      expect(fs.statSync(path.join(store.dir!, '0.bin')).size).toBe(3 * 8 * 64 * 64 * 4);
      // read in any order, as often as asked
      for (const b of [2, 0, 1, 0]) {
        const t = store.get('h', b);
        expect(t.dtype).toBe(DataType.FLOAT);
        expect(t.dims).toEqual([8, 64, 64]);
        expect(t.data).toEqual(hidden(b).data);
        expect(t.data).not.toBe(store.get('h', b).data);
      }
      expect(store.get('h2', 0).data).toEqual(hidden(9).data);
      expect(store.get('mask', 0)).toBe(m0);
      // put again: replaced
      store.put('h2', 0, hidden(10));
      expect(store.get('h2', 0).data).toEqual(hidden(10).data);
      expect(() => store.get('h', 5)).toThrow(/no batch 5 of 'h'/);
      // the file goes with the value's last batch
      store.drop('h', 0);
      store.drop('h', 1);
      expect(fs.existsSync(path.join(store.dir!, '0.bin'))).toBe(true);
      expect(store.get('h', 2).data).toEqual(hidden(2).data);
      store.drop('h', 2);
      expect(fs.existsSync(path.join(store.dir!, '0.bin'))).toBe(false);
      expect(() => store.get('h', 2)).toThrow(/no batch 2 of 'h'/);
    } finally {
      const dir = store.dir;
      store.close();
      expect(dir && fs.existsSync(dir)).toBe(false);
      expect(store.dir).toBeUndefined();
    }
  });

  it('with minBytes Infinity keeps everything in memory and makes no folder', () => {
    const store = new SpillStore(Infinity);
    const h = hidden(1);
    store.put('h', 0, h);
    expect(store.get('h', 0)).toBe(h);
    expect(store.dir).toBeUndefined();
    store.close();
  });

  it('removes its folder when the process exits without closing it', () => {
    // the built store in a child process that exits with the store open
    const code = `import { SpillStore } from ${JSON.stringify(path.join(ROOT, 'dist/src/runtime/spill-store.js'))};
      const s = new SpillStore(); s.put('h', 0, { dtype: 1, dims: [65536], data: new Float32Array(65536) });
      console.log(s.dir); process.exit(3);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(r.status).toBe(3);
    const dir = r.stdout.trim();
    expect(dir).toMatch(/slimformer-spill-/);
    expect(fs.existsSync(dir)).toBe(false);
  });
});
