// Builds transformer graphs with the IR the way torch.onnx.export (torch 1.13) writes them:
// the same op sequences, operand orders, Constant nodes and node names ("/blocks.0/attn/query/MatMul").
import type { Attribute } from '../../src/ir/attribute.js';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import { Graph } from '../../src/ir/graph.js';
import { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import { Random as Rng } from '../../src/autodiff/random.js';
import type { FixtureArchitecture } from './fixtures.js';
import type { Value } from '../../src/ir/value.js';

export interface TransformerOptions {
  /** 17 and up write LayerNormalization; 18 moves ReduceMean's axes to an input. */
  opset?: 13 | 14 | 17 | 18;
  placement?: 'pre' | 'post';
  blocks?: number;
  hidden?: number;
  heads?: number;
  mlpWidth?: number;
  seq?: number;
  activation?: 'gelu' | 'gelu_tanh' | 'relu' | 'silu' | 'swiglu';
  mask?: 'none' | 'additive-input' | 'causal-where' | 'causal-add';
  /** 'dynamic': reshape targets built from Shape -> Gather -> Unsqueeze -> Concat (dynamic batch). */
  shapes?: 'dynamic' | 'constant';
  /** 'gemm': the stream is kept 2-D [batch * seq, hidden] and linears are Gemm (transB=1). */
  linear?: 'matmul' | 'gemm';
  norm?: 'layernorm' | 'rmsnorm';
  /** Default: fused LayerNormalization from opset 17, decomposed below (rmsnorm: decomposed). */
  normForm?: 'fused' | 'decomposed';
  /** Where 1/sqrt(headSize) is applied: on the scores, on q, or D^-1/4 on both q and k. */
  scale?: 'div-scores' | 'mul-q' | 'mul-qk';
  /** k^T as one Transpose [0,2,3,1], or [0,2,1,3] followed by [0,1,3,2]. */
  kTranspose?: 'single' | 'double';
  /** Rotary position embedding on q and k (LLaMA's x * cos + rotate_half(x) * sin); k^T is then 'double'. */
  rotary?: boolean;
  seed?: number;
}

export interface BuiltTransformer {
  model: Model;
  options: Required<TransformerOptions>;
  /** Random inputs for a batch (an attention_mask with padding at the end when it has one). */
  feeds(batch: number): Record<string, ArrayTensor>;
}

/** What discovery should report for a built model (the fixtures' "architecture" plus norm facts). */
export function expectedArchitecture(o: Required<TransformerOptions>): Omit<FixtureArchitecture, 'opset'> & {
  normKind: 'layernorm' | 'rmsnorm';
  normForm: 'fused' | 'decomposed';
} {
  return {
    blocks: o.blocks,
    heads: o.heads,
    headSize: o.hidden / o.heads,
    hidden: o.hidden,
    mlpWidth: o.mlpWidth,
    activation: o.activation,
    norm: o.placement === 'pre' ? 'pre-ln' : 'post-ln',
    normKind: o.norm,
    normForm: o.normForm,
  };
}

export function withDefaults(options: TransformerOptions = {}): Required<TransformerOptions> {
  const opset = options.opset ?? 17;
  const norm = options.norm ?? 'layernorm';
  return {
    opset,
    placement: options.placement ?? 'pre',
    blocks: options.blocks ?? 2,
    hidden: options.hidden ?? 32,
    heads: options.heads ?? 4,
    mlpWidth: options.mlpWidth ?? 64,
    seq: options.seq ?? 8,
    activation: options.activation ?? 'gelu',
    mask: options.mask ?? 'none',
    shapes: options.shapes ?? 'dynamic',
    linear: options.linear ?? 'matmul',
    norm,
    normForm: options.normForm ?? (norm === 'layernorm' && opset >= 17 ? 'fused' : 'decomposed'),
    scale: options.scale ?? 'div-scores',
    kTranspose: options.rotary ? 'double' : (options.kTranspose ?? 'single'),
    rotary: options.rotary ?? false,
    seed: options.seed ?? 1,
  };
}

export function buildTransformer(options: TransformerOptions = {}): BuiltTransformer {
  const o = withDefaults(options);
  if (o.hidden % o.heads !== 0) throw new Error(`hidden ${o.hidden} is not a multiple of heads ${o.heads}`);
  const b = new TorchStyleBuilder(o);
  const model = b.build();
  const feeds = (batch: number): Record<string, ArrayTensor> => {
    const rng = new Rng(o.seed + 1000);
    const x = Float32Array.from({ length: batch * o.seq * o.hidden }, () => rng.normal());
    const out: Record<string, ArrayTensor> = { x: { dtype: DataType.FLOAT, dims: [batch, o.seq, o.hidden], data: x } };
    if (o.mask === 'additive-input') {
      const m = new BigInt64Array(batch * o.seq);
      for (let i = 0; i < batch; i++) for (let j = 0; j < o.seq; j++) m[i * o.seq + j] = j < o.seq - i ? 1n : 0n;
      out.attention_mask = { dtype: DataType.INT64, dims: [batch, o.seq], data: m };
    }
    return out;
  };
  return { model, options: o, feeds };
}

/** Seeded PRNG (mulberry32) with normal samples by Box-Muller; the one autodiff uses. */
export { Rng };

/** Writes nodes into a graph named the way torch names them ("/blocks.0/attn/MatMul_1"). */
export class GraphWriter {
  readonly g: Graph;
  readonly rng: Rng;
  private readonly used = new Map<string, number>();

  constructor(seed = 1, graph = new Graph('main_graph')) {
    this.g = graph;
    this.rng = new Rng(seed);
  }

  /** Adds a node and returns its output. */
  op(scope: string, opType: string, inputs: (Value | undefined)[], attributes: Record<string, Attribute> = {}, domain = ''): Value {
    const base = `${scope}/${opType}`;
    const k = this.used.get(base) ?? 0;
    this.used.set(base, k + 1);
    const name = k === 0 ? base : `${base}_${k}`;
    return this.g.addNode(opType, inputs, [`${name}_output_0`], { name, attributes, domain }).output(0);
  }

  constant(scope: string, t: Tensor): Value {
    return this.op(scope, 'Constant', [], { value: { type: 'tensor', value: t } });
  }

  scalar(scope: string, v: number): Value {
    return this.constant(scope, Tensor.from('value', DataType.FLOAT, [], [v]));
  }

  ints(scope: string, v: number[]): Value {
    return this.constant(scope, Tensor.from('value', DataType.INT64, [v.length], v));
  }

  /** An int64 scalar Constant. */
  int(scope: string, v: number): Value {
    return this.constant(scope, Tensor.from('value', DataType.INT64, [], [v]));
  }

  /** x.size(axis) as torch writes it: Gather(Shape(x), axis). */
  size(scope: string, x: Value, axis: number): Value {
    return this.op(scope, 'Gather', [this.op(scope, 'Shape', [x]), this.int(scope, axis)], { axis: { type: 'int', value: 0 } });
  }

  transpose(scope: string, t: Value, perm: number[]): Value {
    return this.op(scope, 'Transpose', [t], { perm: { type: 'ints', value: perm } });
  }

  initializer(name: string, dims: number[], values?: number[]): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    return this.g.addInitializer(Tensor.from(name, DataType.FLOAT, dims, values ?? this.random(n, 0.1)));
  }

  random(n: number, std: number, mean = 0): number[] {
    return Array.from({ length: n }, () => mean + std * this.rng.normal());
  }

  input(name: string, shape: (number | string)[], dtype = DataType.FLOAT): Value {
    return this.g.addInput(name, { kind: 'tensor', dtype, shape });
  }

  /** Marks `v` as a graph output named `name` (through an Identity) and returns the model. */
  finish(v: Value, shape: (number | string)[], opset = 17, name = 'y'): Model {
    const y = this.g.addNode('Identity', [v], [name], { name: '/Identity' }).output(0);
    y.type = { kind: 'tensor', dtype: DataType.FLOAT, shape };
    this.g.outputs.push(y);
    const model = new Model(this.g);
    model.opsetImports = new Map([['', opset]]);
    return model;
  }
}

