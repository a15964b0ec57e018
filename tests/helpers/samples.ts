import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ArrayTensor } from '../../src/ir/array-tensor.js';
import { tensorFromArray } from '../../src/ir/array-tensor.js';
import { writeTensorFile } from '../../src/onnx/tensor-file.js';

/** Writes `count` samples from `feeds()` as an ONNX test-data folder (test_data_set_N/input_K.pb). */
export function writeSamples(dir: string, feeds: () => Record<string, ArrayTensor>, count: number): void {
  for (let i = 0; i < count; i++) {
    const d = path.join(dir, `test_data_set_${i}`);
    fs.mkdirSync(d, { recursive: true });
    Object.entries(feeds()).forEach(([name, t], k) => writeTensorFile(path.join(d, `input_${k}.pb`), tensorFromArray(name, t)));
  }
}
