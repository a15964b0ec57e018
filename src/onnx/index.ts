export { loadModel, modelFromBytes } from './load.js';
export { saveModel, modelToBytes, type SaveOptions, type SaveResult } from './save.js';
export { readTensorFile, writeTensorFile } from './tensor-file.js';
