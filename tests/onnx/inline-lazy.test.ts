import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { loadModel, modelFromBytes, saveModel } from '../../src/onnx/index.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = tempDir();

const values = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (((i + 1) * seed) % 1013) / 1013 - 0.5);

/**
 * An inline model with large weights in every place a tensor can be: initializers, a Constant
 * node's value and an initializer of an If branch; and small ones beside them.
 */
function inlineModel(large: number): Model {
  const g = new Graph('g');
  const x = g.addInput('x', { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 512] });
  const c = g.addInput('cond', { kind: 'tensor', dtype: DataType.BOOL, shape: [] });
  let h = x;
  for (let i = 0; i < large; i++) {
    const w = g.addInitializer(Tensor.from(`w${i}`, DataType.FLOAT, [512, 512], values(512 * 512, 7 + i)));
    const b = g.addInitializer(Tensor.from(`b${i}`, DataType.FLOAT, [512], values(512, 3 + i)));
    h = g.addNode('Add', [g.addNode('MatMul', [h, w], 1).output(0), b], [`h${i}`]).output(0);
  }
  const k = g.addNode('Constant', [], ['k'], { attributes: { value: { type: 'tensor', value: Tensor.from('k', DataType.FLOAT, [512, 512], values(512 * 512, 11)) } } }).output(0);
  const branch = new Graph('then');
  branch.parent = g;
  const bw = branch.addInitializer(Tensor.from('bw', DataType.FLOAT, [512, 512], values(512 * 512, 13)));
  const bo = branch.addNode('MatMul', [h, bw], ['then_out']).output(0);
  bo.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 512] };
  branch.outputs.push(bo);
  const other = new Graph('else');
  other.parent = g;
  const eo = other.addNode('MatMul', [h, k], ['else_out']).output(0);
  eo.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: [1, 512] };
  other.outputs.push(eo);
  g.outputs.push(g.addNode('If', [c], ['y'], { attributes: { then_branch: { type: 'graph', value: branch }, else_branch: { type: 'graph', value: other } } }).output(0));
  const m = new Model(g);
  m.opsetImports = new Map([['', 17]]);
  return m;
}

/** Every constant tensor (initializers and tensor attributes, subgraphs too) by name. */
function tensorsOf(g: Graph, out = new Map<string, Tensor>()): Map<string, Tensor> {
  for (const v of g.initializers) out.set(v.name, v.initializer!);
  for (const n of g.nodes) {
    for (const a of n.attributes.values()) if (a.type === 'tensor') out.set(a.value.name, a.value);
    for (const sub of n.subgraphs()) tensorsOf(sub, out);
  }
  return out;
}

describe('an inline model is read without holding its file', () => {
  it('large tensors everywhere are left in the file, read from it at use, equal to a full parse', () => {
    const file = path.join(dir, 'inline.onnx');
    saveModel(inlineModel(2), file);
    const lazy = tensorsOf(loadModel(file).graph);
    const whole = tensorsOf(modelFromBytes(fs.readFileSync(file), file).graph);
    expect([...lazy.keys()].sort()).toEqual([...whole.keys()].sort());
    for (const name of ['w0', 'w1', 'k', 'bw']) {
      expect(lazy.get(name)!.isExternal, name).toBe(true);
      expect(lazy.get(name)!.external!.file).toBe(path.resolve(file));
    }
    for (const [name, t] of lazy) {
      expect(t.dims, name).toEqual(whole.get(name)!.dims);
      expect(Buffer.from(t.bytes).equals(Buffer.from(whole.get(name)!.bytes)), name).toBe(true);
    }
    expect(lazy.get('b0')!.isExternal).toBe(false);
  });

  it('loading a 64 MiB inline model raises the peak resident memory by far less than the file', () => {
    const file = path.join(dir, 'big.onnx');
    saveModel(inlineModel(64), file);
    expect(fs.statSync(file).size).toBeGreaterThan(64 * 2 ** 20);
    // a fresh process: its peak (VmHWM) after loading, against its peak before
    const code = `
      import * as fs from 'node:fs';
      const { loadModel } = await import(${JSON.stringify(path.join(ROOT, 'dist/src/onnx/index.js'))});
      const peak = () => Number(/VmHWM:\\s+(\\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      const before = peak();
      const m = loadModel(${JSON.stringify(file)});
      process.stdout.write(JSON.stringify({ grew: peak() - before, tensors: m.graph.initializers.length }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { grew, tensors } = JSON.parse(r.stdout) as { grew: number; tensors: number };
    expect(tensors).toBe(128);
    // read whole, the file alone would be 64 MiB more
    expect(grew).toBeLessThan(16 * 2 ** 20);
  });

  it('a weight read after the file changed fails with a sentence naming the file', () => {
    const file = path.join(dir, 'changed.onnx');
    saveModel(inlineModel(1), file);
    const m = loadModel(file);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 100] ^= 0xff;
    fs.writeFileSync(file, bytes);
    expect(() => m.graph.value('w0')!.initializer!.bytes).toThrow(/changed\.onnx changed after the model was loaded/);
  });

  it('saved over its own file, the model still reads its weights (from where they are now)', () => {
    const file = path.join(dir, 'self.onnx');
    saveModel(inlineModel(2), file);
    const m = loadModel(file);
    // renamed tensors move in the file: the old offsets would read other bytes
    m.graph.value('b0')!.initializer!.docString = 'a longer header moves every tensor after it';
    saveModel(m, file);
    const w1 = m.graph.value('w1')!.initializer!;
    expect(w1.isExternal).toBe(true);
    const expected = Buffer.from(values(512 * 512, 8).buffer);
    expect(Buffer.from(w1.bytes).equals(expected)).toBe(true);
    expect(Buffer.from(loadModel(file).graph.value('w1')!.initializer!.bytes).equals(expected)).toBe(true);
  });

  it('a truncated file is refused with one sentence naming it', () => {
    const file = path.join(dir, 'cut.onnx');
    saveModel(inlineModel(2), file);
    const bytes = fs.readFileSync(file);
    const cut = path.join(dir, 'cut-short.onnx');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 1000));
    expect(() => loadModel(cut)).toThrow(/cut-short\.onnx is not a valid ONNX model \(truncated or corrupt/);
  });
});
