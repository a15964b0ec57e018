// The language-model evaluation API in one place (decoders: stream perplexity, generation agreement).
export { decoderIo, type DecoderIo, type CacheEntry } from './decoder-io.js';
export { DecoderRunner, type SequenceLogits } from './decoder-runner.js';
export { compareGeneration, continuationAgreement, type GenerationComparison, type GenerationOptions } from './generation-agreement.js';
export { LM_METRICS, LM_DEFAULTS, isLmMetricName, type LmMetricName, type LmOptions, type LmSetup } from './lm-metrics.js';
export { slidingPerplexity, slidingWindows, type SlidingOptions, type SlidingResult } from './sliding-perplexity.js';
export { promptsFromStream, tokenStreamFromDataset, tokenStreamFromNpy, type TokenStream } from './token-stream.js';
