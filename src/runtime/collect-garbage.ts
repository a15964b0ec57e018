import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let gc: (() => void) | undefined;

/**
 * Runs V8's garbage collector now. onnxruntime hands every run's outputs over as fresh
 * ArrayBuffers; V8 frees dead ones only when its external-memory heuristics call for a
 * collection, by which time several batches' outputs (tens of MiB each) have piled up. Code
 * that drops a batch's outputs and is about to make the next can call this. The gc function is
 * made available at run time, as jest-leak-detector does (`--expose-gc` for a new context).
 */
export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}