class TorchStyleBuilder extends GraphWriter {
  private weightCounter = 100;
  private x!: Value;
  private extendedMask: Value | undefined;

  constructor(private readonly o: Required<TransformerOptions>) {
    super(o.seed);
  }

  build(): Model {
    const o = this.o;
    this.x = this.input('x', ['batch', o.seq, o.hidden]);
    if (o.mask === 'additive-input') this.extendedMask = this.additiveMask(this.input('attention_mask', ['batch', o.seq], DataType.INT64));
    let stream = o.linear === 'gemm' ? this.op('', 'Reshape', [this.x, this.ints('', [-1, o.hidden])]) : this.x;
    for (let i = 0; i < o.blocks; i++) {
      const s = `/blocks.${i}`;
      if (o.placement === 'pre') {
        stream = this.op(s, 'Add', [stream, this.attention(`${s}/attn`, this.norm(`${s}/ln1`, stream))]);
        stream = this.op(s, 'Add', [stream, this.mlp(`${s}/mlp`, this.norm(`${s}/ln2`, stream))]);
      } else {
        stream = this.norm(`${s}/ln1`, this.op(s, 'Add', [stream, this.attention(`${s}/attn`, stream)]));
        stream = this.norm(`${s}/ln2`, this.op(s, 'Add', [stream, this.mlp(`${s}/mlp`, stream)]));
      }
    }
    if (o.placement === 'pre') stream = this.norm('/ln_f', stream);
    if (o.linear === 'gemm') stream = this.op('', 'Reshape', [stream, this.ints('', [-1, o.seq, o.hidden])]);
    const model = this.finish(stream, ['batch', o.seq, o.hidden], o.opset);
    model.producerName = 'pytorch';
    model.producerVersion = '1.13.0';
    return model;
  }

