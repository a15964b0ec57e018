export { analyzeModel, analysisTensors } from './analyze.js';
export type { AnalyzeOptions, AnalysisResult, TensorMetrics, HeadMetrics, AttentionMetrics, LayerPrediction, Recommendation, TensorKind } from './analyze.js';
export { attentionForms, applyClippedSoftmax, discoverWithForms, matchClippedSoftmax, matchGate } from './forms.js';
export type { AttentionForm, ClippedSoftmax, GatedAttention } from './forms.js';
export { gateAnalysis } from './gate.js';
export type { AnalysisGate, GateOutcome } from './gate.js';
export { whatIfClippedSoftmax } from './what-if.js';
export type { WhatIfClipped } from './what-if.js';
export { analysisHtml, analysisText } from './render.js';
