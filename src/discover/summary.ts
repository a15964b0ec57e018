import type { Model } from '../ir/model.js';
import type { Block, BlockSummary, Structure, StructureSummary } from './structure.js';

/** Plain facts about a model and the structure found in it, for `inspect` and reports. */
export function summarizeStructure(model: Model, s: Structure): StructureSummary {
  const opCounts: Record<string, number> = {};
  for (const n of model.graph.allNodes()) {
    const key = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
    opCounts[key] = (opCounts[key] ?? 0) + 1;
  }
  const blocks = s.blocks.map(blockSummary);
  return {
    opset: model.opset,
    opCounts,
    parameters: model.parameterCount(),
    hidden: mostCommon(blocks.map((b) => b.hidden)),
    blocks,
    linears: s.linears.length,
    norms: s.norms.length,
    unmatched: s.unmatched.map((u) => ({ ...u })),
    ...(s.branch ? { branch: s.branch } : {}),
  };
}

function blockSummary(b: Block): BlockSummary {
  const norm = b.attentionNorm ?? b.mlpNorm;
  return {
    index: b.index,
    heads: b.attention?.numHeads ?? null,
    kvHeads: b.attention?.numKvHeads ?? null,
    rotaryDims: b.attention ? b.attention.rotaryDims : null,
    projections: b.attention ? (b.attention.q === b.attention.k ? 'packed' : 'separate') : null,
    headSize: b.attention?.headSize ?? null,
    hidden: b.attention?.q.inFeatures ?? b.mlp?.fc1.inFeatures ?? null,
    mlpWidth: b.mlp?.width ?? null,
    activation: b.mlp?.activation ?? null,
    norm: b.placement,
    normKind: norm?.kind ?? null,
    normForm: norm?.form ?? null,
  };
}

function mostCommon(xs: (number | null)[]): number | null {
  const counts = new Map<number, number>();
  for (const x of xs) if (x !== null) counts.set(x, (counts.get(x) ?? 0) + 1);
  let best: number | null = null;
  for (const [x, c] of counts) if (best === null || c > counts.get(best)!) best = x;
  return best;
}
