import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { ExternalLocation, FileStamp } from '../ir/tensor.js';

export interface ResolvedLocation {
  file: string;
  offset: number;
  /** Absent when the entry does not say; the tensor's shape then decides. */
  length: number | undefined;
}

/**
 * Reads the external_data entries of a TensorProto. Locations are relative to the model's
 * folder and may not leave it (the ONNX checker's rule), so a model cannot make us read
 * arbitrary files.
 */
export function resolveExternalLocation(
  entries: { key?: string | null; value?: string | null }[],
  baseDir: string,
  where: string,
): ResolvedLocation {
  const get = (k: string): string | undefined => entries.find((e) => e.key === k)?.value ?? undefined;
  const location = get('location');
  if (!location) throw new UserError(`${where} says its data is external but names no location`);
  if (path.isAbsolute(location) || location.split(/[\\/]/).includes('..')) {
    throw new UserError(`${where}: external data location '${location}' must be a path inside the model's folder`);
  }
  const offset = Number(get('offset') ?? 0);
  const lengthText = get('length');
  const length = lengthText === undefined ? undefined : Number(lengthText);
  if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
    throw new UserError(`${where}: invalid external data offset/length (${get('offset')}, ${lengthText})`);
  }
  return { file: path.join(baseDir, location), offset, length };
}

/**
 * Reads a byte range of a data file. Each tensor gets its own buffer, so data files larger than
 * 2 GB (beyond what one Node buffer or protobuf message holds) are read piece by piece.
 */
export function readExternalBytes(loc: ExternalLocation): Uint8Array {
  let fd: number;
  try {
    fd = fs.openSync(loc.file, 'r');
  } catch {
    throw new UserError(`external data file ${loc.file} cannot be opened (missing or unreadable)`);
  }
  try {
    const stat = fs.fstatSync(fd);
    const size = stat.size;
    const was = loc.unchanged;
    if (was && (stat.ino !== was.ino || size !== was.size || stat.mtimeMs !== was.mtimeMs)) {
      throw new UserError(`${loc.file} changed after the model was loaded (its weights are read from it when used); load the model again`);
    }
    if (loc.offset + loc.length > size) {
      throw new UserError(`external data file ${loc.file} is truncated: needs bytes ${loc.offset}..${loc.offset + loc.length}, file has ${size}`);
    }
    const out = Buffer.allocUnsafe(loc.length);
    let done = 0;
    while (done < loc.length) {
      const n = fs.readSync(fd, out, done, Math.min(loc.length - done, 1 << 30), loc.offset + done);
      if (n <= 0) throw new UserError(`external data file ${loc.file} ended early`);
      done += n;
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } finally {
    fs.closeSync(fd);
  }
}

/** The stamp of a file as it is now (ExternalLocation.unchanged). */
export function fileStamp(stat: fs.Stats): FileStamp {
  return { ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs };
}
