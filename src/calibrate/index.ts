// Calibration: streaming observers, the runner that feeds them from onnxruntime, and the cache.
export { calibrate, DEFAULT_MEMORY_BUDGET, type CalibrateOptions, type CalibrationResult } from './calibrate.js';
export {
  createObserver,
  resolveObserverSpec,
  OBSERVER_KINDS,
  DEFAULT_BINS,
  DEFAULT_CHANNEL_BINS,
  DEFAULT_PERCENTILE,
  type Observer,
  type ObserverKind,
  type ObserverOptions,
  type ObserverSpec,
  type ResolvedObserverSpec,
  type TensorRange,
} from './observer.js';
export { MinMaxObserver } from './minmax.js';
export { HistogramObserver, Histograms, type HistogramView } from './histogram.js';
export { PercentileObserver, histogramQuantile } from './percentile.js';
export { EntropyObserver, windowKl } from './entropy.js';
export { MseObserver, histogramQuantError } from './mse.js';
export { quantParams, roundHalfEven, type QuantParams } from './qparams.js';
export { NonFiniteError } from './non-finite.js';
export { channelLayout, type ChannelLayout } from './channels.js';
export { defaultCacheDir, CACHE_VERSION } from './cache.js';
export { hashModel, hashDataset } from './hash.js';
export { planExposure, type ExposurePlan } from './plan.js';
export { withStatistics, type StatRequest, type TensorStatOutputs } from './stats-graph.js';
