import { describe, expect, it } from 'vitest';
import { histogramQuantError } from '../../src/calibrate/mse.js';
import { quantParams, roundHalfEven } from '../../src/calibrate/qparams.js';
import type { HistogramView } from '../../src/calibrate/histogram.js';
import { quantMse } from './reference.js';

describe('quantization parameters', () => {
  it('follow onnxruntime: symmetric restricted int8, asymmetric uint8 with zero inside', () => {
    expect(quantParams(-2, 1, { symmetric: true })).toEqual({ scale: 2 / 127, zeroPoint: 0, qmin: -127, qmax: 127 });
    const a = quantParams(-1, 3, { symmetric: false });
    expect(a.scale).toBeCloseTo(4 / 255, 12);
    expect(a.zeroPoint).toBe(64); // round(255 / 4) = 63.75 -> 64
    expect(quantParams(0.5, 2, { symmetric: false }).zeroPoint).toBe(0); // widened to [0, 2]
    expect(quantParams(-1, 3, { symmetric: false, signed: true }).zeroPoint).toBe(-64);
    expect(quantParams(0, 0, { symmetric: false })).toEqual({ scale: 1, zeroPoint: 0, qmin: 0, qmax: 255 });
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4].map(roundHalfEven)).toEqual([0, 2, 2, -0, -2, 2]);
  });

  it('give the histogram error of values spread evenly in each bin', () => {
    // one bin [0, 1) holding 1000 values spread evenly: the histogram error equals the error of those values
    const values = Float64Array.from({ length: 1000 }, (_, i) => (i + 0.5) / 1000);
    const h: HistogramView = { counts: Float64Array.from([1000, 0]), start: 0, width: 1, abs: false, min: 0, max: 1, total: 1000 };
    for (const [lo, hi, bits] of [[0, 1, 2], [0, 0.5, 2], [-0.3, 0.8, 3]] as const) {
      expect(histogramQuantError(h, lo, hi, bits) / 1000).toBeCloseTo(quantMse(values, lo, hi, bits, false), 6);
    }
  });
});
