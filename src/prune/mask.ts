// A copy of the model with a mask input that zeroes chosen heads and neurons per batch row, plus
// the scoring outputs (feature distortion, KL of the logits, prediction entropy) computed inside
// the graph, so that many masked variants run in one onnxruntime call.
import { discoverStructure } from '../discover/index.js';
import { SymbolicShapes } from '../discover/infer-shapes.js';
import { symEqual } from '../discover/symbolic.js';
import type { Attention, Structure } from '../discover/structure.js';
import { UserError } from '../errors.js';
import { DataType } from '../ir/dtype.js';
import type { Graph } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/** One prunable unit: a head of an attention or a neuron of an MLP, by block index. */
export interface Unit {
  kind: 'head' | 'neuron';
  block: number;
  index: number;
}

export interface MaskLayout {
  units: Unit[];
  /** Offset of each block's heads / neurons in the mask row. */
  headOffset: Map<number, number>;
  neuronOffset: Map<number, number>;
  /** Head units per block: query heads, or key/value groups under grouped-query attention. */
  heads: Map<number, number>;
  neurons: Map<number, number>;
  /** Query heads per head unit (1, or the group size of grouped-query attention). */
  headsPerUnit: Map<number, number>;
}

export const MASK_INPUT = 'slimformer_prune_mask';

export function maskLayout(structure: Structure): MaskLayout {
  const units: Unit[] = [];
  const headOffset = new Map<number, number>();
  const neuronOffset = new Map<number, number>();
  const heads = new Map<number, number>();
  const neurons = new Map<number, number>();
  const headsPerUnit = new Map<number, number>();
  for (const b of structure.blocks) {
    if (b.attention) {
      headOffset.set(b.index, units.length);
      const n = headUnits(b.attention);
      heads.set(b.index, n);
      headsPerUnit.set(b.index, b.attention.numHeads / n);
      for (let h = 0; h < n; h++) units.push({ kind: 'head', block: b.index, index: h });
    }
    if (b.mlp) {
      neuronOffset.set(b.index, units.length);
      neurons.set(b.index, b.mlp.width);
      for (let k = 0; k < b.mlp.width; k++) units.push({ kind: 'neuron', block: b.index, index: k });
    }
  }
  return { units, headOffset, neuronOffset, heads, neurons, headsPerUnit };
}

/**
 * Head units of an attention: its query heads, or with grouped-query attention its key/value
 * groups (a group's query heads share k and v, so they go together).
 */
export function headUnits(a: Attention): number {
  return a.numKvHeads < a.numHeads ? a.numKvHeads : a.numHeads;
}

export interface ScoringSpec {
  /** Samples per masked variant (the batch rows of one variant are contiguous). */
  samples: number;
  /** Token rows per variant of each block's output feature (samples x tokens). */
  featureRows?: number;
  featureWidth?: number;
  /** Rows of the logits per variant (samples x positions) and the class count. */
  logitRows: number;
  classes: number;
  /** At most this many token rows enter the feature Gram matrices (evenly spaced). */
  gramRows?: number;
  temperature?: number;
}

export interface MaskedModel {
  model: Model;
  layout: MaskLayout;
  structure: Structure;
  /** Output names: per-variant entropy, KL to variant 0, and feature distortion per block. */
  entropy?: string;
  kl?: string;
  distortion: Map<number, string>;
  /** The value of each block's output (the residual stream after the block). */
  blockOutputs: Map<number, string>;
}

/**
 * Adds the input MASK_INPUT, float [rows, units]: batch row r of the data is multiplied, head by
 * head and neuron by neuron, with mask row r (1 keeps, 0 removes). Heads are masked on the merged
 * context that enters the output projection, neurons on the input of fc2, which is exactly what
 * removing them does. With `scoring`, outputs are added that compare every variant (a group of
 * `samples` consecutive rows) with variant 0.
 */
