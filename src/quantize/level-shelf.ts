import { DataType } from '../ir/dtype.js';
import { SpillStore } from '../runtime/spill-store.js';
import type { Levels, QuantizedWeight } from './weight-quantizer.js';

/**
 * The levels of layers a pass has decided, kept on disk (a SpillStore) until a later pass or the
 * writer reads them. Sequential GPTQ decides one layer after another while the Gram matrices and
 * the factor of the next are made: the one-byte levels of the layers done piled up to a quarter
 * of the float model by its last layer (BERT-base: 70 MiB, at the pass's peak). A shelved
 * weight's `levels` are read back the first time they are used, then kept (consumers index them
 * element by element); the folder goes once every shelved weight has been read, or at exit.
 */
export class LevelShelf {
  private readonly store = new SpillStore();
  private unread = 0;
  private count = 0;

  /** The temporary folder while some shelved levels are unread and on disk. */
  get folder(): string | undefined {
    return this.store.dir;
  }

  /** `q` with its levels on the shelf, read back when first used; `q` itself is left as it was. */
  shelve(q: QuantizedWeight): QuantizedWeight {
    // one value whose batches are the weights: one file and one descriptor for all of them
    const at = this.count++;
    this.store.put('levels', at, { dtype: q.levels instanceof Int8Array ? DataType.INT8 : DataType.UINT8, dims: [q.levels.length], data: q.levels });
    this.unread++;
    let levels: Levels | undefined;
    const { levels: _, ...rest } = q;
    return Object.defineProperty({ ...rest }, 'levels', {
      enumerable: true,
      get: (): Levels => {
        if (!levels) {
          levels = this.store.get('levels', at).data as Levels;
          this.store.drop('levels', at);
          if (--this.unread === 0) this.store.close();
        }
        return levels;
      },
    }) as QuantizedWeight;
  }
}
