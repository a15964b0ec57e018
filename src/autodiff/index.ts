// Gradients of ONNX graphs, built as ONNX graphs and run by onnxruntime.
export { buildGradientGraph, type GradientGraph, type GradientOptions } from './gradient.js';
export { checkGradients, type GradientCheckEntry, type GradientCheckOptions, type GradientCheckResult } from './check.js';
export { defaultRules, withRules } from './rules/index.js';
export { defaultPatterns, type Composite, type Pattern } from './patterns.js';
export type { OpRule, RuleContext, RuleTable } from './rules/types.js';
export { extractSubgraph, declareInputShapes, type Subgraph, type SubgraphSpec } from './subgraph.js';
export { Trainer, learningRate, type OptimizerOptions, type Schedule, type TrainableParameter, type TrainerOptions } from './optimizer.js';
export { trainInChunks } from './chunked-steps.js';
export { stepLoop, type StepLoop } from './step-loop.js';
export { toDouble, type DoubleMode } from './precision.js';
export { inferTypes, type TensorInfo } from './infer.js';
export { Random } from './random.js';
