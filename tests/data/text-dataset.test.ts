import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { describe, expect, it } from 'vitest';
import { openDataset, type Dataset } from '../../src/data/dataset.js';
import { openRawDataset } from '../../src/data/raw-dataset.js';
import { loadTokenizer } from '../../src/data/tokenizer.js';
import { textDataset } from '../../src/data/text-dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { cli } from '../helpers/cli.js';
import { expectOneSentence } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const FOLDERS = path.join(ROOT, 'fixtures/zoo/folders');
const BERT = path.join(FOLDERS, 'hf_bert_spam');
const LLAMA = path.join(FOLDERS, 'llama_moby_kv');
const dir = tempDir('slimformer-text-data-');

const json = (f: string): Record<string, unknown> => JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;
const texts = (f: string): string[] => fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { text: string }).text);
const ids = (d: Dataset, i: number): number[] => Array.from(d.read(i).inputs.find((a) => a.name === 'input_ids')!.data as BigInt64Array, Number);

/** Every input and the label of two datasets, sample by sample: equal names, types, shapes and values. */
function expectSameTensors(got: Dataset, want: Dataset): void {
  expect(got.size).toBe(want.size);
  for (let i = 0; i < want.size; i++) {
    const g = got.read(i);
    const w = want.read(i);
    expect(g.inputs.map((a) => a.name)).toEqual(w.inputs.map((a) => a.name));
    g.inputs.forEach((a, k) => {
      expect({ name: a.name, dtype: a.dtype, dims: a.dims }).toEqual({ name: w.inputs[k]!.name, dtype: w.inputs[k]!.dtype, dims: w.inputs[k]!.dims });
      expect(Array.from(a.data as ArrayLike<unknown>)).toEqual(Array.from(w.inputs[k]!.data as ArrayLike<unknown>));
    });
    expect(g.label?.dims).toEqual(w.label?.dims);
    expect(Array.from(g.label!.data as BigInt64Array)).toEqual(Array.from(w.label!.data as BigInt64Array));
  }
}

describe('tokenization with the model folder tokenizer.json', () => {
  it('hf_bert_spam: ids equal those made in Python by the zoo procedure (fixtures/zoo/make_folders.py), truncated to 32 with [CLS] kept', () => {
    const expected = json(path.join(BERT, 'expected_ids.json')).ids as number[][];
    const tok = loadTokenizer(path.join(BERT, 'tokenizer.json'), path.join(BERT, 'tokenizer_config.json'));
    const samples = texts(path.join(BERT, 'samples.jsonl'));
    expect(samples.map((t) => tok.encode(t, 32).ids)).toEqual(expected);
    expect(expected.some((e) => e.length === 32)).toBe(true); // one sample is cut
    // the dataset pads them to 32 with [PAD] = 0, mask 1 on the real tokens
    const d = textDataset(loadModel(path.join(BERT, 'onnx/model.onnx')), path.join(BERT, 'samples.jsonl'), { tokenizer: tok, seqLen: 32 });
    expected.forEach((e, i) => {
      expect(ids(d, i)).toEqual([...e, ...new Array<number>(32 - e.length).fill(0)]);
      const mask = Array.from(d.read(i).inputs.find((a) => a.name === 'attention_mask')!.data as BigInt64Array, Number);
      expect(mask).toEqual(e.map(() => 1).concat(new Array<number>(32 - e.length).fill(0)));
    });
  });

  it('hf_bert_spam: equal to @huggingface/tokenizers run directly on the same tokenizer.json', () => {
    const raw = new Tokenizer(json(path.join(BERT, 'tokenizer.json')), json(path.join(BERT, 'tokenizer_config.json')));
    const tok = loadTokenizer(path.join(BERT, 'tokenizer.json'), path.join(BERT, 'tokenizer_config.json'));
    for (const t of [...texts(path.join(BERT, 'samples.jsonl')), ...texts(path.join(BERT, 'calib.jsonl'))]) {
      const direct = raw.encode(t).ids;
      expect(tok.encode(t).ids).toEqual(direct);
      // truncation keeps the leading [CLS] and the first content tokens
      expect(tok.encode(t, 8).ids).toEqual(direct.slice(0, 8));
    }
  });

  it('moby character tokenizer: ids equal Python stoi.get(c, 0) per code point (unknown characters, an emoji), and the library run directly', () => {
    const expected = json(path.join(LLAMA, 'expected_ids.json')).ids as number[];
    const text = fs.readFileSync(path.join(LLAMA, 'samples.txt'), 'utf8');
    const tok = loadTokenizer(path.join(LLAMA, 'tokenizer.json'));
    expect(tok.encode(text).ids).toEqual(expected);
    expect(expected.filter((x) => x === 0).length).toBeGreaterThanOrEqual(4); // '—' twice, '#', '&', 'é', the whale
    const raw = new Tokenizer(json(path.join(LLAMA, 'tokenizer.json')), { unk_token: '[UNK]' });
    expect(raw.encode(text).ids).toEqual(expected);
  });
});

