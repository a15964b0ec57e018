// The public API of slimformer (docs/api.md documents every name; tests/api/exports.test.ts
// holds the two to each other). Building blocks below it: 'slimformer/internals'.
export { UserError, isUserError } from './errors.js';
export { PassError, type Pass, type PassContext, type PassResult } from './passes/pass.js';
export { QualityFloorError, QUALITY_FLOOR, PRUNING_FLOOR, type QualityFloor, type QualityCheck } from './validate/quality-floor.js';

// the model
export { DataType } from './ir/dtype.js';
export { Tensor, type TypedArray } from './ir/tensor.js';
export { Value } from './ir/value.js';
export { Node } from './ir/node.js';
export { Graph } from './ir/graph.js';
export { Model } from './ir/model.js';
export { loadModel, modelFromBytes, saveModel, modelToBytes, type SaveOptions, type SaveResult } from './onnx/index.js';
/** Loads a model (alias of loadModel, the name the pipeline examples use). */
export { loadModel as load } from './onnx/index.js';
export { discoverStructure, summarizeStructure, type Structure, type StructureSummary } from './discover/index.js';

// data
export { openDataset, type Dataset, type Sample, type NamedArray } from './data/dataset.js';
export type { DatasetInput } from './data/as-dataset.js';
export { openRawDataset, type RawDataOptions } from './data/raw-dataset.js';
export { textDataset, TEXT_TASKS, type TextTask, type TextDatasetOptions } from './data/text-dataset.js';
export { imageDataset, type ImageDatasetOptions } from './data/image-dataset.js';
export { readPreprocessorConfig, type ImagePreprocessing } from './data/image-preprocess.js';
export { loadTokenizer, type TextTokenizer } from './data/tokenizer.js';
export { writeDataset } from './data/write-dataset.js';
export { readModelFolder, modelFolderOf, type ModelFolder } from './data/model-folder.js';

// pipelines and passes
export { pipeline, type Pipeline, type ApplyOptions } from './pipeline/pipeline.js';
export type { PassSummaries, PassName } from './passes/summaries.js';
export { quantize, type QuantizePassOptions, type QuantizeSummary, type LayerBits } from './passes/quantize.js';
export { SCHEMES, METHODS, CALIBRATION_METHODS, SOFTMAX_MODES, type Scheme, type Method, type CalibrationMethod, type SoftmaxMode, type QuantizeOptions, type FlexRoundSettings } from './quantize/scheme.js';
export { flexRound, type FlexRoundOptions } from './passes/flexround.js';
export { gptq, type GptqOptions } from './passes/gptq.js';
export { smoothQuant, type SmoothQuantPassOptions } from './passes/smoothquant.js';
export { repQuant, type RepQuantPassOptions } from './passes/repquant.js';
export type { QuantizationPlan, DecisionSummary, ReparamSummary } from './quantize/plan.js';
export { prune, pruneMlp, PRUNE_METHODS, type PruneMethod, type PruneOptions, type PruneSummary } from './passes/prune.js';
export type { PrunePlan } from './prune/surgery.js';
export { cleanup, type CleanupOptions, type CleanupSummary } from './passes/cleanup.js';
export { fromRecipe, loadRecipe, parseRecipe, DEFAULT_RECIPE, type Recipe, type RecipeStep } from './pipeline/recipe.js';
export { registerPass, passNames, type PassEntry, type OptionSpec } from './pipeline/registry.js';
export { compressModel, type CompressOptions, type CompressResult } from './pipeline/compress.js';
export { autoCompress, type AutoOptions, type AutoResult } from './search/auto.js';
export { OBJECTIVES, type Objective } from './search/objective.js';

// validation
export { evaluate, type EvaluateOptions, type EvalResult } from './validate/evaluate.js';
export { METRICS, type MetricName } from './validate/metrics.js';
export { gate, type GateOptions, type GateResult, type GateMetricResult } from './validate/gate.js';
export { GATE_METRICS, type GateMetricName } from './validate/gate-metrics.js';
export { parseLimits, gateMetricList, assignLimits, type Limit, type Limits, type LimitFlags, type ParsedLimits } from './validate/limits.js';
export { DecoderRunner, compareGeneration, slidingPerplexity, tokenStreamFromNpy, type LmOptions, type GenerationComparison, type SlidingResult, type TokenStream } from './validate/lm.js';
export { analyzeModel, gateAnalysis, analysisText, analysisHtml, type AnalyzeOptions, type AnalysisResult, type AnalysisGate, type GateOutcome } from './analyze/index.js';

// reports
export { Report, type ReportEntry, type PassRecord } from './report/report.js';
export { reportJson, reportMarkdown, reportHtml } from './report/render.js';
export type { CompressReport } from './report/compress-report.js';
export { gateJson, gateTable, gateJunitSuite } from './validate/gate-report.js';
export { junitXml, writeJunit, type JunitSuite, type JunitCase } from './report/junit.js';
export { consoleProgress, silentProgress, type Progress } from './progress.js';
