import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDtypes, variantFile } from '../../src/cli/dtypes.js';
import { openRawDataset } from '../../src/data/raw-dataset.js';
import type { NamedArray } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { cli, type CliResult } from '../helpers/cli.js';
import { expectOneSentence, listTree } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Hugging Face-style model folders as the model argument, and `quantize --dtype`: the variants
 * transformers.js loads, written beside the model with its file names, each checked against
 * the float model. The checks of the figures run both files in onnxruntime-node directly
 * (not through slimformer's Session or comparison code).
 */
const FOLDERS = path.join(ROOT, 'fixtures/zoo/folders');
const dir = tempDir('slimformer-model-folder-');

/** A copy of a zoo folder (symlinks followed), so variants land in the copy. */
function copyFolder(name: string, as = name): string {
  const to = path.join(dir, as);
  fs.cpSync(path.join(FOLDERS, name), to, { recursive: true, dereference: true });
  return to;
}

/** Samples i..i+n-1 stacked along the first axis (every input of these models has batch 1 there). */
function stacked(samples: { read(i: number): { inputs: NamedArray[] } }, from: number, n: number, names: readonly string[]): Record<string, ort.Tensor> {
  const rows = Array.from({ length: n }, (_, k) => samples.read(from + k).inputs);
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of names) {
    const parts = rows.map((r) => r.find((x) => x.name === name)!);
    const first = parts[0]!;
    const type = first.data instanceof BigInt64Array ? 'int64' : first.data instanceof Int32Array ? 'int32' : 'float32';
    const data = new (first.data.constructor as new (n: number) => Float32Array)(first.data.length * n);
    parts.forEach((p, k) => data.set(p.data as Float32Array, k * first.data.length));
    feeds[name] = new ort.Tensor(type, data, [first.dims[0]! * n, ...first.dims.slice(1)]);
  }
  return feeds;
}

/**
 * SQNR of the first output, 10 log10(sum x^2 / sum (x - y)^2) over every value, and top-1
 * agreement over the last axis, on the first `n` samples: float vs variant, run in batches of
 * 4 samples as slimformer's check runs them (a dynamic model's activation scales depend on the
 * batch: run one sample at a time, q8's SQNR differed by 0.6 to 1.3 dB).
 */
async function measure(floatFile: string, variantPath: string, samples: { read(i: number): { inputs: NamedArray[] } }, n: number): Promise<{ sqnr: number; agreement: number }> {
  const a = await ort.InferenceSession.create(floatFile);
  const b = await ort.InferenceSession.create(variantPath);
  const out = a.outputNames[0]!;
  let signal = 0;
  let noise = 0;
  let agree = 0;
  let rows = 0;
  for (let i = 0; i < n; i += 4) {
    const feeds = stacked(samples, i, Math.min(4, n - i), a.inputNames);
    const x = (await a.run(feeds))[out]!;
    const y = (await b.run(feeds))[out]!;
    const xd = x.data as Float32Array;
    const yd = y.data as Float32Array;
    for (let k = 0; k < xd.length; k++) {
      signal += xd[k]! ** 2;
      noise += (xd[k]! - yd[k]!) ** 2;
    }
    const width = x.dims[x.dims.length - 1]!;
    for (let r = 0; r < xd.length / width; r++) {
      const arg = (d: Float32Array): number => {
        let best = 0;
        for (let c = 1; c < width; c++) if (d[r * width + c]! > d[r * width + best]!) best = c;
        return best;
      };
      if (arg(xd) === arg(yd)) agree++;
      rows++;
    }
  }
  await a.release();
  await b.release();
  return { sqnr: 10 * Math.log10(signal / noise), agreement: agree / rows };
}

/** Operator types of a saved model's main graph. */
function ops(file: string): Set<string> {
  return new Set(loadModel(file).graph.nodes.map((n) => n.opType));
}

interface VariantJson {
  dtype: string;
  output: string;
  written: boolean;
  quality: { sqnr: number; agreement: number; samples: number; verdict: string };
}

describe('transformers.js dtype names', () => {
  it('maps each dtype to its file suffix and scheme, beside the model file', () => {
    const got = parseDtypes('q4,q8,fp16,int8,q4f16').map((v) => [v.dtype, path.basename(variantFile('/m/onnx/decoder_model_merged.onnx', v)), v.scheme]);
    expect(got).toEqual([
      ['q4', 'decoder_model_merged_q4.onnx', 'w4'],
      ['q8', 'decoder_model_merged_quantized.onnx', 'dynamic'],
      ['fp16', 'decoder_model_merged_fp16.onnx', 'fp16'],
      ['int8', 'decoder_model_merged_int8.onnx', 'dynamic'],
      ['q4f16', 'decoder_model_merged_q4f16.onnx', 'q4f16'],
    ]);
    expect(path.dirname(variantFile('/m/onnx/model.onnx', parseDtypes('q4')[0]!))).toBe('/m/onnx');
  });
});