describe('truncation keeps the special tokens on both sides', () => {
  it('[CLS] $A [SEP] cut to 5 keeps [CLS], the first 3 words and [SEP]; type ids follow; pad from tokenizer_config', () => {
    const f = path.join(dir, 'cls-sep.json');
    const special = (id: number, content: string): object => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    fs.writeFileSync(f, JSON.stringify({
      added_tokens: [special(0, '<pad>'), special(1, '[UNK]'), special(2, '[CLS]'), special(3, '[SEP]')],
      normalizer: null,
      pre_tokenizer: { type: 'WhitespaceSplit' },
      post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } }], pair: [], special_tokens: {} },
      decoder: null,
      model: { type: 'WordLevel', vocab: { '<pad>': 0, '[UNK]': 1, '[CLS]': 2, '[SEP]': 3, a: 4, b: 5, c: 6, d: 7 }, unk_token: '[UNK]' },
    }));
    const cfg = path.join(dir, 'cls-sep-config.json');
    fs.writeFileSync(cfg, JSON.stringify({ pad_token: '<pad>' }));
    const tok = loadTokenizer(f, cfg);
    expect(tok.encode('a b z c d', 5)).toEqual({ ids: [2, 4, 5, 1, 3], typeIds: [0, 0, 0, 0, 1] });
    expect(tok.encode('a b', 5)).toEqual({ ids: [2, 4, 5, 3], typeIds: [0, 0, 0, 1] });
    expect(tok.padId).toBe(0);
    expect(() => tok.encode('a b', 2)).toThrow(/adds 2 special tokens, which leaves no room in a sequence of 2/);
  });
});

describe('text datasets equal the zoo tensors made in Python', () => {
  it('hf_bert_spam: calib.jsonl (the zoo calibration samples as text, string labels via config.json label2id) gives calibration/zoo/hf_bert_spam/calib exactly', async () => {
    const model = loadModel(path.join(BERT, 'onnx/model.onnx'));
    const got = await openRawDataset(model, path.join(BERT, 'onnx/model.onnx'), { text: path.join(BERT, 'calib.jsonl') });
    expectSameTensors(got, openDataset(path.join(ROOT, 'calibration/zoo/hf_bert_spam/calib')));
  });

  it('llama_moby_kv: calib.txt in windows of 64 gives calibration/zoo/llama_moby_kv/calib exactly (position_ids, empty past [1,2,0,16], next-token labels)', async () => {
    const model = loadModel(path.join(LLAMA, 'onnx/model.onnx'));
    const got = await openRawDataset(model, path.join(LLAMA, 'onnx/model.onnx'), { text: path.join(LLAMA, 'calib.txt'), seqLen: 64 });
    expectSameTensors(got, openDataset(path.join(ROOT, 'calibration/zoo/llama_moby_kv/calib')));
  });

  it('hf_gpt2_moby (input_ids and attention_mask only): its calib.txt gives calibration/zoo/hf_gpt2_moby/calib exactly', async () => {
    const file = path.join(FOLDERS, 'hf_gpt2_moby/onnx/model.onnx');
    const got = await openRawDataset(loadModel(file), file, { text: path.join(FOLDERS, 'hf_gpt2_moby/calib.txt'), seqLen: 64 });
    expectSameTensors(got, openDataset(path.join(ROOT, 'calibration/zoo/hf_gpt2_moby/calib')));
  });

  it("Optimum's merged decoder gets use_cache_branch = false as well (tokenizer named, the ONNX outside a model folder)", async () => {
    const file = path.join(ROOT, 'fixtures/zoo/llama_moby_optimum/decoder_model_merged.onnx');
    const got = await openRawDataset(loadModel(file), file, { text: path.join(LLAMA, 'calib.txt'), seqLen: 64, tokenizer: LLAMA });
    expectSameTensors(got, openDataset(path.join(ROOT, 'calibration/zoo/llama_moby_optimum/decoder_model_merged/calib')));
  });
});

