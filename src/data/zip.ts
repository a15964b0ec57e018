// .npz archives (what numpy.savez writes: a zip of .npy members) through fflate.
import { unzipSync, zipSync } from 'fflate';

/** The members of a zip archive by name (stored or deflated, as numpy writes them). */
export function readZipEntries(bytes: Uint8Array): Map<string, Uint8Array> {
  try {
    return new Map(Object.entries(unzipSync(bytes)));
  } catch (e) {
    throw new Error(`not a zip/.npz archive or a corrupt one (${(e as Error).message})`);
  }
}

/** A zip archive of stored (uncompressed) members, as numpy.savez writes. */
export function storedZip(files: { name: string; bytes: Uint8Array }[]): Uint8Array {
  return zipSync(Object.fromEntries(files.map((f) => [f.name, [f.bytes, { level: 0 }]])));
}
