import type { Report } from '../../src/report/report.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, saveModel } from '../../src/onnx/index.js';
import { gptq } from '../../src/passes/flexround.js';
import { quantize, type QuantizeSummary } from '../../src/passes/quantize.js';
import { pipeline } from '../../src/pipeline/pipeline.js';
import { gptqFactor, gptqLevels, gptqLevelsAsync } from '../../src/quantize/gptq.js';
import { dequantizeWeight, quantizeWeight } from '../../src/quantize/weight-quantizer.js';
import { Random } from '../../src/autodiff/random.js';
import { cli } from '../helpers/cli.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { builtFixture } from './built-fixture.js';
import { outputError } from '../helpers/output-error.js';

const { dir, built, modelFile, calibDir, calibration } = builtFixture({ blocks: 2, hidden: 64, heads: 4, mlpWidth: 128, seq: 16, opset: 17, mask: 'additive-input', seed: 7 }, 16);
const summaryOf = (r: { report: Report }): QuantizeSummary => r.report.passes[0]!.summary as QuantizeSummary;

describe('GPTQ as a method', () => {
  it('activation order and groups: grids kept, levels in range, output error below RTN', async () => {
    const rng = new Random(11);
    const m = 384;
    const k = 64;
    const n = 16;
    const latent = Array.from({ length: 4 * k }, () => rng.normal());
    const x = new Float64Array(m * k);
    for (let a = 0; a < m; a++) {
      const z = Array.from({ length: 4 }, () => rng.normal());
      // input channels of very different energy, so the order matters
      for (let i = 0; i < k; i++) x[a * k + i] = (1 + (i % 7)) * (z.reduce((s, v, f) => s + v * latent[f * k + i]!, 0) + 0.2 * rng.normal());
    }
    const gram = new Float64Array(k * k);
    for (let a = 0; a < m; a++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) gram[i * k + j] += x[a * k + i]! * x[a * k + j]!;
    const w = Float32Array.from({ length: n * k }, () => 0.1 * rng.normal());
    const rtn = await quantizeWeight(w, n, k, { bits: 3, symmetric: true, blockSize: 16, search: 'mse' });
    const eRtn = outputError(x, m, k, w, dequantizeWeight(rtn), n);
    for (const actOrder of [false, true]) {
      const g = gptqLevels(w, rtn, gram, 0.01, actOrder);
      expect(g.scales).toEqual(rtn.scales);
      expect(g.groups).toBe(4);
      for (const v of g.levels) expect(v >= -4 && v <= 3).toBe(true);
      expect(outputError(x, m, k, w, dequantizeWeight(g), n)).toBeLessThan(0.8 * eRtn);
    }
    // more damping moves GPTQ towards plain rounding
    const heavy = gptqLevels(w, rtn, gram, 0.99);
    const light = gptqLevels(w, rtn, gram, 0.01);
    const diff = (a: ArrayLike<number>): number => Array.from(a).reduce((s, v, i) => s + (v !== rtn.levels[i] ? 1 : 0), 0);
    expect(diff(heavy.levels)).toBeLessThanOrEqual(diff(light.levels));
  });

  it('wide layers (inverse and lazy-batch updates in onnxruntime) choose the levels the JavaScript reference does', async () => {
    const rng = new Random(12);
    const k = 300;
    const n = 24;
    const m = 600;
    const x = Float64Array.from({ length: m * k }, () => rng.normal());
    for (let a = 0; a < m; a++) for (let i = 1; i < k; i++) x[a * k + i] = 0.6 * x[a * k + i - 1]! + x[a * k + i]!;
    const gram = new Float64Array(k * k);
    for (let a = 0; a < m; a++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) gram[i * k + j] += x[a * k + i]! * x[a * k + j]!;
    const w = Float32Array.from({ length: n * k }, () => 0.1 * rng.normal());
    const q = await quantizeWeight(w, n, k, { bits: 4, symmetric: true, blockSize: 32, search: 'mse' });
    const given = gram.slice();
    for (const actOrder of [false, true]) {
      const a = await gptqLevelsAsync(w, q, gram, 0.01, actOrder);
      expect(gram).toEqual(given);
      const b = gptqLevels(w, q, gram, 0.01, actOrder);
      const same = Array.from(a.levels).reduce((s, v, i) => s + (v === b.levels[i] ? 1 : 0), 0) / a.levels.length;
      expect(same).toBeGreaterThan(0.995);
      expect(outputError(x, m, k, w, dequantizeWeight(a), n)).toBeLessThan(0.8 * outputError(x, m, k, w, dequantizeWeight(q), n));
    }
  });

  it('gptqFactor: U with U·(P H Pᵀ)·Uᵀ = I for the damped Gram matrix in activation order (J P H Pᵀ J written over the Gram matrix in place)', async () => {
    const rng = new Random(3);
    const k = 300;
    const m = 500;
    const x = Float64Array.from({ length: m * k }, () => rng.normal() * (1 + (rng.normal() > 0 ? 2 : 0)));
    const gram = new Float64Array(k * k);
    for (let a = 0; a < m; a++) for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) gram[i * k + j] += x[a * k + i]! * x[a * k + j]!;
    // one input always zero: GPTQ's damping gives it 1 before λ
    for (let i = 0; i < k; i++) gram[7 * k + i] = gram[i * k + 7] = 0;
    const { U, perm, dead } = await gptqFactor({ a: gram.slice() }, k, 0.01, true);
    expect(dead[7]).toBe(1);
    let mean = 0;
    for (let i = 0; i < k; i++) mean += gram[i * k + i]! / k;
    const h = (a: number, b: number): number => (a === b ? (gram[a * k + a] || 1) + 0.01 * mean : gram[a * k + b]!);
    // descending damped diagonal
    for (let i = 1; i < k; i++) expect(h(perm[i - 1]!, perm[i - 1]!)).toBeGreaterThanOrEqual(h(perm[i]!, perm[i]!));
    // (U P H Pᵀ Uᵀ)[a][b] = Σ_{i,j} U[a][i] H[perm i][perm j] U[b][j], U upper
    let worst = 0;
    for (let a = 0; a < k; a += 13) {
      const uh = new Float64Array(k);
      for (let i = a; i < k; i++) {
        const u = U[a * k + i]!;
        for (let j = 0; j < k; j++) uh[j] += u * h(perm[i]!, perm[j]!);
      }
      for (let b = 0; b < k; b += 7) {
        let sum = 0;
        for (let j = b; j < k; j++) sum += uh[j]! * U[b * k + j]!;
        worst = Math.max(worst, Math.abs(sum - (a === b ? 1 : 0)));
      }
      for (let j = 0; j < a; j++) expect(U[a * k + j]).toBe(0);
    }
    expect(worst).toBeLessThan(1e-9);
  });

  for (const [label, make] of [
    ['w4 weight-only', () => gptq({ bits: 4, verifySamples: 8 })],
    ['w3 with act-order', () => gptq({ bits: 3, actOrder: true, verifySamples: 8 })],
    ['w4a8 (static)', () => gptq({ bits: 4, aBits: 8, verifySamples: 8 })],
  ] as const) {
    it(`${label}: no worse than RTN on the output, ordinary export, round trip exact`, async () => {
      const r = await pipeline([make()]).apply(loadModel(modelFile), { calibration });
      const s = summaryOf(r);
      expect(r.report.passes[0]!.pass).toBe('gptq');
      expect(s.method).toBe('gptq');
      const rtn = summaryOf(await pipeline([quantize({ scheme: s.scheme as 'w4', ...(s.activationBits ? { weightBits: s.layers[0]!.bits } : {}), verifySamples: 8, cacheDir: false })]).apply(loadModel(modelFile), { calibration }));
      expect(s.layers[0]!.bits).toBe(rtn.layers[0]!.bits);
      expect(s.outputs[0]!.sqnr).toBeGreaterThan(rtn.outputs[0]!.sqnr - 0.5);
      const ops = new Set(r.model.graph.nodes.map((n) => n.opType));
      expect(ops.has(s.activationBits ? 'DequantizeLinear' : 'MatMulNBits')).toBe(true);
      const file = path.join(dir, `${label.replace(/\W+/g, '_')}.onnx`);
      saveModel(r.model, file);
      const [a, b] = await runBoth(r.model, loadModel(file), built.feeds(2));
      expect(sameOutputs(a, b)).toBe(true);
    });
  }

  it('CLI: --method gptq and --method flexround with --a-bits 8; errors in one sentence with exit code 2', () => {
    const out = path.join(dir, 'cli-gptq.onnx');
    const g = cli('quantize', modelFile, '-o', out, '--calib', calibDir, '--scheme', 'w4', '--method', 'gptq', '--act-order', '--no-cache');
    expect(g.stderr + g.stdout).not.toMatch(/error/i);
    expect(g.code).toBe(0);
    expect(fs.existsSync(out)).toBe(true);
    const f = cli('quantize', modelFile, '-o', path.join(dir, 'cli-fr.onnx'), '--calib', calibDir, '--scheme', 'w4', '--a-bits', '8', '--method', 'flexround', '--iters', '10', '--no-cache', '--json');
    expect(f.code).toBe(0);
    const j = JSON.parse(f.stdout) as QuantizeSummary;
    expect(j.method).toBe('flexround');
    expect(j.activationBits).toBe(8);
    expect(j.layers[0]!.bits).toBe(4);
    expect(j.flexround!.mode).toBe('block');
    const noCalib = cli('quantize', modelFile, '-o', path.join(dir, 'x.onnx'), '--scheme', 'w4', '--method', 'gptq');
    expect(noCalib.code).toBe(2);
    expect(noCalib.stderr).toMatch(/needs calibration data/);
    expect(cli('quantize', modelFile, '-o', path.join(dir, 'y.onnx'), '--calib', calibDir, '--method', 'flexround', '--iters', '-3').code).toBe(2);
    expect(cli('quantize', modelFile, '-o', path.join(dir, 'z.onnx'), '--calib', calibDir, '--scheme', 'w8a8', '--a-bits', '8').code).toBe(2);
  }, 60000);
});