describe('slimformer dataset make / --calib-text / --data-text', () => {
  it('dataset make writes a test-data folder and a .npz that read back as the same tensors, and eval on either equals eval on the text', () => {
    const model = path.join(BERT, 'onnx/model.onnx');
    const text = path.join(BERT, 'calib.jsonl');
    const folder = path.join(dir, 'bert-calib');
    const npz = path.join(dir, 'bert-calib.npz');
    expect(cli('dataset', 'make', model, '--text', text, '-o', folder).code).toBe(0);
    expect(cli('dataset', 'make', model, '--text', text, '-o', npz).code).toBe(0);
    const want = openDataset(path.join(ROOT, 'calibration/zoo/hf_bert_spam/calib'));
    expectSameTensors(openDataset(folder), want);
    expectSameTensors(openDataset(npz), want);
    const metrics = (args: string[]): unknown => {
      const r = cli('eval', model, ...args, '--metric', 'top1,nll', '--json');
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { metrics: unknown }).metrics;
    };
    const fromText = metrics(['--data-text', text]);
    expect(metrics(['--data', folder])).toEqual(fromText);
    expect(metrics(['--data', npz])).toEqual(fromText);
  });

  it('quantize --calib-text on the KV-cache decoder folder (w8a8) and gate --data-text against the float model', () => {
    const model = path.join(LLAMA, 'onnx/model.onnx');
    const out = path.join(dir, 'llama.w8a8.onnx');
    const q = cli('quantize', model, '-o', out, '--calib-text', path.join(LLAMA, 'calib.txt'), '--seq-len', '64', '--json', '--no-cache');
    expect(q.code, q.stderr).toBe(0);
    const report = JSON.parse(q.stdout) as { calibration: { samples: number }; outputs: { name: string; sqnr: number }[] };
    expect(report.calibration.samples).toBe(16);
    expect(report.outputs[0]!.sqnr).toBeGreaterThan(15);
    const g = cli('gate', '--baseline', model, '--candidate', out, '--data-text', path.join(LLAMA, 'calib.txt'), '--seq-len', '64', '--metric', 'top1,agreement', '--max-drop', 'top1=0.05', '--json');
    expect(g.code, g.stdout + g.stderr).toBe(0);
  });

  it('analyze --calib-text measures the same statistics as analyze on the tensors it stands for', () => {
    const run = (args: string[]): unknown => {
      const r = cli('analyze', path.join(BERT, 'onnx/model.onnx'), ...args, '--json');
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { layers: unknown }).layers;
    };
    expect(run(['--calib-text', path.join(BERT, 'calib.jsonl')])).toEqual(run(['--calib', path.join(ROOT, 'calibration/zoo/hf_bert_spam/calib')]));
  });

  it('refuses bad raw data with one sentence naming the file and line, and writes nothing', () => {
    const model = path.join(BERT, 'onnx/model.onnx');
    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, '{"text": "hello", "label": "ham"}\n{"text": "x", "label": "phishing"}\n');
    expectOneSentence(cli('dataset', 'make', model, '--text', bad, '-o', path.join(dir, 'never')), /bad\.jsonl line 2: label 'phishing' is not a class of the model \(config\.json's label2id has 'ham', 'spam'\)/);
    fs.writeFileSync(bad, '{"text": "hello"}\nnot json\n');
    expectOneSentence(cli('eval', model, '--data-text', bad), /bad\.jsonl line 2 is not valid JSON/);
    expectOneSentence(cli('eval', path.join(ROOT, 'fixtures/zoo/hf_bert_spam.onnx'), '--data-text', bad), /no tokenizer\.json beside .*hf_bert_spam\.onnx.*--tokenizer FILE/);
    expectOneSentence(cli('eval', model, '--data', path.join(ROOT, 'calibration/zoo/hf_bert_spam/calib'), '--data-text', bad), /give one of --data, --data-text, --data-images, not several/);
    expect(fs.existsSync(path.join(dir, 'never'))).toBe(false);
  });
});
