import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ArrayTensor } from '../ir/array-tensor.js';
import type { TypedArray } from '../ir/tensor.js';

/**
 * Tensors of many batches, by value name and batch, kept on disk instead of in memory: the
 * block runner's boundary values (a transformer's hidden state for every calibration batch) and
 * the calibration feeds themselves. Each value large enough (`minBytes`, 64 KiB by default) gets
 * a file of its own in a temporary folder (os.tmpdir(), made at the first such tensor), its
 * batches written one after the other; `get` reads a batch back into a fresh typed array. Small
 * tensors (masks, token ids) stay in memory, where a file would cost more than it saves.
 *
 * The folder goes with `close` (callers close in a `finally`: after an abort or an error too)
 * and, should the process exit first, with an 'exit' handler.
 *
 * Memory (BERT-base-sized encoder, sequential GPTQ: 128 samples of 128 x 768 floats): the
 * samples (48 MiB) and the hidden state of both the quantized and the float model (2 x 48 MiB)
 * leave JavaScript's heap for the page cache; a batch's 3 MiB is in memory while it runs. Peak
 * RSS 1189 -> 965 MiB, the same output bytes (docs/scale.md, item 19).
 */
export class SpillStore {
  private folder: string | undefined;
  private readonly values = new Map<string, StoredValue>();
  private files = 0;

  /** `minBytes` Infinity: everything in memory, no folder (the block runner without spill). */
  constructor(private readonly minBytes = SPILL_MIN_BYTES) {}

  /** The temporary folder, once a tensor has gone to disk (undefined before and after close). */
  get dir(): string | undefined {
    return this.folder;
  }

  /** Keeps batch `batch` of value `name` (in memory below `minBytes`, else appended to its file), replacing what was kept. */
  put(name: string, batch: number, t: ArrayTensor): void {
    let v = this.values.get(name);
    if (!v) this.values.set(name, (v = { batches: new Map(), size: 0 }));
    if (t.data.byteLength < this.minBytes) {
      v.batches.set(batch, t);
      return;
    }
    if (v.fd === undefined) {
      v.file = path.join(this.openFolder(), `${this.files++}.bin`);
      v.fd = fs.openSync(v.file, 'w+');
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    for (let done = 0; done < bytes.byteLength; ) done += fs.writeSync(v.fd, bytes, done, bytes.byteLength - done, v.size + done);
    v.batches.set(batch, { dtype: t.dtype, dims: [...t.dims], at: v.size, bytes: bytes.byteLength, make: t.data.constructor as TypedArrayOf });
    v.size += bytes.byteLength;
  }

  /** Batch `batch` of `name`: the tensor put (small ones) or a fresh copy read from its file. */
  get(name: string, batch: number): ArrayTensor {
    const v = this.values.get(name);
    const e = v?.batches.get(batch);
    if (!v || !e) throw new Error(`spill store: no batch ${batch} of '${name}'`);
    if (!('at' in e)) return e;
    const data = new e.make(e.bytes / e.make.BYTES_PER_ELEMENT);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    for (let done = 0; done < e.bytes; ) {
      const n = fs.readSync(v.fd!, bytes, done, e.bytes - done, e.at + done);
      if (n === 0) throw new Error(`spill store: ${v.file} ends before batch ${batch} of '${name}'`);
      done += n;
    }
    return { dtype: e.dtype, dims: [...e.dims], data };
  }

  /** Lets go of batch `batch` of `name`; the value's file is removed with its last batch. */
  drop(name: string, batch: number): void {
    const v = this.values.get(name);
    if (!v?.batches.delete(batch) || v.batches.size > 0) return;
    this.values.delete(name);
    if (v.fd !== undefined) {
      fs.closeSync(v.fd);
      fs.rmSync(v.file!, { force: true });
    }
  }

  /** Lets go of everything and removes the temporary folder. */
  close(): void {
    for (const v of this.values.values()) if (v.fd !== undefined) fs.closeSync(v.fd);
    this.values.clear();
    if (this.folder) removeFolder(this.folder);
    this.folder = undefined;
  }

  private openFolder(): string {
    if (!this.folder) {
      this.folder = fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-spill-'));
      liveFolders.add(this.folder);
      if (!exitHandlerSet) {
        exitHandlerSet = true;
        process.on('exit', () => [...liveFolders].forEach(removeFolder));
      }
    }
    return this.folder;
  }
}

/** Tensors under this many bytes stay in memory (a batch of masks or token ids). */
export const SPILL_MIN_BYTES = 64 * 1024;

type TypedArrayOf = { new (length: number): TypedArray; BYTES_PER_ELEMENT: number };

/** Where a batch of a value is: in memory, or in the value's file. */
type StoredBatch = ArrayTensor | { dtype: ArrayTensor['dtype']; dims: number[]; at: number; bytes: number; make: TypedArrayOf };

interface StoredValue {
  batches: Map<number, StoredBatch>;
  /** Bytes written to the file so far (where the next batch goes). */
  size: number;
  fd?: number;
  file?: string;
}

/** Folders of stores not closed yet: removed when the process exits (one handler for all). */
const liveFolders = new Set<string>();
let exitHandlerSet = false;

function removeFolder(dir: string): void {
  liveFolders.delete(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}
