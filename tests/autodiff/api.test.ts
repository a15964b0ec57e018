// The barrels the public API re-exports (src/index.ts takes its names from these).
import { describe, expect, it } from 'vitest';
import * as autodiff from '../../src/autodiff/index.js';
import * as reconstruct from '../../src/reconstruct/index.js';

describe('module barrels', () => {
  it('autodiff exports its functions and classes', () => {
    for (const name of ['buildGradientGraph', 'checkGradients', 'defaultRules', 'withRules', 'extractSubgraph', 'declareInputShapes', 'Trainer', 'learningRate', 'toDouble', 'inferTypes', 'Random']) {
      expect(autodiff, name).toHaveProperty(name);
    }
    expect(autodiff.defaultRules.size).toBeGreaterThanOrEqual(49);
  });

  it('reconstruct exports its functions and classes', () => {
    for (const name of ['reconstructBlocks', 'reconstructionPass', 'weightPlan', 'blockSpans', 'blockLinears', 'MiniBatches', 'ActivationCache', 'TensorStore']) {
      expect(reconstruct, name).toHaveProperty(name);
    }
  });
});
