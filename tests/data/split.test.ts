import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { splitDataset } from '../../src/data/split.js';

describe('splitting a dataset into selection and holdout', () => {
  it('two disjoint halves covering every sample, the same each time, each view reading its own samples', () => {
    const d = openDataset('calibration/bert_spam/eval');
    const s = splitDataset(d);
    expect(s.selectionIndices.filter((i) => s.holdoutIndices.includes(i))).toEqual([]);
    expect([...s.selectionIndices, ...s.holdoutIndices].sort((a, b) => a - b)).toEqual([...Array(d.size).keys()]);
    expect(s.selection.size).toBe(Math.ceil(d.size / 2));
    expect(s.holdout.size).toBe(d.size - s.selection.size);
    expect(splitDataset(d).selectionIndices).toEqual(s.selectionIndices);
    // not the first half: a dataset stored sorted by class must not give one class to each side
    expect(s.selectionIndices).not.toEqual([...Array(s.selection.size).keys()]);
    const k = s.holdoutIndices[3]!;
    expect(s.holdout.where(3)).toBe(d.where(k));
    expect(s.holdout.read(3).inputs[0]!.data).toEqual(d.read(k).inputs[0]!.data);
  });

  it('refuses a one-sample dataset, naming it', () => {
    const d = openDataset('calibration/bert_spam/eval');
    const one = { ...d, size: 1, read: d.read, where: d.where };
    expect(() => splitDataset(one)).toThrow(/dataset calibration\/bert_spam\/eval has 1 sample; holding some out .* needs at least 2/);
  });
});
