import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverStructure, summarizeStructure } from '../../src/discover/index.js';
import { loadModel } from '../../src/onnx/index.js';

// The trained fixtures are real torch.onnx.export output: discovery must read each one's
// architecture exactly as the training script recorded it in fixtures/<name>.metrics.json.
const dir = path.resolve(import.meta.dirname, '../../fixtures');
const found = fs.existsSync(dir)
  ? fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.metrics.json'))
      .map((f) => f.slice(0, -'.metrics.json'.length))
      .filter((name) => fs.existsSync(path.join(dir, `${name}.onnx`)))
      .sort()
  : [];

interface Architecture {
  blocks: number;
  heads: number;
  headSize: number;
  hidden: number;
  mlpWidth: number;
  activation: string;
  norm: 'pre-ln' | 'post-ln';
  opset: number;
}

describe.skipIf(found.length === 0)('discoverStructure on the trained fixtures', () => {
  it.each(found)('%s', (name) => {
    const arch = (JSON.parse(fs.readFileSync(path.join(dir, `${name}.metrics.json`), 'utf8')) as { architecture: Architecture }).architecture;
    const model = loadModel(path.join(dir, `${name}.onnx`));
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
