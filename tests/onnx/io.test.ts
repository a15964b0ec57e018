import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { stringAttr } from '../../src/ir/attribute.js';
import { loadModel, modelFromBytes, saveModel } from '../../src/onnx/index.js';
import { onnx, type ITensorProto } from '../../src/onnx/proto.js';
import { decodeTensor } from '../../src/onnx/tensor-proto.js';
import { readExternalBytes } from '../../src/onnx/external-data.js';
import { runBoth, sameOutputs } from '../helpers/compare.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir();

const WEIGHT_TYPES: [DataType, number[]][] = [
  [DataType.FLOAT, [0.5, -1.25, 3e-8, 1e6, -0, 7]],
  [DataType.FLOAT16, [0.5, -1.25, 0.0001, 1000, 2, 7]],
  [DataType.BFLOAT16, [0.5, -1.25, 0.0001, 1000, 2, 7]],
  [DataType.DOUBLE, [0.5, -1.25, 1e-300, 1e300, 2, 7]],
  [DataType.INT8, [-128, 127, 0, 1, -1, 5]],
  [DataType.UINT8, [0, 255, 1, 2, 3, 4]],
  [DataType.INT32, [-(2 ** 31), 2 ** 31 - 1, 0, 1, -1, 5]],
  [DataType.INT64, [-(2 ** 40), 2 ** 40, 0, 1, -1, 5]],
  [DataType.BOOL, [1, 0, 1, 1, 0, 0]],
  [DataType.INT4, [-8, 7, 0, 1, -1, 5]],
  [DataType.UINT4, [0, 15, 1, 2, 3, 4]],
];

/** One output per weight type: Cast (or, for 4-bit, DequantizeLinear) to float. */
function modelWithEveryType(): Model {
  const g = new Graph('all_types');
  const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [2, 3] });
  for (const [dt, values] of WEIGHT_TYPES) {
    const w = g.addInitializer(Tensor.from(`w_${dt}`, dt, [2, 3], values));
    let asFloat;
    if (dt === DataType.INT4 || dt === DataType.UINT4) {
      const scale = g.addInitializer(Tensor.from(`s_${dt}`, DataType.FLOAT, [], [0.5]));
      asFloat = g.addNode('DequantizeLinear', [w, scale], [`dq_${dt}`]).output(0);
    } else {
      asFloat = g.addNode('Cast', [w], [`cast_${dt}`], { attributes: { to: { type: 'int', value: DataType.FLOAT } } }).output(0);
    }
    const y = g.addNode('Add', [x, asFloat], [`y_${dt}`]).output(0);
    y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: [2, 3] };
    g.outputs.push(y);
  }
  const m = new Model(g);
  m.irVersion = 10;
  m.opsetImports = new Map([['', 21]]);
  m.producerName = 'slimformer-test';
  m.docString = 'a model with every weight type';
  m.metadata = new Map([['author', 'tests'], ['purpose', 'round trip']]);
  g.docString = 'graph doc';
  g.nodes[0]!.docString = 'first node doc';
  return m;
}

const feeds = { x: { dtype: DataType.FLOAT, dims: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) } };

