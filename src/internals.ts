// slimformer/internals: the building blocks under the public API (calibration observers, GPTQ and
// FlexRound kernels, pruning surgery, autodiff, block reconstruction, ...) for advanced programs,
// tests and benchmarks. Not covered by the stability of the package root (docs/api.md).
export { UserError, isUserError } from './errors.js';

export { DataType, dtypeName, dtypeFromName } from './ir/dtype.js';
export { Tensor, elementCount, type ExternalLocation, type TypedArray } from './ir/tensor.js';
export { Value, type Dim, type Use, type ValueType } from './ir/value.js';
export { Node } from './ir/node.js';
export { Graph } from './ir/graph.js';
export { Model, type OpaqueFunction } from './ir/model.js';
export type { Attribute, AttributeValue } from './ir/attribute.js';
export type { ArrayTensor } from './ir/array-tensor.js';

export { loadModel, modelFromBytes, saveModel, modelToBytes, readTensorFile, writeTensorFile, type SaveOptions, type SaveResult } from './onnx/index.js';

export { discoverStructure, summarizeStructure } from './discover/index.js';
export type { Structure, StructureSummary, LinearLayer, NormLayer, Attention, Mlp, Block, Residual } from './discover/index.js';

export { Session, type SessionOptions } from './runtime/session.js';

export { openDataset, type Dataset, type Sample, type NamedArray } from './data/dataset.js';
export { bindDataset, batches, modelInputs, type BoundDataset, type Batch, type ModelInput } from './data/bind.js';
export { readModelFolder, modelFolderOf, type ModelFolder } from './data/model-folder.js';
export { openRawDataset, type RawDataOptions } from './data/raw-dataset.js';
export { textDataset, TEXT_TASKS, type TextTask, type TextDatasetOptions } from './data/text-dataset.js';
export { imageDataset, type ImageDatasetOptions } from './data/image-dataset.js';
export { readPreprocessorConfig, type ImagePreprocessing } from './data/image-preprocess.js';
export { loadTokenizer, type TextTokenizer } from './data/tokenizer.js';
export { writeDataset } from './data/write-dataset.js';

export { evaluate, type EvaluateOptions, type EvalResult } from './validate/evaluate.js';
export { MetricAccumulator, METRICS, type MetricName } from './validate/metrics.js';
export { gate, checkSameInterface, type GateOptions, type GateResult, type GateMetricResult } from './validate/gate.js';
export { GATE_METRICS, GATE_METRIC_INFO, isGateMetricName, type GateMetricName, type GateMetricInfo } from './validate/gate-metrics.js';
export { ComparisonAccumulator, COMPARISON_METRICS, type ComparisonMetricName } from './validate/comparison.js';
export { parseLimits, type Limit, type Limits } from './validate/limits.js';
export { gateJson, gateTable, gateJunitSuite } from './validate/gate-report.js';
export { DecoderRunner, compareGeneration, slidingPerplexity, slidingWindows, decoderIo, tokenStreamFromNpy, tokenStreamFromDataset, LM_METRICS, type LmOptions, type DecoderIo, type GenerationComparison, type SlidingResult, type TokenStream } from './validate/lm.js';
export { mcnemarExact, type McNemar } from './validate/significance.js';
export { junitXml, writeJunit, type JunitSuite, type JunitCase } from './report/junit.js';
export { quantize, type QuantizeSummary, type QuantizePassOptions, type LayerBits } from './passes/quantize.js';
export { calibrate, createObserver, quantParams, NonFiniteError, type CalibrateOptions, type CalibrationResult, type Observer, type ObserverKind, type ObserverOptions, type ObserverSpec, type TensorRange, type QuantParams } from './calibrate/index.js';
export { SCHEMES, CALIBRATION_METHODS, METHODS, SOFTMAX_MODES, type Scheme, type CalibrationMethod, type Method, type SoftmaxMode, type QuantizeOptions } from './quantize/scheme.js';
export { findFoldSites, applyFold, weightAbsMaxPerInput, type FoldSite, type FoldSearch, type AffineFold } from './reparam/fold.js';
export { smoothQuant, type SmoothQuantResult, type ReparamRunOptions } from './reparam/smoothquant.js';
export { repQuantReparam, channelGrid, gridFold, type RepQuantOptions, type RepQuantResult, type ChannelGrid } from './reparam/repquant.js';
export { gptqLevels, gptqLevelsAsync, inputGrams } from './quantize/gptq.js';
export { flexRound, type FlexRoundOptions } from './passes/flexround.js';
export { gptq, type GptqOptions } from './passes/gptq.js';
export { flexRoundLayer, bakeFlexRound, type FlexRoundLayerResult } from './quantize/flexround.js';
export { flexRoundWeights, type FlexRoundUnitReport } from './quantize/flexround-weights.js';
export type { FlexRoundSettings } from './quantize/scheme.js';
export { findSoftmaxSites, quantizeSoftmaxUniform, quantizeSoftmaxLog2, log2QuantReference, type SoftmaxSite } from './export/softmax.js';