  /** nn.Linear: MatMul(x, W[in,out]) then Add(bias, .) as torch writes it, or Gemm(transB=1). */
  linear(scope: string, x: Value, inF: number, outF: number): Value {
    const dotted = scope.slice(1).replace(/\//g, '.');
    const std = 1 / Math.sqrt(inF);
    const bias = this.initializer(`${dotted}.bias`, [outF], this.random(outF, 0.02));
    if (this.o.linear === 'gemm') {
      const w = this.initializer(`${dotted}.weight`, [outF, inF], this.random(inF * outF, std));
      return this.op(scope, 'Gemm', [x, w, bias], { alpha: { type: 'float', value: 1 }, beta: { type: 'float', value: 1 }, transB: { type: 'int', value: 1 } });
    }
    const w = this.initializer(`onnx::MatMul_${this.weightCounter++}`, [inF, outF], this.random(inF * outF, std));
    return this.op(scope, 'Add', [bias, this.op(scope, 'MatMul', [x, w])]);
  }

  norm(scope: string, x: Value): Value {
    const { hidden: h, norm, normForm, opset } = this.o;
    const dotted = scope.slice(1).replace(/\//g, '.');
    const w = this.initializer(`${dotted}.weight`, [h], this.random(h, 0.1, 1));
    const eps = 1e-5;
    if (norm === 'rmsnorm') {
      if (normForm === 'fused') return this.op(scope, 'SimplifiedLayerNormalization', [x, w], { axis: { type: 'int', value: -1 }, epsilon: { type: 'float', value: eps } });
      const variance = this.reduceMean(scope, this.op(scope, 'Pow', [x, this.scalar(scope, 2)]));
      const root = this.op(scope, 'Sqrt', [this.op(scope, 'Add', [variance, this.scalar(scope, eps)])]);
      const inv = this.op(scope, 'Div', [this.scalar(scope, 1), root]);
      return this.op(scope, 'Mul', [w, this.op(scope, 'Mul', [x, inv])]);
    }
    const b = this.initializer(`${dotted}.bias`, [h], this.random(h, 0.02));
    if (normForm === 'fused') {
      if (opset < 17) throw new Error('LayerNormalization needs opset 17');
      return this.op(scope, 'LayerNormalization', [x, w, b], { axis: { type: 'int', value: -1 }, epsilon: { type: 'float', value: eps } });
    }
    const d = this.op(scope, 'Sub', [x, this.reduceMean(scope, x)]);
    const variance = this.reduceMean(scope, this.op(scope, 'Pow', [d, this.scalar(scope, 2)]));
    const root = this.op(scope, 'Sqrt', [this.op(scope, 'Add', [variance, this.scalar(scope, eps)])]);
    return this.op(scope, 'Add', [this.op(scope, 'Mul', [this.op(scope, 'Div', [d, root]), w]), b]);
  }

  private reduceMean(scope: string, x: Value): Value {
    if (this.o.opset >= 18) return this.op(scope, 'ReduceMean', [x, this.ints(scope, [-1])]);
    return this.op(scope, 'ReduceMean', [x], { axes: { type: 'ints', value: [-1] } });
  }

  /** BERT's extended mask: (1 - mask[:, None, None, :].float()) * -10000, computed once. */
  private additiveMask(m: Value): Value {
    const u = this.op('', 'Unsqueeze', [this.op('', 'Unsqueeze', [m, this.ints('', [1])]), this.ints('', [2])]);
    const f = this.op('', 'Cast', [u], { to: { type: 'int', value: DataType.FLOAT } });
    return this.op('', 'Mul', [this.op('', 'Sub', [this.scalar('', 1), f]), this.scalar('', -10000)]);
  }

  /** The [batch, seq] part of a reshape target: dynamic (from Shape) or constant 0, 0 / -1, seq. */
  private leadingDims(scope: string, t: Value, constant: number[]): Value[] {
    if (this.o.shapes === 'constant') return [this.ints(scope, constant)];
    const src = this.o.linear === 'gemm' ? this.x : t; // a 2-D stream has no seq axis to read
    return [0, 1].map((i) => this.op(scope, 'Unsqueeze', [this.size(scope, src, i), this.ints(scope, [0])]));
  }

  private splitHeads(scope: string, t: Value): Value {
    const { heads, hidden, linear, seq } = this.o;
    const lead = this.leadingDims(scope, t, linear === 'gemm' ? [-1, seq] : [0, 0]);
    const shape = this.op(scope, 'Concat', [...lead, this.ints(scope, [heads]), this.ints(scope, [hidden / heads])], { axis: { type: 'int', value: 0 } });
    return this.op(scope, 'Reshape', [t, shape]);
  }

  attention(scope: string, x: Value): Value {
    const { hidden, heads, seq, scale, mask, kTranspose, linear } = this.o;
    const headSize = hidden / heads;
    let q = this.transpose(scope, this.splitHeads(scope, this.linear(`${scope}/query`, x, hidden, hidden)), [0, 2, 1, 3]);
    const kr = this.splitHeads(scope, this.linear(`${scope}/key`, x, hidden, hidden));
    const v = this.transpose(scope, this.splitHeads(scope, this.linear(`${scope}/value`, x, hidden, hidden)), [0, 2, 1, 3]);
    let k: Value;
    if (kTranspose === 'single') {
      k = this.transpose(scope, kr, [0, 2, 3, 1]);
    } else {
      let kh = this.transpose(scope, kr, [0, 2, 1, 3]);
      if (this.o.rotary) {
        q = this.rotary(scope, q);
        kh = this.rotary(scope, kh);
      }
      k = this.transpose(scope, kh, [0, 1, 3, 2]);
    }
    if (scale === 'mul-q') q = this.op(scope, 'Mul', [q, this.scalar(scope, 1 / Math.sqrt(headSize))]);
    if (scale === 'mul-qk') {
      q = this.op(scope, 'Mul', [q, this.scalar(scope, headSize ** -0.25)]);
      k = this.op(scope, 'Mul', [k, this.scalar(scope, headSize ** -0.25)]);
    }
    let scores = this.op(scope, 'MatMul', [q, k]);
    if (scale === 'div-scores') scores = this.op(scope, 'Div', [scores, this.scalar(scope, Math.sqrt(headSize))]);
    if (mask === 'additive-input') scores = this.op(scope, 'Add', [scores, this.extendedMask!]);
    if (mask === 'causal-where' || mask === 'causal-add') {
      const tril = Array.from({ length: seq * seq }, (_, i) => (i % seq <= Math.floor(i / seq) ? 1 : 0));
      if (mask === 'causal-where') {
        const cond = this.constant(scope, Tensor.from('value', DataType.BOOL, [1, 1, seq, seq], tril));
        scores = this.op(scope, 'Where', [cond, scores, this.scalar(scope, -10000)]);
      } else {
        const bias = this.constant(scope, Tensor.from('value', DataType.FLOAT, [1, 1, seq, seq], tril.map((t) => (t ? 0 : -10000))));
        scores = this.op(scope, 'Add', [scores, bias]);
      }
    }
    const probs = this.op(scope, 'Softmax', [scores], { axis: { type: 'int', value: -1 } });
    const ctx = this.transpose(scope, this.op(scope, 'MatMul', [probs, v]), [0, 2, 1, 3]);
    const lead = linear === 'gemm' ? [this.ints(scope, [-1])] : this.leadingDims(scope, ctx, [0, 0]);
    const shape = this.op(scope, 'Concat', [...lead, this.ints(scope, [hidden])], { axis: { type: 'int', value: 0 } });
    return this.linear(`${scope}/out`, this.op(scope, 'Reshape', [ctx, shape]), hidden, hidden);
  }

  /** x * cos + rotate_half(x) * sin over [batch, heads, seq, headSize], as HF LLaMA writes it. */
  private rotary(scope: string, x: Value): Value {
    const { seq, hidden, heads } = this.o;
    const d = hidden / heads;
    const angle = (i: number, j: number) => i / 10000 ** ((2 * (j % (d / 2))) / d);
    const table = (f: (a: number) => number) =>
      this.constant(scope, Tensor.from('value', DataType.FLOAT, [1, 1, seq, d], Array.from({ length: seq * d }, (_, n) => f(angle(Math.floor(n / d), n % d)))));
    const slice = (from: number, to: number) => this.op(scope, 'Slice', [x, this.ints(scope, [from]), this.ints(scope, [to]), this.ints(scope, [-1])]);
    const half = this.op(scope, 'Concat', [this.op(scope, 'Neg', [slice(d / 2, d)]), slice(0, d / 2)], { axis: { type: 'int', value: -1 } });
    return this.op(scope, 'Add', [this.op(scope, 'Mul', [x, table(Math.cos)]), this.op(scope, 'Mul', [half, table(Math.sin)])]);
  }

  mlp(scope: string, x: Value): Value {
    const { hidden, mlpWidth: w, activation } = this.o;
    const a = `${scope}/act`;
    if (activation === 'swiglu') {
      const gate = this.linear(`${scope}/gate_proj`, x, hidden, w);
      const up = this.linear(`${scope}/up_proj`, x, hidden, w);
      const silu = this.op(a, 'Mul', [gate, this.op(a, 'Sigmoid', [gate])]);
      return this.linear(`${scope}/down_proj`, this.op(scope, 'Mul', [silu, up]), w, hidden);
    }
    const h = this.linear(`${scope}/fc1`, x, hidden, w);
    let y: Value;
    if (activation === 'gelu') {
      const erf = this.op(a, 'Erf', [this.op(a, 'Div', [h, this.scalar(a, Math.SQRT2)])]);
      y = this.op(a, 'Mul', [this.op(a, 'Mul', [h, this.op(a, 'Add', [erf, this.scalar(a, 1)])]), this.scalar(a, 0.5)]);
    } else if (activation === 'gelu_tanh') {
      const cube = this.op(a, 'Mul', [h, this.op(a, 'Mul', [h, h])]);
      const inner = this.op(a, 'Add', [h, this.op(a, 'Mul', [this.scalar(a, 0.044715), cube])]);
      const t = this.op(a, 'Tanh', [this.op(a, 'Mul', [this.scalar(a, Math.sqrt(2 / Math.PI)), inner])]);
      y = this.op(a, 'Mul', [this.scalar(a, 0.5), this.op(a, 'Mul', [h, this.op(a, 'Add', [this.scalar(a, 1), t])])]);
    } else if (activation === 'relu') {
      y = this.op(a, 'Relu', [h]);
    } else {
      y = this.op(a, 'Mul', [h, this.op(a, 'Sigmoid', [h])]);
    }
    return this.linear(`${scope}/fc2`, y, w, hidden);
  }
}
