// Builds a Llama-style decoder language model the way Hugging Face's LlamaForCausalLM reaches
// ONNX through torch.onnx.export / Optimum: token embedding (Gather over input_ids), RMSNorm,
// rotary embeddings computed from position_ids, grouped-query attention (k and v projected to
// fewer heads and repeated to the query heads by repeat_kv: Unsqueeze -> Expand -> Reshape), a
// causal mask over past + new tokens combined with attention_mask, SwiGLU MLP, no biases, and the
// LM head (MatMul to logits). With `kvCache` it has the Optimum / transformers.js cache
// signature: past_key_values.N.key/value [batch, kv heads, past, head size] inputs (past length
// 0 allowed) and present.N.key/value outputs (the past concatenated with the new, rotated keys).
//
// Weights are drawn in the same order whatever the options besides the dimensions and the seed,
// so the cache and no-cache builds of one seed hold the same weights.
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { DataType } from '../../src/ir/dtype.js';
import type { Model } from '../../src/ir/model.js';
import { Tensor } from '../../src/ir/tensor.js';
import type { Value } from '../../src/ir/value.js';
import { GraphWriter } from './transformer-builder.js';

export interface LlamaOptions {
  layers?: number;
  hidden?: number;
  heads?: number;
  /** Key/value heads (grouped-query attention when fewer than `heads`); must divide `heads`. */
  kvHeads?: number;
  mlpWidth?: number;
  vocab?: number;
  /** past_key_values.N.key/value inputs and present.N.key/value outputs. */
  kvCache?: boolean;
  ropeTheta?: number;
  opset?: 14 | 17;
  seed?: number;
}

export interface BuiltLlama {
  model: Model;
  options: Required<LlamaOptions>;
  headSize: number;
}

/** TinyLlama-1.1B's dimensions (config.json of TinyLlama/TinyLlama-1.1B-Chat-v1.0). */
export const TINYLLAMA: Required<Pick<LlamaOptions, 'layers' | 'hidden' | 'heads' | 'kvHeads' | 'mlpWidth' | 'vocab'>> = {
  layers: 22,
  hidden: 2048,
  heads: 32,
  kvHeads: 4,
  mlpWidth: 5632,
  vocab: 32000,
};

export function llamaDefaults(o: LlamaOptions = {}): Required<LlamaOptions> {
  return {
    layers: o.layers ?? 2,
    hidden: o.hidden ?? 64,
    heads: o.heads ?? 8,
    kvHeads: o.kvHeads ?? o.heads ?? 8,
    mlpWidth: o.mlpWidth ?? 128,
    vocab: o.vocab ?? 64,
    kvCache: o.kvCache ?? false,
    ropeTheta: o.ropeTheta ?? 10000,
    opset: o.opset ?? 14,
    seed: o.seed ?? 1,
  };
}

/** Parameters of the built model (embedding, LM head, layers, norms). */
export function llamaParameters(o: Required<LlamaOptions>): number {
  const d = o.hidden / o.heads;
  const attn = 2 * o.hidden * o.hidden + 2 * o.hidden * o.kvHeads * d;
  const mlp = 3 * o.hidden * o.mlpWidth;
  return 2 * o.vocab * o.hidden + o.layers * (attn + mlp + 2 * o.hidden) + o.hidden;
}

export function buildLlama(options: LlamaOptions = {}): BuiltLlama {
  const o = llamaDefaults(options);
  if (o.hidden % o.heads !== 0) throw new Error(`hidden ${o.hidden} is not a multiple of heads ${o.heads}`);
  if (o.heads % o.kvHeads !== 0) throw new Error(`heads ${o.heads} is not a multiple of kv heads ${o.kvHeads}`);
  const model = new LlamaWriter(o).build();
  return { model, options: o, headSize: o.hidden / o.heads };
}

/** Token ids [1, n], an all-ones attention mask over past + n, position_ids past..past+n-1. */
export function llamaFeeds(ids: readonly number[], past = 0): Record<string, ArrayTensor> {
  const n = ids.length;
  return {
    input_ids: { dtype: DataType.INT64, dims: [1, n], data: BigInt64Array.from(ids, (v) => BigInt(v)) },
    attention_mask: { dtype: DataType.INT64, dims: [1, past + n], data: new BigInt64Array(past + n).fill(1n) },
    position_ids: { dtype: DataType.INT64, dims: [1, n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(past + i)) },
  };
}

/** Names of the cache inputs and outputs, in the order Optimum writes them. */
export function cacheNames(prefix: 'past_key_values' | 'present', layers: number): string[] {
  return Array.from({ length: layers }, (_, i) => [`${prefix}.${i}.key`, `${prefix}.${i}.value`]).flat();
}

class LlamaWriter extends GraphWriter {
  private weightCounter = 100;
  private readonly d: number;

  constructor(private readonly o: Required<LlamaOptions>) {
    super(o.seed);
    this.d = o.hidden / o.heads;
  }