describe('ONNX save/load', () => {
  it('round-trips every weight type with identical onnxruntime outputs', async () => {
    const m = modelWithEveryType();
    const file = path.join(dir, 'types.onnx');
    saveModel(m, file);
    const back = loadModel(file);
    for (const [dt, values] of WEIGHT_TYPES) {
      const t = back.graph.value(`w_${dt}`)!.initializer!;
      expect(t.dtype).toBe(dt);
      expect(t.toNumbers()).toEqual(Tensor.from('r', dt, [2, 3], values).toNumbers());
    }
    const [a, b] = await runBoth(m, back, feeds);
    expect(sameOutputs(a, b)).toBe(true);
    expect(Object.keys(a)).toHaveLength(WEIGHT_TYPES.length);
  });

  it('keeps opset imports, metadata, doc strings, producer and IR version', () => {
    const file = path.join(dir, 'meta.onnx');
    saveModel(modelWithEveryType(), file);
    const back = loadModel(file);
    expect(back.irVersion).toBe(10);
    expect([...back.opsetImports]).toEqual([['', 21]]);
    expect([...back.metadata]).toEqual([['author', 'tests'], ['purpose', 'round trip']]);
    expect(back.docString).toBe('a model with every weight type');
    expect(back.graph.docString).toBe('graph doc');
    expect(back.graph.nodes[0]!.docString).toBe('first node doc');
    expect(back.producerName).toBe('slimformer-test');
  });

  it('writes and reads external data, lazily, with the same outputs', async () => {
    const m = modelWithEveryType();
    const file = path.join(dir, 'ext.onnx');
    const r = saveModel(m, file, { externalData: { threshold: 0 } });
    expect(r.dataPath).toBe(path.join(dir, 'ext.onnx.data'));
    expect(fs.existsSync(r.dataPath!)).toBe(true);
    const back = loadModel(file);
    expect(back.loadedWithExternalData).toBe(true);
    const w = back.graph.value(`w_${DataType.FLOAT}`)!.initializer!;
    expect(w.isExternal).toBe(true);
    const [a, b] = await runBoth(m, back, feeds);
    expect(sameOutputs(a, b)).toBe(true);
    // saving again (default 'auto') keeps external data; an inline save has no data file
    const again = path.join(dir, 'ext2.onnx');
    expect(saveModel(loadModel(file), again).dataPath).toBeDefined();
    const inline = path.join(dir, 'inline.onnx');
    expect(saveModel(loadModel(file), inline, { externalData: false }).dataPath).toBeUndefined();
    const [, c] = await runBoth(m, loadModel(inline), feeds);
    expect(sameOutputs(a, c)).toBe(true);
  });

  it('overwriting a model in place keeps its not-yet-read external tensors valid', async () => {
    const file = path.join(dir, 'inplace.onnx');
    saveModel(modelWithEveryType(), file, { externalData: { threshold: 0 } });
    const m = loadModel(file);
    saveModel(m, file, { externalData: { threshold: 0 } });
    const [a, b] = await runBoth(modelWithEveryType(), m, feeds);
    expect(sameOutputs(a, b)).toBe(true);
  });

  it('reads tensors stored in typed fields (float_data, int32_data, int64_data, ...)', () => {
    const ctx = { file: 't', baseDir: dir, readExternal: readExternalBytes };
    const T = onnx.TensorProto.DataType;
    const cases: [ITensorProto, number[]][] = [
      [{ dataType: T.FLOAT, dims: [3], floatData: [1.5, -2, 3] }, [1.5, -2, 3]],
      [{ dataType: T.DOUBLE, dims: [2], doubleData: [1e-300, 2] }, [1e-300, 2]],
      [{ dataType: T.INT64, dims: [2], int64Data: [-5, 9] }, [-5, 9]],
      [{ dataType: T.INT32, dims: [2], int32Data: [-5, 9] }, [-5, 9]],
      [{ dataType: T.INT8, dims: [2], int32Data: [-128, 127] }, [-128, 127]],
      [{ dataType: T.UINT8, dims: [2], int32Data: [0, 255] }, [0, 255]],
      [{ dataType: T.BOOL, dims: [2], int32Data: [1, 0] }, [1, 0]],
      [{ dataType: T.FLOAT16, dims: [2], int32Data: [0x3c00, 0xc000] }, [1, -2]],
      [{ dataType: T.BFLOAT16, dims: [1], int32Data: [0x3f80] }, [1]],
      [{ dataType: T.UINT64, dims: [1], uint64Data: [7] }, [7]],
      [{ dataType: 22 /* INT4 */, dims: [3], int32Data: [0x78, 0x0f] }, [-8, 7, -1]],
    ];
    for (const [p, expected] of cases) {
      const decoded = onnx.TensorProto.decode(onnx.TensorProto.encode(p).finish());
      expect(decodeTensor(decoded, ctx).toNumbers(), `dataType ${p.dataType}`).toEqual(expected);
    }
  });

  it('round-trips a model with a subgraph (If) reading outer values', async () => {
    const g = new Graph('outer');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [2] });
    const c = g.addInput('cond', { kind: 'tensor', dtype: DataType.BOOL, shape: [] });
    const mk = (op: string, name: string): Graph => {
      const sg = new Graph(name);
      sg.parent = g;
      const n = sg.addNode(op, [x], [`${name}_out`]);
      n.output(0).type = { kind: 'tensor', dtype: DataType.FLOAT, shape: [2] };
      sg.outputs.push(n.output(0));
      return sg;
    };
    const iff = g.addNode('If', [c], ['y'], { attributes: { then_branch: { type: 'graph', value: mk('Neg', 'then') }, else_branch: { type: 'graph', value: mk('Abs', 'else') } } });
    g.outputs.push(iff.output(0));
    const m = new Model(g);
    m.opsetImports = new Map([['', 17]]);
    const file = path.join(dir, 'if.onnx');
    saveModel(m, file);
    const back = loadModel(file);
    expect(back.graph.value('x')!.uses().map((u) => u.node.opType).sort()).toEqual(['Abs', 'Neg']);
    for (const cond of [0, 1]) {
      const f = { x: feeds.x && { dtype: DataType.FLOAT, dims: [2], data: Float32Array.from([-1, 2]) }, cond: { dtype: DataType.BOOL, dims: [], data: Uint8Array.from([cond]) } };
      const [a, b] = await runBoth(m, back, f);
      expect(sameOutputs(a, b)).toBe(true);
      expect([...a.y!.data]).toEqual(cond ? [1, -2] : [1, 2]);
    }
    expect(back.graph.removeDeadNodes()).toBe(0);
    expect(back.clone().graph.nodes[0]!.subgraphs()).toHaveLength(2);
  });
});

