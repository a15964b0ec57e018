// Captured activations, one row per calibration sample: in memory while they fit a budget,
// then in files under the system's temporary folder. Mini-batches gather rows by index.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ArrayTensor } from '../ir/array-tensor.js';
import { DataType, bitsPerElement, dtypeName } from '../ir/dtype.js';
import { elementCount, type TypedArray } from '../ir/tensor.js';

type ArrayCtor = new (n: number | ArrayBuffer, offset?: number, length?: number) => TypedArray;

function arrayType(dtype: DataType): ArrayCtor {
  switch (dtype) {
    case DataType.FLOAT:
      return Float32Array as unknown as ArrayCtor;
    case DataType.DOUBLE:
      return Float64Array as unknown as ArrayCtor;
    case DataType.INT64:
      return BigInt64Array as unknown as ArrayCtor;
    case DataType.INT32:
      return Int32Array as unknown as ArrayCtor;
    case DataType.INT8:
      return Int8Array as unknown as ArrayCtor;
    case DataType.UINT8:
    case DataType.BOOL:
      return Uint8Array as unknown as ArrayCtor;
    case DataType.FLOAT16:
    case DataType.UINT16:
    case DataType.BFLOAT16:
      return Uint16Array as unknown as ArrayCtor;
    case DataType.INT16:
      return Int16Array as unknown as ArrayCtor;
    default:
      throw new Error(`cannot store ${dtypeName(dtype)} activations`);
  }
}

/** Rows of one tensor (all with the same dims after the first axis). */
export class TensorStore {
  readonly rowElements: number;
  readonly rowBytes: number;
  private readonly memory: TypedArray | undefined;
  private readonly fd: number | undefined;

  constructor(
    readonly name: string,
    readonly dtype: DataType,
    readonly rowDims: readonly number[],
    readonly rows: number,
    readonly file: string | undefined,
  ) {
    this.rowElements = elementCount(rowDims);
    this.rowBytes = (this.rowElements * bitsPerElement(dtype)) / 8;
    if (file) {
      this.fd = fs.openSync(file, 'w+');
      fs.ftruncateSync(this.fd, this.rowBytes * rows);
    } else {
      this.memory = new (arrayType(dtype))(this.rowElements * rows);
    }
  }

  get bytes(): number {
    return this.rowBytes * this.rows;
  }

  get onDisk(): boolean {
    return this.fd !== undefined;
  }

  /** Writes a batch of rows starting at row `at`. */
  write(at: number, t: ArrayTensor): void {
    const n = t.dims[0] ?? 1;
    if (t.dtype !== this.dtype || elementCount(t.dims) !== n * this.rowElements) {
      throw new Error(`tensor '${this.name}': rows of ${dtypeName(this.dtype)}[${this.rowDims.join(',')}] expected, got ${dtypeName(t.dtype)}[${t.dims.join(',')}]`);
    }
    if (at + n > this.rows) throw new Error(`tensor '${this.name}': row ${at + n} is past the ${this.rows} rows kept`);
    if (this.memory) {
      (this.memory as unknown as { set(a: ArrayLike<unknown>, o: number): void }).set(t.data as ArrayLike<unknown>, at * this.rowElements);
    } else {
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, n * this.rowBytes);
      fs.writeSync(this.fd!, bytes, 0, bytes.byteLength, at * this.rowBytes);
    }
  }

  /** The rows at `indices`, stacked along a new first axis. */
  read(indices: readonly number[]): ArrayTensor {
    const out = new (arrayType(this.dtype))(indices.length * this.rowElements);
    if (this.memory) {
      const src = this.memory as unknown as { subarray(a: number, b: number): ArrayLike<unknown> };
      const dst = out as unknown as { set(a: ArrayLike<unknown>, o: number): void };
      indices.forEach((r, k) => dst.set(src.subarray(r * this.rowElements, (r + 1) * this.rowElements), k * this.rowElements));
    } else {
      const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
      // consecutive rows are read in one call
      for (let k = 0; k < indices.length; ) {
        let run = 1;
        while (k + run < indices.length && indices[k + run] === indices[k]! + run) run++;
        fs.readSync(this.fd!, bytes, k * this.rowBytes, run * this.rowBytes, indices[k]! * this.rowBytes);
        k += run;
      }
    }
    return { dtype: this.dtype, dims: [indices.length, ...this.rowDims], data: out };
  }

  /** Rows [start, end). */
  range(start: number, end: number): ArrayTensor {
    return this.read(Array.from({ length: end - start }, (_, i) => start + i));
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
  }
}

/** A set of stores sharing a memory budget; past it, new stores go to disk. */
export class ActivationCache {
  private readonly stores = new Set<TensorStore>();
  private inMemory = 0;
  private dir: string | undefined;

  constructor(readonly budgetBytes: number) {}

  create(name: string, dtype: DataType, rowDims: readonly number[], rows: number): TensorStore {
    const bytes = (elementCount(rowDims) * bitsPerElement(dtype) * rows) / 8;
    let file: string | undefined;
    if (this.inMemory + bytes > this.budgetBytes) {
      this.dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'slimformer-activations-'));
      file = path.join(this.dir, `${this.stores.size}-${name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(-80)}.bin`);
    } else {
      this.inMemory += bytes;
    }
    const s = new TensorStore(name, dtype, rowDims, rows, file);
    this.stores.add(s);
    return s;
  }

  /** Frees a store (its memory counts against the budget no longer). */
  drop(store: TensorStore): void {
    if (!this.stores.delete(store)) return;
    store.close();
    if (store.file) fs.rmSync(store.file, { force: true });
    else this.inMemory -= store.bytes;
  }

  /** Bytes kept in memory, and on disk. */
  usage(): { memory: number; disk: number } {
    let disk = 0;
    for (const s of this.stores) if (s.onDisk) disk += s.bytes;
    return { memory: this.inMemory, disk };
  }

  dispose(): void {
    for (const s of this.stores) s.close();
    this.stores.clear();
    this.inMemory = 0;
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}
