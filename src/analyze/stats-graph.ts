import type { Attribute } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/** Outputs (value names) that summarise one activation tensor per forward pass. */
export interface ActivationStatOutputs {
  /** [B, n]: the shape of the tensor flattened per sample. */
  flatShape: string;
  /** [B] per sample: max |x|, mean, E[(x−μ)²], E[(x−μ)⁴] (population moments). */
  absMax: string;
  mean: string;
  m2: string;
  m4: string;
  /** Scalars over the batch: min, max, Σx². */
  min: string;
  max: string;
  sumSquares: string;
  /** [C]: max |x| per channel of the last axis, over the batch. */
  channelAbsMax: string;
}

/** Outputs that summarise one attention layer's heads per forward pass. */
export interface HeadStatOutputs {
  /** [B, H, Tq, Tk] shape of the probabilities. */
  probsShape: string;
  /** [H]: Σ over batch and queries of the probability on key 0. */
  firstKey: string;
  /** [H, Tk]: Σ over batch and queries of the probability on each key. */
  keyMass: string;
  /** [H]: Σ over batch and queries of the entropy (nats). */
  entropy: string;
  /** [H]: Σ over batch and tokens of ‖context_h‖ and of ‖context_h W_o,h‖ (the update). */
  contextNorm?: string;
  updateNorm?: string;
  /** Scalar: Σ over batch and tokens of ‖residual‖ (the stream the attention adds to). */
  residualNorm?: string;
  /** Scalar count of tokens behind residualNorm. */
  residualShape?: string;
}

export interface HeadRequest {
  key: string;
  /** Query heads: a rank-3 [B·heads, T, ·] probs or context tensor is read as [B, heads, T, ·]. */
  heads: number;
  probs: string;
  context?: string;
  /** o-projection weight as [heads, headSize, hidden]. */
  outWeight?: { data: Float32Array; heads: number; headSize: number; hidden: number };
  residual?: string;
}

/**
 * Adds to a copy of the model the reductions that the analysis needs, as graph outputs, so a
 * forward pass returns a few numbers per tensor instead of the activations (memory stays flat
 * whatever the number of samples, and the arithmetic runs in onnxruntime).
 */