export { type Pass, type PassContext, type PassResult, PassError } from './passes/pass.js';
export { cleanup, type CleanupOptions } from './passes/cleanup.js';
export { pipeline, type Pipeline } from './pipeline/pipeline.js';
export { Report, type ReportEntry, type PassRecord } from './report/report.js';
export { consoleProgress, silentProgress, type Progress } from './progress.js';

/** Loads a model (alias of loadModel, the name the pipeline examples use). */
export { loadModel as load } from './onnx/index.js';

export { analyzeModel, analysisTensors, gateAnalysis, attentionForms, discoverWithForms, applyClippedSoftmax, matchClippedSoftmax, matchGate, whatIfClippedSoftmax, analysisText, analysisHtml, type AnalyzeOptions, type AnalysisResult, type TensorMetrics, type HeadMetrics, type AttentionMetrics, type LayerPrediction, type Recommendation, type TensorKind, type AttentionForm, type ClippedSoftmax, type GatedAttention, type AnalysisGate, type GateOutcome, type WhatIfClipped } from './analyze/index.js';
export { prune, pruneMlp, PRUNE_METHODS, type PruneMethod, type PruneOptions, type PruneSummary } from './passes/prune.js';
export { applyPrunePlan, buildMaskedModel, MASK_INPUT, MaskRunner, magnitudeScores, optinScores, taylorScores, attentionSimilarity, sublayerSimilarity, measureFlops, type PrunePlan, type SurgeryResult, type MaskedModel, type Scores } from './prune/index.js';
export { buildGradientGraph, checkGradients, defaultRules, withRules, extractSubgraph, declareInputShapes, Trainer, learningRate, trainInChunks, toDouble, type GradientGraph, type GradientOptions, type GradientCheckOptions, type GradientCheckResult, type GradientCheckEntry, type OpRule, type RuleContext, type RuleTable, type Subgraph, type SubgraphSpec, type OptimizerOptions, type TrainableParameter, type TrainerOptions } from './autodiff/index.js';
export { reconstructBlocks, reconstructionPass, weightPlan, blockSpans, blockLinears, type BlockReconstruction, type ReconstructionPlan, type ReconstructOptions, type ReconstructResult, type BlockReport, type BlockSpan, type WeightPlanOptions, type ReconstructionPassOptions } from './reconstruct/index.js';
export { fromRecipe, loadRecipe, parseRecipe, checkRecipe, DEFAULT_RECIPE, type Recipe, type RecipeStep } from './pipeline/recipe.js';
export { registerPass, passNames, passEntry, type PassEntry, type OptionSpec } from './pipeline/registry.js';
export { compressModel, measure, measureLatency, type CompressOptions, type CompressResult } from './pipeline/compress.js';
export { autoCompress, rankLayers, trialRecipe, type AutoOptions, type AutoResult, type Sensitivity, type TrialConfig } from './search/auto.js';
export { reportJson, reportMarkdown, reportHtml, renderReport } from './report/render.js';
export type { CompressReport, Trial } from './report/compress-report.js';
export { checkOptions, recipeSpecs, type OptionSpecs } from './passes/options.js';
export { chooseByObjective, OBJECTIVES, type Objective, type ObjectiveChoice, type TimedCandidate } from './search/objective.js';
export { splitDataset, datasetView, type DatasetSplit } from './data/split.js';
