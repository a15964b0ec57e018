import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { bfloat16BitsToFloat, float16BitsToFloat, floatToBfloat16Bits, floatToFloat16Bits } from '../../src/ir/float-bits.js';
import { Tensor } from '../../src/ir/tensor.js';

describe('16-bit float conversions', () => {
  it('match reference bit patterns (IEEE 754 binary16, round to nearest even)', () => {
    // reference values from the IEEE 754 binary16 definition
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00],
      [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1 / 3, 0x3555], [Infinity, 0x7c00],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02],
    ];
    for (const [v, bits] of cases) expect(floatToFloat16Bits(v), `${v}`).toBe(bits);
    for (let h = 0; h < 0x7c00; h += 37) expect(floatToFloat16Bits(float16BitsToFloat(h))).toBe(h);
    expect(Number.isNaN(float16BitsToFloat(floatToFloat16Bits(NaN)))).toBe(true);
  });

  it('bfloat16 keeps the top 16 bits with rounding', () => {
    expect(floatToBfloat16Bits(1)).toBe(0x3f80);
    expect(floatToBfloat16Bits(-3.5)).toBe(0xc060);
    expect(bfloat16BitsToFloat(0x4049)).toBeCloseTo(3.140625, 6);
    expect(floatToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie rounds to even
    expect(floatToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
  });
});

describe('Tensor', () => {
  it('packs int4 two per byte, low nibble first, and reads them back signed', () => {
    const t = Tensor.from('q', DataType.INT4, [5], [-8, 7, -1, 0, 3]);
    expect([...t.bytes]).toEqual([0x78, 0x0f, 0x03]);
    expect(t.toNumbers()).toEqual([-8, 7, -1, 0, 3]);
    const u = Tensor.from('u', DataType.UINT4, [3], [15, 0, 9]);
    expect(u.toNumbers()).toEqual([15, 0, 9]);
  });

  it('converts every numeric type to float32 and typed arrays', () => {
    const values = [0, 1, -2, 3];
    for (const dt of [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16, DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64]) {
      expect([...Tensor.from('t', dt, [2, 2], values).toFloat32()], `dtype ${dt}`).toEqual(values);
    }
    expect([...Tensor.from('t', DataType.BOOL, [2], [true, false]).toTypedArray()]).toEqual([1, 0]);
    expect(Tensor.from('t', DataType.INT64, [1], [2n ** 60n]).toTypedArray()[0]).toBe(2n ** 60n);
  });

  it('rejects data whose length does not fit the shape', () => {
    expect(() => Tensor.fromBytes('t', DataType.FLOAT, [3], new Uint8Array(8))).toThrow(/needs 12 bytes/);
  });
});

describe('int64 sentinels', () => {
  it('clamps numbers past the int64 range instead of wrapping', () => {
    const t = Tensor.from('ends', DataType.INT64, [2], [9223372036854775807, -9223372036854775808]);
    expect([...(t.toTypedArray() as BigInt64Array)]).toEqual([(1n << 63n) - 1n, -(1n << 63n)]);
  });
});