  build(): Model {
    const o = this.o;
    const ids = this.input('input_ids', ['batch_size', 'sequence_length'], DataType.INT64);
    const mask = this.input('attention_mask', ['batch_size', 'total_sequence_length'], DataType.INT64);
    const positions = this.input('position_ids', ['batch_size', 'sequence_length'], DataType.INT64);
    const past = o.kvCache ? cacheNames('past_key_values', o.layers).map((n) => this.input(n, ['batch_size', o.kvHeads, 'past_sequence_length', this.d])) : [];
    const table = this.weight('model.embed_tokens.weight', [o.vocab, o.hidden], 1);
    let h = this.op('/model/embed_tokens', 'Gather', [table, ids]);
    const allowed = this.causalMask(ids, mask);
    const [cos, sin] = this.rotaryTables(positions);
    const presents: Value[] = [];
    for (let i = 0; i < o.layers; i++) {
      const s = `/model/layers.${i}`;
      const attn = this.attention(`${s}/self_attn`, this.rmsNorm(`${s}/input_layernorm`, h), cos, sin, allowed, past.slice(2 * i, 2 * i + 2), i);
      presents.push(...attn.present);
      h = this.op(s, 'Add', [h, attn.out]);
      h = this.op(s, 'Add', [h, this.mlp(`${s}/mlp`, this.rmsNorm(`${s}/post_attention_layernorm`, h))]);
    }
    const logits = this.op('/lm_head', 'MatMul', [this.rmsNorm('/model/norm', h), this.weight(`onnx::MatMul_${this.weightCounter++}`, [o.hidden, o.vocab], 1 / Math.sqrt(o.hidden))]);
    const model = this.finish(logits, ['batch_size', 'sequence_length', o.vocab], o.opset, 'logits');
    for (const p of presents) this.g.outputs.push(p);
    model.producerName = 'pytorch';
    model.producerVersion = '1.13.0';
    return model;
  }

  /** Random float32 weights written straight to bytes (a 1B model holds too many for number[]). */
  private weight(name: string, dims: number[], std: number): Value {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = std * this.rng.normal();
    return this.g.addInitializer(Tensor.fromBytes(name, DataType.FLOAT, dims, new Uint8Array(data.buffer)));
  }

  private linear(scope: string, x: Value, inF: number, outF: number): Value {
    return this.op(scope, 'MatMul', [x, this.weight(`onnx::MatMul_${this.weightCounter++}`, [inF, outF], 1 / Math.sqrt(inF))]);
  }

  /** LlamaRMSNorm: weight * (x / sqrt(mean(x^2) + eps)), decomposed as torch exports it. */
  private rmsNorm(scope: string, x: Value): Value {
    const h = this.o.hidden;
    const w = this.g.addInitializer(Tensor.from(`${scope.slice(1).replace(/\//g, '.')}.weight`, DataType.FLOAT, [h], this.random(h, 0.1, 1)));
    const variance = this.op(scope, 'ReduceMean', [this.op(scope, 'Pow', [x, this.scalar(scope, 2)])], { axes: { type: 'ints', value: [-1] } });
    const inv = this.op(scope, 'Div', [this.scalar(scope, 1), this.op(scope, 'Sqrt', [this.op(scope, 'Add', [variance, this.scalar(scope, 1e-5)])])]);
    return this.op(scope, 'Mul', [w, this.op(scope, 'Mul', [x, inv])]);
  }

  /**
   * Keep-mask [batch, 1, new, past + new]: key j is seen by query i when j <= past + i and
   * attention_mask[j] is 1 (the 4-D mask of modeling_attn_mask_utils, as a condition).
   */
  private causalMask(ids: Value, mask: Value): Value {
    const s = '/model';
    const total = this.size(s, mask, 1);
    const seq = this.size(s, ids, 1);
    const pastLen = this.op(s, 'Sub', [total, seq]);
    const rows = this.op(s, 'Unsqueeze', [this.op(s, 'Add', [this.op(s, 'Range', [this.int(s, 0), seq, this.int(s, 1)]), pastLen]), this.ints(s, [1])]);
    const cols = this.op(s, 'Range', [this.int(s, 0), total, this.int(s, 1)]);
    const causal = this.op(s, 'LessOrEqual', [cols, rows]);
    const padding = this.op(s, 'Cast', [this.op(s, 'Unsqueeze', [mask, this.ints(s, [1, 2])])], { to: { type: 'int', value: DataType.BOOL } });
    return this.op(s, 'And', [causal, padding]);
  }

