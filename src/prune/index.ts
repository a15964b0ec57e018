// Structured pruning without retraining: physical removal, importance scores, selection.
export { applyPrunePlan, type PrunePlan, type SurgeryResult } from './surgery.js';
export { buildMaskedModel, maskLayout, MASK_INPUT, type MaskLayout, type MaskedModel, type ScoringSpec, type Unit } from './mask.js';
export { calibrationBatch, measureFlops, mlpParameters, tokensPerSample, unitCosts, type UnitCosts } from './cost.js';
export { attentionSimilarity, magnitudeScores, sublayerSimilarity, MaskRunner, optinScores, taylorScores, type Scores, type VariantResult } from './importance.js';
export { ampSearch, flopCandidates, planFromMask, refineWidths, selectFlops, selectFlopsVerified, selectMlpRatio, type FlopCandidate } from './select.js';
