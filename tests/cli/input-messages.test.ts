import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel } from '../../src/onnx/load.js';
import { saveModel } from '../../src/onnx/save.js';
import { readTensorFile, writeTensorFile } from '../../src/onnx/tensor-file.js';
import { cli } from '../helpers/cli.js';
import { expectOneSentence, listTree, sha256 } from '../helpers/cli-checks.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { writeTestData } from '../helpers/tiny-classifier.js';

const dir = tempDir('slimformer-input-messages-');

describe('messages about what the model is fed', () => {
  it('a model with no inputs says so, instead of "(its inputs are )"', () => {
    const g = new Graph('constant');
    const c = g.addInitializer(Tensor.from('c', DataType.FLOAT, [1, 3], [0.1, 0.5, 0.2]));
    const y = g.addNode('Identity', [c], ['logits']).output(0);
    y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 3] };
    g.outputs.push(y);
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    const model = path.join(dir, 'no-inputs.onnx');
    saveModel(m, model);
    const data = path.join(dir, 'no-inputs-data');
    writeTestData(data, [Float32Array.from([1, 2, 3])], [1]);
    const r = cli('eval', model, '--data', data);
    expectOneSentence(r, /tensor 'features' is not an input of the model \(the model takes no inputs\)/);
    expect(r.stderr).not.toMatch(/its inputs are \)/);
  });

  it('an out-of-vocabulary id: slimformer\'s one sentence naming the file, no onnxruntime log line', () => {
    const data = path.join(dir, 'oov');
    const evalDir = path.join(ROOT, 'calibration/bert_spam/eval');
    for (const i of [0, 1, 2]) fs.cpSync(path.join(evalDir, `test_data_set_${i}`), path.join(data, `test_data_set_${i}`), { recursive: true });
    const file = path.join(data, 'test_data_set_1', 'input_0.pb');
    const ids = readTensorFile(file);
    const values = Array.from(ids.toTypedArray() as BigInt64Array, Number);
    const rows = loadModel(path.join(ROOT, 'fixtures/bert_spam.onnx')).graph.value('word_embeddings.weight')!.initializer!.dims[0]!;
    values[5] = rows + 10;
    writeTensorFile(file, Tensor.from('input_ids', DataType.INT64, ids.dims, values));
    const hash = sha256(file);
    const before = listTree(dir);
    const pattern = new RegExp(`oov/test_data_set_1/input_0\\.pb: tensor 'input_ids' holds ${rows + 10} at position 5, outside the ${rows} rows of table 'word_embeddings\\.weight' that node '/word_embeddings/Gather' reads`);
    for (const args of [
      ['eval', path.join(ROOT, 'fixtures/bert_spam.onnx'), '--data', data],
      ['quantize', path.join(ROOT, 'fixtures/bert_spam.onnx'), '-o', path.join(dir, 'q.onnx'), '--calib', data, '--no-cache'],
    ]) {
      const r = cli(...args);
      expectOneSentence(r, pattern);
      expect(r.stderr).not.toMatch(/onnxruntime/);
    }
    expect(sha256(file)).toBe(hash);
    expect(listTree(dir)).toEqual(before);
  });
  it('an index the up-front check cannot see (a table computed at run time) still ends in one line, not onnxruntime\'s log too', () => {
    // Gather reads the table through Identity: no constant table to check the ids against
    const g = new Graph('computed-table');
    const ids = g.addInput('ids', { kind: 'tensor', dtype: DataType.INT64, shape: ['batch', 4] });
    const table = g.addInitializer(Tensor.from('table', DataType.FLOAT, [5, 3], Array.from({ length: 15 }, (_, i) => i / 10)));
    const t = g.addNode('Identity', [table], ['table_copy']).output(0);
    const e = g.addNode('Gather', [t, ids], ['embedded']).output(0);
    const y = g.addNode('ReduceMean', [e], ['logits'], { attributes: { axes: { type: 'ints', value: [1] }, keepdims: { type: 'int', value: 0 } } }).output(0);
    y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch', 3] };
    g.outputs.push(y);
    const m = new Model(g);
    m.opsetImports = new Map([['', 13]]);
    const model = path.join(dir, 'computed-table.onnx');
    saveModel(m, model);
    const sample = path.join(dir, 'computed-table-data', 'test_data_set_0');
    fs.mkdirSync(sample, { recursive: true });
    writeTensorFile(path.join(sample, 'input_0.pb'), Tensor.from('ids', DataType.INT64, [1, 4], [0, 1, 9, 2]));
    writeTensorFile(path.join(sample, 'label.pb'), Tensor.from('label', DataType.INT64, [1], [0]));
    const r = cli('eval', model, '--data', path.dirname(sample));
    expectOneSentence(r, /onnxruntime failed to run the model: .*Gather/);
    expect(r.stderr).not.toMatch(/\[E:onnxruntime/);
  });
});

describe('options that take several values are repeated, so they never swallow the model path', () => {
  it('quantize --exclude PATTERN MODEL reads MODEL as the model', () => {
    const out = path.join(dir, 'excluded.onnx');
    const r = cli('quantize', '--exclude', 'classifier', path.join(ROOT, 'fixtures/vit_mnist.onnx'), '-o', out, '--scheme', 'w8', '--json');
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { excluded: { name: string }[]; layers: { name: string }[] };
    expect(summary.excluded.map((e) => e.name)).toEqual(['classifier']);
    expect(summary.layers.some((l) => l.name === 'classifier')).toBe(false);
    expect(fs.existsSync(out)).toBe(true);
  });

  it('two patterns take the flag twice; --help says so', () => {
    const out = path.join(dir, 'two.onnx');
    const r = cli('quantize', '--layer-bits', 'classifier=8', '--layer-bits', 'blocks.0.*=float', path.join(ROOT, 'fixtures/vit_mnist.onnx'), '-o', out, '--scheme', 'w4', '--json');
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { layers: { name: string; bits: number }[] };
    expect(summary.layers.find((l) => l.name === 'classifier')?.bits).toBe(8);
    expect(summary.layers.some((l) => l.name.startsWith('blocks.0.'))).toBe(false);
    const help = cli('quantize', '--help').stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/--exclude <pattern> .*repeat the flag for more patterns/);
    expect(help).toMatch(/--layer-bits <pattern=bits> .*repeat the flag for more/);
    expect(cli('compress', '--help').stdout.replace(/\s+/g, ' ')).toMatch(/--report <file> .*repeat the flag for more files/);
  });
});