export function withAnalysisOutputs(model: Model, tensors: string[], heads: HeadRequest[], options: { wholeSample?: boolean } = {}): { model: Model; tensors: Map<string, ActivationStatOutputs>; heads: Map<string, HeadStatOutputs> } {
  const m = model.clone();
  const g = m.graph;
  const opset = m.opset;
  const prefix = 'slimformer_analyze';
  const constant = (base: string, dtype: DataType, dims: number[], values: ArrayLike<number>): Value =>
    g.addInitializer(Tensor.from(g.uniqueName(`${prefix}/${base}`), dtype, dims, values));
  const ints = (base: string, values: number[]): Value => constant(base, DataType.INT64, [values.length], values);
  const op = (type: string, inputs: Value[], name: string, attributes: Record<string, Attribute> = {}): Value =>
    g.addNode(type, inputs, [g.uniqueName(`${prefix}/${name}`)], { name: g.uniqueNodeName(`${prefix}/${name}`), attributes }).output(0);
  const reduce = (type: string, x: Value, name: string, axes: number[] | undefined, keepdims = 0): Value => {
    const attributes: Record<string, Attribute> = { keepdims: { type: 'int', value: keepdims } };
    if (!axes) return op(type, [x], name, attributes);
    const asInput = type === 'ReduceSum' ? opset >= 13 : opset >= 18;
    if (asInput) return op(type, [x, ints(`${name}_axes`, axes)], name, attributes);
    return op(type, [x], name, { ...attributes, axes: { type: 'ints', value: axes } });
  };
  const output = (v: Value): string => {
    g.outputs.push(v);
    return v.name;
  };
  // one row per leading index; with wholeSample (one sample per run) one row for the whole
  // tensor, whatever its layout (torch's sequence-first [S, B, D], tokens flattened to [B·S, D])
  const flatTarget = ints('flat_target', options.wholeSample ? [1, -1] : [0, -1]);
  const channelTarget = ints('channel_target', [-1]);
  const tensorOut = new Map<string, ActivationStatOutputs>();
  tensors.forEach((name, i) => {
    const v = g.value(name);
    if (!v) throw new Error(`no tensor '${name}'`);
    const x = op('Cast', [v], `t${i}/float`, { to: { type: 'int', value: DataType.FLOAT } });
    const flat = op('Reshape', [x, flatTarget], `t${i}/flat`);
    const abs = op('Abs', [flat], `t${i}/abs`);
    const mean = reduce('ReduceMean', flat, `t${i}/mean_keep`, [1], 1);
    const d = op('Sub', [flat, mean], `t${i}/centred`);
    const d2 = op('Mul', [d, d], `t${i}/d2`);
    const d4 = op('Mul', [d2, d2], `t${i}/d4`);
    const shape = op('Shape', [x], `t${i}/shape`);
    const last = op('Slice', [shape, ints(`t${i}/last`, [-1]), ints(`t${i}/end`, [Number.MAX_SAFE_INTEGER])], `t${i}/channels`);
    const byChannel = op('Reshape', [op('Abs', [x], `t${i}/abs_all`), op('Concat', [channelTarget, last], `t${i}/ch_target`, { axis: { type: 'int', value: 0 } })], `t${i}/by_channel`);
    tensorOut.set(name, {
      flatShape: output(op('Shape', [flat], `t${i}/flat_shape`)),
      absMax: output(reduce('ReduceMax', abs, `t${i}/abs_max`, [1])),
      mean: output(reduce('ReduceMean', flat, `t${i}/mean`, [1])),
      m2: output(reduce('ReduceMean', d2, `t${i}/m2`, [1])),
      m4: output(reduce('ReduceMean', d4, `t${i}/m4`, [1])),
      min: output(reduce('ReduceMin', flat, `t${i}/min`, undefined)),
      max: output(reduce('ReduceMax', flat, `t${i}/max`, undefined)),
      sumSquares: output(reduce('ReduceSumSquare', flat, `t${i}/sum_squares`, undefined)),
      channelAbsMax: output(reduce('ReduceMax', byChannel, `t${i}/channel_abs_max`, [0])),
    });
  });
  /**
   * [B, H, T, X] from a rank-3 [B·H, T, X] (torch MultiheadAttention's layout, batch-major:
   * row b·H + h); on a rank-4 [B, H, T, X] the Reshape changes nothing.
   */
  const byHead = (x: Value, heads: number, name: string): Value => {
    const last2 = op('Slice', [op('Shape', [x], `${name}/shape`), ints(`${name}/from`, [-2]), ints(`${name}/to`, [Number.MAX_SAFE_INTEGER])], `${name}/last2`);
    const target = op('Concat', [ints(`${name}/lead`, [-1, heads]), last2], `${name}/target`, { axis: { type: 'int', value: 0 } });
    return op('Reshape', [x, target], `${name}/by_head`);
  };
  const headOut = new Map<string, HeadStatOutputs>();
  heads.forEach((h, i) => {
    const pv = g.value(h.probs);
    if (!pv) throw new Error(`no tensor '${h.probs}'`);
    const p = byHead(op('Cast', [pv], `h${i}/float`, { to: { type: 'int', value: DataType.FLOAT } }), h.heads, `h${i}/probs`);
    const first = op('Slice', [p, ints(`h${i}/s0`, [0]), ints(`h${i}/s1`, [1]), ints(`h${i}/sax`, [-1])], `h${i}/first`);
    const eps = constant(`h${i}/eps`, DataType.FLOAT, [], [1e-12]);
    const plogp = op('Mul', [p, op('Log', [op('Add', [p, eps], `h${i}/p_eps`)], `h${i}/logp`)], `h${i}/plogp`);
    const out: HeadStatOutputs = {
      probsShape: output(op('Shape', [p], `h${i}/shape`)),
      firstKey: output(reduce('ReduceSum', first, `h${i}/first_key`, [0, 2, 3])),
      keyMass: output(reduce('ReduceSum', p, `h${i}/key_mass`, [0, 2])),
      entropy: output(op('Neg', [reduce('ReduceSum', plogp, `h${i}/plogp_sum`, [0, 2, 3])], `h${i}/entropy`)),
    };
    if (h.context && h.outWeight) {
      const c = byHead(op('Cast', [g.value(h.context)!], `h${i}/ctx`, { to: { type: 'int', value: DataType.FLOAT } }), h.heads, `h${i}/ctx`);
      const w = constant(`h${i}/wo`, DataType.FLOAT, [h.outWeight.heads, h.outWeight.headSize, h.outWeight.hidden], h.outWeight.data);
      const upd = op('MatMul', [c, w], `h${i}/update`);
      out.contextNorm = output(reduce('ReduceSum', op('Sqrt', [reduce('ReduceSumSquare', c, `h${i}/ctx_sq`, [3])], `h${i}/ctx_norm`), `h${i}/ctx_norm_sum`, [0, 2]));
      out.updateNorm = output(reduce('ReduceSum', op('Sqrt', [reduce('ReduceSumSquare', upd, `h${i}/upd_sq`, [3])], `h${i}/upd_norm`), `h${i}/upd_norm_sum`, [0, 2]));
    }
    if (h.residual) {
      const r = op('Cast', [g.value(h.residual)!], `h${i}/res`, { to: { type: 'int', value: DataType.FLOAT } });
      const norms = op('Sqrt', [reduce('ReduceSumSquare', r, `h${i}/res_sq`, [-1])], `h${i}/res_norm`);
      out.residualNorm = output(reduce('ReduceSum', norms, `h${i}/res_norm_sum`, undefined));
      out.residualShape = output(op('Shape', [norms], `h${i}/res_shape`));
    }
    headOut.set(h.key, out);
  });
  return { model: m, tensors: tensorOut, heads: headOut };
}