describe('quantize <decoder folder> --dtype q4,q8 --calib-text', () => {
  let folder: string;
  let r: CliResult;
  let json: { input: string; variants: VariantJson[] };
  beforeAll(() => {
    folder = copyFolder('llama_moby_kv');
    r = cli('quantize', folder, '--dtype', 'q4,q8', '--calib-text', path.join(folder, 'calib.txt'), '--json', '--no-cache');
    json = r.code === 0 ? JSON.parse(r.stdout) : { input: '', variants: [] };
  }, 120_000);

  it('chooses onnx/model.onnx, says so, and writes model_q4.onnx and model_quantized.onnx beside it', () => {
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`model folder ${folder}: using onnx/model.onnx`);
    expect(json.input).toBe(path.join(folder, 'onnx/model.onnx'));
    expect(json.variants.map((v) => [v.dtype, path.relative(folder, v.output), v.written])).toEqual([
      ['q4', 'onnx/model_q4.onnx', true],
      ['q8', 'onnx/model_quantized.onnx', true],
    ]);
    expect(fs.readdirSync(path.join(folder, 'onnx')).sort()).toEqual(['model.onnx', 'model_q4.onnx', 'model_quantized.onnx']);
  });

  it('writes q4 as MatMulNBits and q8 as dynamic int8 (DynamicQuantizeLinear + MatMulInteger, int8 weights)', () => {
    expect(ops(path.join(folder, 'onnx/model_q4.onnx')).has('MatMulNBits')).toBe(true);
    const q8 = loadModel(path.join(folder, 'onnx/model_quantized.onnx'));
    const types = new Set(q8.graph.nodes.map((n) => n.opType));
    expect(types.has('DynamicQuantizeLinear') || types.has('DynamicQuantizeMatMul')).toBe(true);
    expect(types.has('MatMulInteger') || types.has('DynamicQuantizeMatMul')).toBe(true);
    const integerWeights = q8.graph.nodes.filter((n) => n.opType === 'MatMulInteger').map((n) => n.input(1)?.initializer?.dtype);
    expect(integerWeights.length).toBeGreaterThan(0);
    expect(new Set(integerWeights)).toEqual(new Set([3])); // onnx TensorProto INT8
  });

  it('reports each variant\'s SQNR and agreement as onnxruntime-node measures them on the same samples (0.05 dB, exact agreement)', async () => {
    const model = path.join(folder, 'onnx/model.onnx');
    const samples = await openRawDataset(loadModel(model), model, { text: path.join(folder, 'calib.txt') });
    for (const v of json.variants) {
      expect(v.quality.verdict).toBe('pass');
      const m = await measure(model, v.output, samples, v.quality.samples);
      expect(Math.abs(m.sqnr - v.quality.sqnr), v.dtype).toBeLessThan(0.05);
      expect(m.agreement, v.dtype).toBeCloseTo(v.quality.agreement, 6);
    }
    // q8 (8-bit weights) is closer to float than q4
    expect(json.variants[1]!.quality.sqnr).toBeGreaterThan(json.variants[0]!.quality.sqnr);
  }, 60_000);

  it('prints one table of the variants without --json', () => {
    const again = cli('quantize', folder, '--dtype', 'q8,q4', '--calib-text', path.join(folder, 'calib.txt'), '--no-cache');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^dtype\s+file\s+scheme\s+size\s+smaller\s+SQNR\s+top-1\s+quality$/m);
    expect(again.stdout).toMatch(/^q8\s+model_quantized\.onnx\s+dynamic\s+[\d.]+ KiB\s+[\d.]+x\s+[\d.]+ dB\s+[\d.]+%\s+pass$/m);
    expect(again.stdout).toMatch(/^q4\s+model_q4\.onnx\s+w4\s+/m);
  }, 60_000);
});

describe('quantize <file.onnx> --dtype', () => {
  it('writes the variant beside a bare model file, named after it', () => {
    const file = path.join(dir, 'vit_mnist.onnx');
    fs.copyFileSync(path.join(ROOT, 'fixtures/vit_mnist.onnx'), file);
    const r = cli('quantize', file, '--dtype', 'q8', '--calib', path.join(ROOT, 'calibration/vit_mnist/calib'), '--no-cache');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/using/); // a file is used as given
    expect(r.stdout).toMatch(/^q8\s+vit_mnist_quantized\.onnx\s+dynamic\s/m);
    expect(ops(path.join(dir, 'vit_mnist_quantized.onnx')).has('MatMulInteger')).toBe(true);
  }, 60_000);
});

