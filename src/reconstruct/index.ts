// Block-wise reconstruction on calibration data (the engine FlexRound and friends plug into).
export { reconstructBlocks, MiniBatches, type BlockData, type BlockReconstruction, type BlockReport, type ReconstructionPlan, type ReconstructOptions, type ReconstructResult } from './engine.js';
export { blockSpans, type BlockSpan } from './blocks.js';
export { weightPlan, blockLinears, type WeightPlanOptions } from './plans.js';
export { ActivationCache, TensorStore } from './store.js';
export { reconstructionPass, type ReconstructionPassOptions } from './pass.js';