export function buildMaskedModel(source: Model, scoring?: ScoringSpec): MaskedModel {
  const model = source.clone();
  const g = model.graph;
  const structure = discoverStructure(model);
  if (structure.blocks.length === 0) throw new UserError(`no transformer blocks were found in ${source.sourcePath ?? 'the model'}, so there is nothing to prune`);
  const layout = maskLayout(structure);
  const total = layout.units.length;
  const mask = g.addInput(MASK_INPUT, { kind: 'tensor', dtype: DataType.FLOAT, shape: ['rows', total] });
  const c64 = (name: string, values: number[]): Value => g.addInitializer(Tensor.from(g.uniqueName(name), DataType.INT64, [values.length], values.map((x) => BigInt(x))));
  const sliceMask = (off: number, n: number, tag: string): Value =>
    g.addNode('Slice', [mask, c64(`${tag}_start`, [off]), c64(`${tag}_end`, [off + n]), c64(`${tag}_axes`, [1])], [g.uniqueName(`${tag}_mask`)]).output(0);
  const shapes = new SymbolicShapes(g, g.topologicalOrder());
  const sampleInput = g.inputs.find((v) => !v.initializer && v.name !== MASK_INPUT);
  const batch = sampleInput ? shapes.shape(sampleInput)?.[0] : undefined;
  /**
   * Multiplies what `reader` reads from `input` by `factor` ([rows, 1.., width]), with the mask's
   * rows on the input's batch axis: the first (most models), a later one (torch's seq-first
   * [S, B, W]), or the inner part of flattened tokens (`batchLast`: [S·B, W]).
   */
  const applyAt = (input: Value, reader: import('../ir/node.js').Node, factor: Value, tag: string, flat: boolean, width: number, batchLast = false): void => {
    const slot = reader.inputs.indexOf(input);
    const dims = shapes.shape(input);
    const batchAxis = !flat && dims && batch ? dims.findIndex((d) => symEqual(d, batch)) : -1;
    if (!flat && batchAxis > 0) {
      const f = g.addNode('Reshape', [factor, c64(`${tag}_fb`, dims!.map((_, i) => (i === batchAxis ? -1 : i === dims!.length - 1 ? width : 1)))], [g.uniqueName(`${tag}_factorb`)]).output(0);
      const mul = g.addNode('Mul', [input, f], [g.uniqueName(`${tag}_masked`)], { before: reader });
      reader.setInput(slot, mul.output(0));
      return;
    }
    if (!flat) {
      const mul = g.addNode('Mul', [input, factor], [g.uniqueName(`${tag}_masked`)], { before: reader });
      reader.setInput(slot, mul.output(0));
      return;
    }
    // a Gemm reads [rows * tokens, width] (or [tokens * rows, width]): view it as 3-D for the product
    const rows = g.addNode('Slice', [g.addNode('Shape', [mask], [g.uniqueName(`${tag}_mshape`)]).output(0), c64(`${tag}_r0`, [0]), c64(`${tag}_r1`, [1]), c64(`${tag}_ra`, [0])], [g.uniqueName(`${tag}_rows`)]).output(0);
    const pieces = batchLast ? [c64(`${tag}_lead`, [-1]), rows, c64(`${tag}_w`, [width])] : [rows, c64(`${tag}_rest`, [-1, width])];
    const shape3 = g.addNode('Concat', pieces, [g.uniqueName(`${tag}_shape3`)], { attributes: { axis: { type: 'int', value: 0 } } }).output(0);
    const x3 = g.addNode('Reshape', [input, shape3], [g.uniqueName(`${tag}_x3`)]).output(0);
    const f3 = g.addNode('Reshape', [factor, c64(`${tag}_f3`, batchLast ? [1, -1, width] : [-1, 1, width])], [g.uniqueName(`${tag}_factor3`)]).output(0);
    const mul = g.addNode('Mul', [x3, f3], [g.uniqueName(`${tag}_masked3`)]).output(0);
    const back = g.addNode('Reshape', [mul, c64(`${tag}_flat`, [-1, width])], [g.uniqueName(`${tag}_masked`)], { before: reader });
    reader.setInput(slot, back.output(0));
  };
  for (const b of structure.blocks) {
    const tag = `slimformer_b${b.index}`;
    if (b.mlp) {
      const w = b.mlp.width;
      const rank = b.mlp.fc2.node.opType === 'Gemm' ? 2 : (b.mlp.fc2.input.shape?.length ?? 3);
      const m = sliceMask(layout.neuronOffset.get(b.index)!, w, `${tag}_mlp`);
      const shape = rank === 2 ? [-1, w] : [-1, ...new Array<number>(rank - 2).fill(1), w];
      const r = g.addNode('Reshape', [m, c64(`${tag}_mlp_shape`, shape)], [g.uniqueName(`${tag}_mlp_factor`)]).output(0);
      applyAt(b.mlp.fc2.input, b.mlp.fc2.node, r, `${tag}_mlp`, rank === 2, w);
    }
    if (b.attention) {
      const a = b.attention;
      const rank = a.o.node.opType === 'Gemm' ? 2 : (a.o.input.shape?.length ?? 3);
      const n = layout.heads.get(b.index)!;
      const m = sliceMask(layout.headOffset.get(b.index)!, n, `${tag}_attn`);
      const m3 = g.addNode('Reshape', [m, c64(`${tag}_attn_s1`, [-1, n, 1])], [g.uniqueName(`${tag}_attn_h`)]).output(0);
      // a unit's query heads are contiguous in the context that enters o
      const tiled = g.addNode('Tile', [m3, c64(`${tag}_attn_rep`, [1, 1, (a.numHeads / n) * a.headSize])], [g.uniqueName(`${tag}_attn_t`)]).output(0);
      const shape = rank === 2 ? [-1, a.numHeads * a.headSize] : [-1, ...new Array<number>(rank - 2).fill(1), a.numHeads * a.headSize];
      const f = g.addNode('Reshape', [tiled, c64(`${tag}_attn_s2`, shape)], [g.uniqueName(`${tag}_attn_factor`)]).output(0);
      // the context's token dims tell where the batch sits when a Gemm reads them flattened
      const batchLast = rank === 2 && !!batch && a.contextTokens.length > 1 && symEqual(a.contextTokens[a.contextTokens.length - 1], batch);
      applyAt(a.o.input, a.o.node, f, `${tag}_attn`, rank === 2, a.numHeads * a.headSize, batchLast);
    }
  }
  const blockOutputs = new Map<number, string>();
  for (const b of structure.blocks) {
    const out = b.mlpResidual?.add.output(0) ?? b.attentionResidual?.add.output(0) ?? b.mlp?.output ?? b.attention?.output;
    if (out) blockOutputs.set(b.index, out.name);
  }
  const result: MaskedModel = { model, layout, structure, distortion: new Map(), blockOutputs };
  if (scoring) addScoring(g, result, scoring, c64);
  return result;
}

