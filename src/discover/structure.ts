import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import type { HeadSite } from './head-layout.js';
import type { Sym } from './symbolic.js';

export type { HeadSite } from './head-layout.js';

/**
 * A MatMul or Gemm with a constant weight, plus its bias. `weight` and `bias` are the values
 * that hold the data (an initializer, or a Constant node's output): an Identity between them
 * and the node is looked through, so the data may be shared with other readers (torch
 * deduplicates equal initializers that way); check `weight.uses()` before rewriting in place.
 */
export interface LinearLayer {
  /** Module-like name taken from the node or weight name, e.g. "blocks.0.attn.query". */
  name: string;
  node: Node;
  weight: Value;
  bias?: Value;
  /** The Add that applies the bias after a MatMul (absent for Gemm, whose C is the bias). */
  biasAdd?: Node;
  inFeatures: number;
  outFeatures: number;
  /** Gemm transB=1: the weight is stored [out, in]; otherwise [in, out]. */
  transB: boolean;
  input: Value;
  /** The output after the bias add. */
  output: Value;
}

export interface NormLayer {
  kind: 'layernorm' | 'rmsnorm';
  /** 'fused': one op (LayerNormalization, SimplifiedLayerNormalization, RMSNormalization). */
  form: 'fused' | 'decomposed';
  /** Every node from input to output (including Casts in between), in no particular order. */
  nodes: Node[];
  input: Value;
  output: Value;
  scale?: Value;
  bias?: Value;
  epsilon: number;
  /** Size of the normalized axis, from the scale or the input's shape; 0 when unknown. */
  hidden: number;
}

export interface AttentionMask {
  kind: 'additive' | 'where';
  /** The Add or Where that applies the mask, then the nodes that compute the mask tensor. */
  nodes: Node[];
  /** The graph input the mask is computed from (e.g. attention_mask), when there is one. */
  source?: string;
}

/** A run of a linear layer's output features: where q, k or v sits in its projection. */
export interface FeatureRange {
  start: number;
  size: number;
}

export interface Attention {
  /** The projections of q, k and v: one packed linear (GPT-2's c_attn, torch's in_proj) is all three. */
  q: LinearLayer;
  k: LinearLayer;
  v: LinearLayer;
  o: LinearLayer;
  /** Where q, k and v are among their linear's output features (the whole output when separate). */
  qFeatures: FeatureRange;
  kFeatures: FeatureRange;
  vFeatures: FeatureRange;
  numHeads: number;
  /** Key/value heads: numHeads for multi-head, fewer for grouped-query, 1 for multi-query attention. */
  numKvHeads: number;
  headSize: number;
  /** 'batch-heads' when heads share an axis with the batch (torch MultiheadAttention's [B·heads, S, d]). */
  layout: 'heads' | 'batch-heads';
  /** Concat(past, new) of a key/value cache on k's and v's way (the past is a graph input, the result a present output). */
  cacheConcats: Node[];
  /** The token dims of the context entering o, outermost first (e.g. [seq, batch] for torch's seq-first layout). */
  contextTokens: Sym[];
  /** Shape entries that state a head count (times other sizes): removing heads rewrites each by the kept share. */
  headSites: HeadSite[];
  softmax: Node;
  mask?: AttentionMask;
  /** True when a constant lower-triangular mask is applied. */
  causal: boolean;
  /** True when q and k go through a rotary position embedding (x * cos + rotate_half(x) * sin). */
  rotary: boolean;
  /** How many leading dims of each head the rotary embedding turns (headSize when full, 0 without). */
  rotaryDims: number;
  /** Where the 1/sqrt(d) factor is applied: on the scores, on q, on k, or split between them. */
  scaleSite: 'none' | 'scores' | 'q' | 'k' | 'q+k' | 'scores+q' | 'scores+k' | 'scores+q+k';
  /** The product of the constant factors applied to the scores (1/sqrt(headSize) usually). */
  scale: number;
  /** The nodes between the projections and o: reshapes, transposes, MatMuls, scale, softmax. */
  nodes: Node[];
  input: Value;
  output: Value;
}

export type Activation = 'gelu' | 'gelu_tanh' | 'relu' | 'silu' | 'swiglu' | 'geglu' | (string & {});

export interface Mlp {
  /** The first projection (the "up" projection of a gated MLP). */
  fc1: LinearLayer;
  /** The gate projection of a gated MLP (SwiGLU, GeGLU): act(gate(x)) * fc1(x). */
  gate?: LinearLayer;
  fc2: LinearLayer;
  activation: Activation;
  /** Every node between fc1 (and gate) and fc2. */
  activationNodes: Node[];
  width: number;
  /** Shape entries inside the MLP that state its width (a view back to [.., width]): pruning rewrites them. */
  widthSites: HeadSite[];
  input: Value;
  output: Value;
}

/** An Add of the residual stream (`skip`) and a sublayer's output (`branch`). */
export interface Residual {
  add: Node;
  skip: Value;
  branch: Value;
}

/** 'parallel': attention and MLP read one norm of the stream and both add to it (GPT-J, Phi). */
export type Placement = 'pre-ln' | 'post-ln' | 'parallel' | 'unknown';

export interface Block {
  index: number;
  attention?: Attention;
  mlp?: Mlp;
  /** pre-ln: the norm before the attention; post-ln: the norm after its residual add. */
  attentionNorm?: NormLayer;
  mlpNorm?: NormLayer;
  placement: Placement;
  attentionResidual?: Residual;
  mlpResidual?: Residual;
}

/** A structure that was looked for and not found, and why (like onnxscript's MatchResult.fail). */
export interface Unmatched {
  node: string;
  opType: string;
  reason: string;
}

export interface Structure {
  linears: LinearLayer[];
  norms: NormLayer[];
  attentions: Attention[];
  mlps: Mlp[];
  residuals: Residual[];
  blocks: Block[];
  unmatched: Unmatched[];
  /** Set when the structure is that of a subgraph: which one (a merged decoder's with-past branch). */
  branch?: string;
}

/** Plain JSON-able facts about a model and its structure (what `inspect` prints). */
export interface StructureSummary {
  opset: number;
  opCounts: Record<string, number>;
  parameters: number;
  hidden: number | null;
  blocks: BlockSummary[];
  linears: number;
  norms: number;
  unmatched: Unmatched[];
  /** Which subgraph the blocks were found in, for a merged decoder. */
  branch?: string;
}

export interface BlockSummary {
  index: number;
  heads: number | null;
  kvHeads: number | null;
  rotaryDims: number | null;
  /** separate q/k/v projections or one packed projection */
  projections: 'separate' | 'packed' | null;
  headSize: number | null;
  hidden: number | null;
  mlpWidth: number | null;
  activation: string | null;
  norm: Placement;
  normKind: 'layernorm' | 'rmsnorm' | null;
  normForm: 'fused' | 'decomposed' | null;
}