describe('bad model files', () => {
  it('names the file and says what is wrong', () => {
    expect(() => loadModel(path.join(dir, 'missing.onnx'))).toThrow(/missing\.onnx does not exist/);
    const empty = path.join(dir, 'empty.onnx');
    fs.writeFileSync(empty, '');
    expect(() => loadModel(empty)).toThrow(/empty\.onnx is empty/);
    const good = path.join(dir, 'good.onnx');
    saveModel(modelWithEveryType(), good);
    const bytes = fs.readFileSync(good);
    const truncated = path.join(dir, 'truncated.onnx');
    fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    expect(() => loadModel(truncated)).toThrow(/truncated\.onnx is not a valid ONNX model|truncated\.onnx.*truncated or corrupt/);
    const garbage = path.join(dir, 'garbage.onnx');
    fs.writeFileSync(garbage, Buffer.from('this is not a protobuf at all, just some text\n'.repeat(20)));
    expect(() => loadModel(garbage)).toThrow(/garbage\.onnx is not a valid ONNX model/);
  });

  it('rejects a dangling reference and an external location outside the model folder', () => {
    const p = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: { name: 'g', node: [{ opType: 'Relu', name: 'r', input: ['nowhere'], output: ['y'] }], output: [{ name: 'y' }] },
    }).finish();
    expect(() => modelFromBytes(p, 'dangling.onnx')).toThrow(/node 'r' \(Relu\) reads 'nowhere'/);
    const q = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        initializer: [{ name: 'w', dataType: 1, dims: [1], dataLocation: 1, externalData: [{ key: 'location', value: '../../etc/passwd' }] }],
        node: [{ opType: 'Relu', name: 'r', input: ['w'], output: ['y'] }],
        output: [{ name: 'y' }],
      },
    }).finish();
    expect(() => modelFromBytes(q, 'escape.onnx')).toThrow(/must be a path inside the model's folder/);
  });

  it('a failed save leaves no file behind', () => {
    const m = modelWithEveryType();
    // a tensor whose external data file is gone makes the save fail half way
    const gone = Tensor.external('gone', DataType.FLOAT, [4], { file: path.join(dir, 'no-such.data'), offset: 0, length: 16 }, readExternalBytes);
    const v = m.graph.addInitializer(gone);
    m.graph.addNode('Identity', [v], ['gone_out']);
    m.graph.outputs.push(m.graph.value('gone_out')!);
    const file = path.join(dir, 'half.onnx');
    expect(() => saveModel(m, file)).toThrow(/no-such\.data cannot be opened/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('half'))).toEqual([]);
  });
});

describe('string attributes survive', () => {
  it('keeps string and ints attributes exactly', () => {
    const g = new Graph('g');
    const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 4] });
    const n = g.addNode('Gelu', [x], ['y'], { attributes: { approximate: stringAttr('tanh') } });
    n.attributes.set('big', { type: 'ints', value: [9223372036854775807, -9223372036854775808, 5] });
    g.outputs.push(n.output(0));
    const m = new Model(g);
    const back = modelFromBytes(require_bytes(m));
    const a = back.graph.nodes[0]!.attributes;
    expect(new TextDecoder().decode((a.get('approximate') as { value: Uint8Array }).value)).toBe('tanh');
    expect((a.get('big') as { value: number[] }).value).toEqual([9223372036854775807, -9223372036854775808, 5]);
  });
});

import { modelToBytes } from '../../src/onnx/save.js';
function require_bytes(m: Model): Uint8Array {
  return modelToBytes(m);
}

describe('models too large for one protobuf message', () => {
  it("'auto' moves weights to external data past the inline limit, and refuses an inline save", async () => {
    const m = modelWithEveryType();
    const big = m.graph.addInitializer(Tensor.from('big', DataType.FLOAT, [1024], Array.from({ length: 1024 }, (_, i) => i)));
    const sum = m.graph.addNode('ReduceSum', [big], ['big_sum']).output(0);
    m.graph.outputs.push(sum);
    const file = path.join(dir, 'big.onnx');
    // the real limit is just under 2 GB; a small limit exercises the same code path
    const r = saveModel(m, file, { inlineLimitBytes: 2048 });
    expect(loadModel(file).graph.value('big')!.initializer!.isExternal).toBe(true);
    expect(r.dataPath).toBeDefined();
    const [a, b] = await runBoth(m, loadModel(file), feeds);
    expect(sameOutputs(a, b)).toBe(true);
    expect(() => saveModel(m, path.join(dir, 'big-inline.onnx'), { externalData: false, inlineLimitBytes: 2048 })).toThrow(/exceed protobuf's 2 GB limit; save with external data/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('big-inline'))).toEqual([]);
  });
});