function addScoring(g: Graph, r: MaskedModel, s: ScoringSpec, c64: (name: string, values: number[]) => Value): void {
  const f32 = (name: string, v: number): Value => g.addInitializer(Tensor.from(g.uniqueName(name), DataType.FLOAT, [], [v]));
  const node = (op: string, inputs: Value[], name: string, attributes: Record<string, import('../ir/attribute.js').Attribute> = {}): Value =>
    g.addNode(op, inputs, [g.uniqueName(name)], { attributes }).output(0);
  const outputs: Value[] = [];
  const first = (x: Value, tag: string): Value => node('Slice', [x, c64(`${tag}_s0`, [0]), c64(`${tag}_s1`, [1]), c64(`${tag}_sa`, [0])], `${tag}_ref`);
  const logitsValue = g.outputs[0]!;
  const T = s.temperature ?? 4;
  const logits = node('Reshape', [logitsValue, c64('slimformer_logit_shape', [-1, s.logitRows, s.classes])], 'slimformer_logits3');
  // entropy of the model's own predictions, per variant
  const logp1 = node('LogSoftmax', [logits], 'slimformer_logp', { axis: { type: 'int', value: -1 } });
  const plogp = node('Mul', [node('Exp', [logp1], 'slimformer_p'), logp1], 'slimformer_plogp');
  const ent = node('ReduceSum', [plogp, c64('slimformer_ent_axes', [1, 2])], 'slimformer_ent_sum', { keepdims: { type: 'int', value: 0 } });
  const entropy = node('Mul', [ent, f32('slimformer_ent_scale', -1 / s.logitRows)], 'slimformer_entropy');
  outputs.push(entropy);
  r.entropy = entropy.name;
  // KL(variant 0 || variant) of the softened logits, times T^2
  const soft = node('LogSoftmax', [node('Div', [logits, f32('slimformer_temp', T)], 'slimformer_soft_in')], 'slimformer_soft', { axis: { type: 'int', value: -1 } });
  const ref = first(soft, 'slimformer_kl');
  const klTerms = node('Mul', [node('Exp', [ref], 'slimformer_pref'), node('Sub', [ref, soft], 'slimformer_lr')], 'slimformer_klt');
  const klSum = node('ReduceSum', [klTerms, c64('slimformer_kl_axes', [1, 2])], 'slimformer_kl_sum', { keepdims: { type: 'int', value: 0 } });
  const kl = node('Mul', [klSum, f32('slimformer_kl_scale', (T * T) / s.logitRows)], 'slimformer_kl');
  outputs.push(kl);
  r.kl = kl.name;
  if (s.featureRows && s.featureWidth) {
    const rows = s.featureRows;
    const k = Math.min(rows, s.gramRows ?? 256);
    const pick = Array.from({ length: k }, (_, i) => Math.floor((i * rows) / k));
    const idx = c64('slimformer_md_rows', pick);
    for (const [block, name] of r.blockOutputs) {
      const tag = `slimformer_md${block}`;
      const f = node('Reshape', [g.value(name)!, c64(`${tag}_shape`, [-1, rows, s.featureWidth])], `${tag}_f`);
      const sel = node('Gather', [f, idx], `${tag}_sel`, { axis: { type: 'int', value: 1 } });
      const sq = node('ReduceSum', [node('Mul', [sel, sel], `${tag}_sq`), c64(`${tag}_ax`, [-1])], `${tag}_norm2`, { keepdims: { type: 'int', value: 1 } });
      const unit = node('Div', [sel, node('Sqrt', [node('Add', [sq, f32(`${tag}_eps`, 1e-12)], `${tag}_n2e`)], `${tag}_n`)], `${tag}_u`);
      const gram = node('MatMul', [unit, node('Transpose', [unit], `${tag}_ut`, { perm: { type: 'ints', value: [0, 2, 1] } })], `${tag}_gram`);
      const diff = node('Sub', [gram, first(gram, tag)], `${tag}_diff`);
      const md = node('ReduceSum', [node('Mul', [diff, diff], `${tag}_d2`), c64(`${tag}_ax2`, [1, 2])], `${tag}_md`, { keepdims: { type: 'int', value: 0 } });
      outputs.push(md);
      r.distortion.set(block, md.name);
    }
  }
  g.outputs = [...g.outputs, ...outputs];
}