describe('quantize <ViT folder> --dtype q4,q8 --calib-images', () => {
  it('writes both variants, measured on the images as onnxruntime-node measures them', async () => {
    const folder = copyFolder('tv_vit_mnist');
    const images = path.join(folder, 'images');
    const r = cli('quantize', folder, '--dtype', 'q4,q8', '--calib-images', images, '--json', '--no-cache');
    expect(r.code, r.stderr).toBe(0);
    const variants = (JSON.parse(r.stdout) as { variants: VariantJson[] }).variants;
    expect(variants.map((v) => path.relative(folder, v.output))).toEqual(['onnx/model_q4.onnx', 'onnx/model_quantized.onnx']);
    const model = path.join(folder, 'onnx/model.onnx');
    const samples = await openRawDataset(loadModel(model), model, { images });
    for (const v of variants) {
      expect(v.quality.samples).toBe(16);
      const m = await measure(model, v.output, samples, 16);
      expect(Math.abs(m.sqnr - v.quality.sqnr), v.dtype).toBeLessThan(0.05);
      expect(m.agreement, v.dtype).toBeCloseTo(v.quality.agreement, 6);
    }
  }, 120_000);
});

describe('quantize --dtype stopped after its first variant', () => {
  it('leaves no variant and no temporary file (SIGTERM: exit 143, one line)', async () => {
    const folder = path.join(dir, 'stopped');
    fs.mkdirSync(path.join(folder, 'onnx'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'fixtures/gpt_moby.onnx'), path.join(folder, 'onnx/model.onnx'));
    // FlexRound makes each variant take seconds (about 5 s at 100 steps here), time to see the first one saved
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/slimformer.js'), 'quantize', folder, '--dtype', 'q8,q4', '--method', 'flexround', '--iters', '300', '--calib', path.join(ROOT, 'calibration/gpt_moby/calib'), '--no-cache'], { env: { ...process.env, SLIMFORMER_THREADS: '2' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const onnx = path.join(folder, 'onnx');
    const saved = (): string[] => fs.readdirSync(onnx).filter((f) => f !== 'model.onnx');
    const deadline = Date.now() + 60_000;
    while (!saved().some((f) => f.endsWith('model_quantized.onnx')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // the q8 variant is on disk (under its temporary name) while q4 is being made
    expect(saved().filter((f) => f.endsWith('model_quantized.onnx'))).toEqual([expect.stringMatching(/^\.slimformer-tmp-\d+-model_quantized\.onnx$/)]);
    child.kill('SIGTERM');
    expect(await done, stderr).toBe(143);
    expect(stderr).toMatch(/stopped by SIGTERM; nothing was written/);
    expect(fs.readdirSync(onnx)).toEqual(['model.onnx']);
  }, 90_000);
});

describe('choosing the model in a folder', () => {
  it('takes decoder_model_merged.onnx over the unmerged pair it replaces, and names the variants after it', () => {
    const folder = copyFolder('llama_moby_kv', 'optimum_layout');
    fs.rmSync(path.join(folder, 'onnx/model.onnx'));
    for (const f of ['decoder_model.onnx', 'decoder_with_past_model.onnx', 'decoder_model_merged.onnx']) fs.copyFileSync(path.join(ROOT, 'fixtures/zoo/llama_moby_optimum', f), path.join(folder, 'onnx', f));
    const r = cli('quantize', folder, '--dtype', 'q4', '--calib-text', path.join(folder, 'calib.txt'), '--no-cache');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('using onnx/decoder_model_merged.onnx (left alone: onnx/decoder_model.onnx and onnx/decoder_with_past_model.onnx, the unmerged pair it replaces)');
    expect(fs.existsSync(path.join(folder, 'onnx/decoder_model_merged_q4.onnx'))).toBe(true);
    // the variant just written is not a candidate the next time
    const again = cli('inspect', folder);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('using onnx/decoder_model_merged.onnx');
  }, 60_000);

  it('eval, prune, gate and quantize -o take a folder too', () => {
    const folder = copyFolder('tv_vit_mnist', 'vit_other_commands');
    const images = path.join(folder, 'images');
    const ev = cli('eval', folder, '--data-images', images, '--json');
    expect(ev.code, ev.stderr).toBe(0);
    expect(ev.stderr).toContain('using onnx/model.onnx');
    const pruned = path.join(dir, 'vit_pruned.onnx');
    const pr = cli('prune', folder, '-o', pruned, '--calib-images', images, '--ratio', '0.1');
    expect(pr.code, pr.stderr).toBe(0);
    const gate = cli('gate', '--baseline', folder, '--candidate', pruned, '--data-images', images, '--max-drop', 'top1=0.5');
    expect(gate.code, gate.stderr).toBe(0);
    expect(gate.stderr).toContain(`baseline folder ${folder}: using onnx/model.onnx`);
    const w8a8 = path.join(dir, 'vit_w8a8.onnx');
    const q = cli('quantize', folder, '-o', w8a8, '--scheme', 'w8a8', '--calib-images', images, '--no-cache');
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toContain(`${path.join(folder, 'onnx/model.onnx')} -> ${w8a8}  (w8a8`);
    expect(fs.readdirSync(path.join(folder, 'onnx'))).toEqual(['model.onnx']);
  }, 120_000);

  const bad = (name: string, build: (d: string) => void): string => {
    const d = path.join(dir, name);
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'config.json'), '{"model_type": "llama"}');
    build(d);
    return d;
  };

  it('a folder without onnx/ is one sentence, exit 2, nothing written', () => {
    const d = bad('no_onnx', () => {});
    const before = listTree(d);
    expectOneSentence(cli('quantize', d, '--dtype', 'q4,q8'), /^slimformer: model folder .*no_onnx has no onnx\/ folder and no \.onnx file; expected onnx\/model\.onnx/);
    expect(listTree(d)).toEqual(before);
  });

  it('an empty onnx/ folder, or one with only variants, is one sentence, exit 2', () => {
    const empty = bad('empty_onnx', (d) => fs.mkdirSync(path.join(d, 'onnx')));
    expectOneSentence(cli('quantize', empty, '--dtype', 'q4'), /has no \.onnx file in its onnx\/ folder/);
    const variantsOnly = bad('variants_only', (d) => {
      fs.mkdirSync(path.join(d, 'onnx'));
      fs.copyFileSync(path.join(FOLDERS, 'llama_moby_kv/onnx/model.onnx'), path.join(d, 'onnx/model_q4.onnx'));
    });
    expectOneSentence(cli('eval', variantsOnly), /has no ONNX model, only variants \(onnx\/model_q4\.onnx\)/);
  });

  it('several models (encoder and decoder) is one sentence naming them, exit 2, nothing written', () => {
    const d = bad('two_models', (d) => {
      fs.mkdirSync(path.join(d, 'onnx'));
      for (const f of ['encoder_model.onnx', 'decoder_model_merged.onnx']) fs.copyFileSync(path.join(FOLDERS, 'llama_moby_kv/onnx/model.onnx'), path.join(d, 'onnx', f));
    });
    const before = listTree(d);
    expectOneSentence(cli('quantize', d, '--dtype', 'q4'), /holds several models \(onnx\/decoder_model_merged\.onnx, onnx\/encoder_model\.onnx\); give the one to use by its path/);
    expect(listTree(d)).toEqual(before);
  });

  it('refuses uint8 with its reason, unknown dtypes, -o and --scheme with --dtype, and a folder without --dtype or -o', () => {
    const folder = path.join(FOLDERS, 'llama_moby_kv');
    const before = listTree(path.join(folder, 'onnx'));
    expectOneSentence(cli('quantize', path.join(folder, 'onnx/model.onnx'), '--dtype', 'q4,uint8'), /--dtype uint8 is not written: transformers\.js's uint8 is dynamic quantization with asymmetric uint8 weights/);
    expectOneSentence(cli('quantize', path.join(folder, 'onnx/model.onnx'), '--dtype', 'q3'), /unknown --dtype 'q3' \(choose from fp16, q8, int8, q4, q4f16/);
    expectOneSentence(cli('quantize', path.join(folder, 'onnx/model.onnx'), '--dtype', 'q4', '-o', path.join(dir, 'x.onnx')), /-o goes with one --scheme, not with --dtype/);
    expectOneSentence(cli('quantize', path.join(folder, 'onnx/model.onnx'), '--dtype', 'q4', '--scheme', 'w4'), /give --dtype or --scheme, not both/);
    expectOneSentence(cli('quantize', path.join(folder, 'onnx/model.onnx')), /give -o FILE .* or --dtype/);
    // checked before any variant is written: q4 would take 2 bits, q8 cannot
    expectOneSentence(cli('quantize', path.join(folder, 'onnx/model.onnx'), '--dtype', 'q4,q8', '--layer-bits', '*=2', '--calib-text', path.join(folder, 'calib.txt')), /--layer-bits \*=2: --dtype q8 quantizes weights to 8 bits/);
    expect(listTree(path.join(folder, 'onnx'))).toEqual(before);
  });
});
