import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LevelShelf } from '../../src/quantize/level-shelf.js';
import { newLevels, type QuantizedWeight } from '../../src/quantize/weight-quantizer.js';

function weight(n: number, k: number, symmetric: boolean): QuantizedWeight {
  const levels = newLevels(n * k, symmetric);
  for (let i = 0; i < levels.length; i++) levels[i] = symmetric ? (i % 15) - 8 : i % 16;
  return { n, k, groups: k / 32, blockSize: 32, bits: 4, symmetric, levels, scales: new Float32Array((n * k) / 32).fill(0.5), zeroPoints: new Int32Array((n * k) / 32) };
}

describe('LevelShelf: decided levels on disk until read', () => {
  it('gives back the same levels, of the same kind, once read keeps them, and removes its folder when all are read', () => {
    const shelf = new LevelShelf();
    const a = weight(256, 512, true); // 128 KiB: on disk
    const b = weight(128, 768, false);
    const copies = [a.levels.slice(), b.levels.slice()];
    const [sa, sb] = [shelf.shelve(a), shelf.shelve(b)];
    const folder = shelf.folder!;
    expect(fs.readdirSync(folder)).toHaveLength(1); // one file for all shelved weights
    expect(a.levels).toEqual(copies[0]); // the weight given is left as it was
    expect(sa.levels).toBeInstanceOf(Int8Array);
    expect(sa.levels).toEqual(copies[0]);
    expect(sa.levels).toBe(sa.levels); // read once, then kept
    expect(fs.readdirSync(folder)).toHaveLength(1); // until the last is read
    expect({ ...sb }.levels).toBeInstanceOf(Uint8Array); // a spread reads them too
    expect(sb.levels).toEqual(copies[1]);
    expect(fs.existsSync(folder)).toBe(false);
    expect({ ...sa, levels: undefined }).toMatchObject({ n: 256, k: 512, bits: 4, scales: a.scales });
  });

  it('keeps small levels in memory, with no folder', () => {
    const shelf = new LevelShelf();
    const q = weight(16, 64, true);
    const s = shelf.shelve(q);
    expect(shelf.folder).toBeUndefined();
    expect(s.levels).toBe(q.levels);
  });
});
