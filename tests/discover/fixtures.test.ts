import { describe, expect, it } from 'vitest';
import { discoverStructure, summarizeStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';
import { fixtures } from '../helpers/fixtures.js';

// The trained fixtures are real torch.onnx.export output: discovery must read each one's
// architecture exactly as the training script recorded it in fixtures/<name>.metrics.json.
const found = fixtures();

describe.skipIf(found.length === 0)('discoverStructure on the trained fixtures', () => {
  it.each(found.map((f) => [f.name, f] as const))('%s', (_name, f) => {
    const arch = f.architecture;
    const model = loadModel(f.model);
    const summary = summarizeStructure(model, discoverStructure(model));
    expect(summary.unmatched).toEqual([]);
    expect(summary.opset).toBe(arch.opset);
    expect(summary.hidden).toBe(arch.hidden);
    expect(summary.blocks).toHaveLength(arch.blocks);
    for (const b of summary.blocks) {
      expect({ heads: b.heads, headSize: b.headSize, hidden: b.hidden, mlpWidth: b.mlpWidth, activation: b.activation, norm: b.norm }).toEqual({
        heads: arch.heads,
        headSize: arch.headSize,
        hidden: arch.hidden,
        mlpWidth: arch.mlpWidth,
        activation: arch.activation,
        norm: arch.norm,
      });
      expect(b.normKind).toBe('layernorm');
      expect(b.normForm).toBe(arch.opset >= 17 ? 'fused' : 'decomposed');
    }
  });
});