  /** cos/sin [batch, 1, seq, headSize] of position_ids * inv_freq, shared by every layer. */
  private rotaryTables(positions: Value): [Value, Value] {
    const s = '/model/rotary_emb';
    const d = this.d;
    const invFreq = Array.from({ length: d / 2 }, (_, j) => 1 / this.o.ropeTheta ** ((2 * j) / d));
    const pos = this.op(s, 'Unsqueeze', [this.op(s, 'Cast', [positions], { to: { type: 'int', value: DataType.FLOAT } }), this.ints(s, [2])]);
    const freqs = this.op(s, 'Mul', [pos, this.constant(s, Tensor.from('value', DataType.FLOAT, [d / 2], invFreq))]);
    const emb = this.op(s, 'Concat', [freqs, freqs], { axis: { type: 'int', value: -1 } });
    return [this.op(s, 'Unsqueeze', [this.op(s, 'Cos', [emb]), this.ints(s, [1])]), this.op(s, 'Unsqueeze', [this.op(s, 'Sin', [emb]), this.ints(s, [1])])];
  }

  /** q * cos + rotate_half(q) * sin over [batch, heads, seq, headSize]. */
  private rotate(scope: string, x: Value, cos: Value, sin: Value): Value {
    const d = this.d;
    const slice = (from: number, to: number) => this.op(scope, 'Slice', [x, this.ints(scope, [from]), this.ints(scope, [to]), this.ints(scope, [-1])]);
    const half = this.op(scope, 'Concat', [this.op(scope, 'Neg', [slice(d / 2, d)]), slice(0, d / 2)], { axis: { type: 'int', value: -1 } });
    return this.op(scope, 'Add', [this.op(scope, 'Mul', [x, cos]), this.op(scope, 'Mul', [half, sin])]);
  }

  /** [batch, seq, heads * d] -> [batch, heads, seq, d]. */
  private heads(scope: string, t: Value, heads: number): Value {
    return this.transpose(scope, this.op(scope, 'Reshape', [t, this.ints(scope, [0, 0, heads, this.d])]), [0, 2, 1, 3]);
  }

  /** repeat_kv: [batch, kv, T, d] -> [batch, kv, rep, T, d] (Expand) -> [batch, kv * rep, T, d]. */
  private repeatKv(scope: string, t: Value): Value {
    const rep = this.o.heads / this.o.kvHeads;
    if (rep === 1) return t;
    const expanded = this.op(scope, 'Expand', [this.op(scope, 'Unsqueeze', [t, this.ints(scope, [2])]), this.ints(scope, [1, 1, rep, 1, 1])]);
    return this.op(scope, 'Reshape', [expanded, this.ints(scope, [0, this.o.heads, -1, this.d])]);
  }

  private attention(scope: string, x: Value, cos: Value, sin: Value, allowed: Value, past: Value[], layer: number): { out: Value; present: Value[] } {
    const { hidden, heads, kvHeads } = this.o;
    const d = this.d;
    const q = this.rotate(scope, this.heads(scope, this.linear(`${scope}/q_proj`, x, hidden, hidden), heads), cos, sin);
    let k = this.rotate(scope, this.heads(scope, this.linear(`${scope}/k_proj`, x, hidden, kvHeads * d), kvHeads), cos, sin);
    let v = this.heads(scope, this.linear(`${scope}/v_proj`, x, hidden, kvHeads * d), kvHeads);
    const present: Value[] = [];
    if (past.length === 2) {
      // the cache holds rotated keys: present = cat(past, new) along the sequence axis
      [k, v] = (['key', 'value'] as const).map((kind, i) => {
        const name = `present.${layer}.${kind}`;
        const out = this.g.addNode('Concat', [past[i]!, i === 0 ? k : v], [name], { name: `${scope}/Concat_${kind}`, attributes: { axis: { type: 'int', value: -2 } } }).output(0);
        out.type = { kind: 'tensor', dtype: DataType.FLOAT, shape: ['batch_size', kvHeads, 'total_sequence_length', d] };
        present.push(out);
        return out;
      }) as [Value, Value];
    }
    const kT = this.transpose(scope, this.repeatKv(scope, k), [0, 1, 3, 2]);
    const scores = this.op(scope, 'Div', [this.op(scope, 'MatMul', [q, kT]), this.scalar(scope, Math.sqrt(d))]);
    const masked = this.op(scope, 'Where', [allowed, scores, this.scalar(scope, -1e4)]);
    const probs = this.op(scope, 'Softmax', [masked], { axis: { type: 'int', value: -1 } });
    const ctx = this.transpose(scope, this.op(scope, 'MatMul', [probs, this.repeatKv(scope, v)]), [0, 2, 1, 3]);
    const merged = this.op(scope, 'Reshape', [ctx, this.ints(scope, [0, 0, hidden])]);
    return { out: this.linear(`${scope}/o_proj`, merged, hidden, hidden), present };
  }

  private mlp(scope: string, x: Value): Value {
    const { hidden, mlpWidth: w } = this.o;
    const gate = this.linear(`${scope}/gate_proj`, x, hidden, w);
    const act = `${scope}/act_fn`;
    const silu = this.op(act, 'Mul', [gate, this.op(act, 'Sigmoid', [gate])]);
    return this.linear(`${scope}/down_proj`, this.op(scope, 'Mul', [silu, this.linear(`${scope}/up_proj`, x, hidden, w)]), w, hidden);
  }
}
