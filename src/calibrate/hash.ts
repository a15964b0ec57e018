import { createHash, type Hash } from 'node:crypto';
import type { Attribute } from '../ir/attribute.js';
import type { Dataset } from '../data/dataset.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Tensor } from '../ir/tensor.js';
import type { ValueType } from '../ir/value.js';

/** A sha256 fed with length-prefixed fields, so no two different inputs frame the same bytes. */
class Digest {
  private readonly h: Hash = createHash('sha256');
  str(s: string): this {
    return this.bytes(Buffer.from(s, 'utf8'));
  }
  num(n: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(n);
    this.h.update(b);
    return this;
  }
  bytes(b: Uint8Array): this {
    this.num(b.byteLength);
    this.h.update(b);
    return this;
  }
  hex(): string {
    return this.h.digest('hex');
  }
}

/**
 * Hash of what a model computes: opsets, graph structure (nodes in order, with attributes),
 * input types, and every weight's bytes. Weights kept in external files are read for the
 * hash and not kept in memory. File names, doc strings and metadata are left out.
 */
export function hashModel(model: Model): string {
  const d = new Digest();
  d.str('model');
  for (const [domain, version] of [...model.opsetImports].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) d.str(domain).num(version);
  for (const f of model.functions) d.str(f.domain).str(f.name).bytes(f.bytes);
  hashGraph(d, model.graph);
  return d.hex();
}

function hashGraph(d: Digest, g: Graph): void {
  d.str('graph').num(g.inputs.length);
  for (const v of g.inputs) d.str(v.name).str(typeKey(v.type));
  d.num(g.outputs.length);
  for (const v of g.outputs) d.str(v.name);
  d.num(g.initializers.length);
  for (const v of g.initializers) {
    d.str(v.name);
    if (v.initializer) hashTensor(d, v.initializer);
    else if (v.sparseInitializer) d.str('sparse').bytes(v.sparseInitializer);
  }
  d.num(g.nodes.length);
  for (const n of g.nodes) {
    d.str(n.opType).str(n.domain).str(n.overload).num(n.inputs.length);
    for (const v of n.inputs) d.str(v?.name ?? '');
    d.num(n.outputs.length);
    for (const v of n.outputs) d.str(v.name);
    const keys = [...n.attributes.keys()].sort();
    d.num(keys.length);
    for (const k of keys) hashAttribute(d.str(k), n.attributes.get(k)!);
  }
}

function hashAttribute(d: Digest, a: Attribute): void {
  d.str(a.type).str(a.refAttrName ?? '');
  switch (a.type) {
    case 'float':
    case 'int':
      d.num(a.value);
      return;
    case 'floats':
    case 'ints':
      d.num(a.value.length);
      for (const x of a.value) d.num(x);
      return;
    case 'string':
    case 'opaque':
      d.bytes(a.value);
      return;
    case 'strings':
      d.num(a.value.length);
      for (const s of a.value) d.bytes(s);
      return;
    case 'tensor':
      hashTensor(d, a.value);
      return;
    case 'tensors':
      d.num(a.value.length);
      for (const t of a.value) hashTensor(d, t);
      return;
    case 'graph':
      hashGraph(d, a.value);
      return;
    case 'graphs':
      d.num(a.value.length);
      for (const g of a.value) hashGraph(d, g);
      return;
  }
}

function hashTensor(d: Digest, t: Tensor): void {
  d.num(t.dtype).num(t.dims.length);
  for (const x of t.dims) d.num(x);
  if (t.dtype === 8 /* STRING */) {
    d.num(t.stringData.length);
    for (const s of t.stringData) d.bytes(s);
  } else {
    d.bytes(t.isExternal ? t.readBytesUncached() : t.bytes);
  }
}

function typeKey(t: ValueType | undefined): string {
  if (!t) return '';
  if (t.kind === 'opaque') return `opaque:${Buffer.from(t.bytes).toString('hex')}`;
  return `${t.dtype}:${t.shape ? t.shape.map((x) => String(x)).join(',') : '*'}`;
}

/**
 * Hash of a dataset's content: every sample's input tensors (names, types, shapes, bytes) in
 * order. Labels and expected outputs do not change calibration, so they are left out; neither
 * does the file layout (a folder and an .npz holding the same arrays hash alike).
 */
export function hashDataset(dataset: Dataset): string {
  const d = new Digest();
  d.str('dataset').num(dataset.size);
  for (let i = 0; i < dataset.size; i++) {
    const s = dataset.read(i);
    d.num(s.inputs.length);
    for (const a of s.inputs) {
      d.str(a.name).num(a.dtype).num(a.dims.length);
      for (const x of a.dims) d.num(x);
      d.bytes(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength));
    }
  }
  return d.hex();
}

/** sha256 of a string, hex. */
export function hashText(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
