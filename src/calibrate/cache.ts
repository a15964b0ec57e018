import * as fs from 'node:fs';
import * as path from 'node:path';
import { hashText } from './hash.js';
import type { ResolvedObserverSpec, TensorRange } from './observer.js';

/**
 * The calibration cache: one JSON file per (model, data, observers) key under
 * `<cacheDir>/calibration/`. Entries carry a checksum of their content and are checked against
 * the request before use; anything that does not check out is ignored (and recomputed), never
 * trusted. Files are written under a temporary name and renamed, so readers never see half a file.
 */

const FORMAT = 'slimformer-calibration';
/** Bump when what a key means or the file layout changes. */
export const CACHE_VERSION = 1;

export function defaultCacheDir(): string {
  const env = process.env.SLIMFORMER_CACHE_DIR;
  return path.resolve(env && env.length > 0 ? env : '.slimformer-cache');
}

/**
 * The cache key: the model's hash, the data's hash, the observers of each tensor, and any
 * other setting that changes the result (`extra`: the batching, for histogram observers).
 */
export function cacheKey(modelHash: string, dataHash: string, specs: Map<string, ResolvedObserverSpec>, extra: Record<string, number> = {}): string {
  const tensors = [...specs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, spec]) => [name, canonical(spec)]);
  const settings = Object.fromEntries(Object.entries(extra).sort(([a], [b]) => (a < b ? -1 : 1)));
  return hashText(JSON.stringify({ format: FORMAT, version: CACHE_VERSION, model: modelHash, data: dataHash, tensors, settings }));
}

function canonical(spec: ResolvedObserverSpec): Record<string, unknown> {
  const keys = Object.keys(spec).sort() as (keyof ResolvedObserverSpec)[];
  return Object.fromEntries(keys.map((k) => [k, spec[k]]));
}

export function cacheFile(dir: string, key: string): string {
  return path.join(dir, 'calibration', `${key}.json`);
}

interface Body {
  samples: number;
  created: string;
  ranges: Record<string, { min: number[]; max: number[] }>;
}

interface Entry {
  format: string;
  version: number;
  key: string;
  checksum: string;
  body: Body;
}

export interface CachedCalibration {
  ranges: Map<string, TensorRange>;
  samples: number;
}

/** The entry for `key` when it exists and checks out against the request, else undefined. */
export function readCache(file: string, key: string, specs: Map<string, ResolvedObserverSpec>): CachedCalibration | undefined {
  let entry: Entry;
  try {
    entry = JSON.parse(fs.readFileSync(file, 'utf8')) as Entry;
  } catch {
    return undefined;
  }
  if (!isObject(entry) || entry.format !== FORMAT || entry.version !== CACHE_VERSION || entry.key !== key || !isObject(entry.body)) return undefined;
  if (entry.checksum !== hashText(JSON.stringify(entry.body))) return undefined;
  const { body } = entry;
  if (!Number.isInteger(body.samples) || !isObject(body.ranges)) return undefined;
  const ranges = new Map<string, TensorRange>();
  for (const [name, spec] of specs) {
    const r = Object.prototype.hasOwnProperty.call(body.ranges, name) ? body.ranges[name] : undefined;
    if (!isObject(r) || !Array.isArray(r.min) || !Array.isArray(r.max)) return undefined;
    const n = r.min.length;
    if (n === 0 || r.max.length !== n || (!spec.perChannel && n !== 1)) return undefined;
    for (let i = 0; i < n; i++) {
      const lo = r.min[i];
      const hi = r.max[i];
      if (typeof lo !== 'number' || typeof hi !== 'number' || !Number.isFinite(lo) || !Number.isFinite(hi) || lo > hi) return undefined;
      if (spec.symmetric && lo !== -hi) return undefined;
    }
    ranges.set(name, { min: Float32Array.from(r.min), max: Float32Array.from(r.max) });
  }
  return { ranges, samples: body.samples };
}

/** Writes an entry atomically (temporary file, then rename). Throws on I/O errors. */
export function writeCache(file: string, key: string, ranges: Map<string, TensorRange>, samples: number): void {
  const body: Body = {
    samples,
    created: new Date().toISOString(),
    ranges: Object.fromEntries([...ranges].map(([name, r]) => [name, { min: Array.from(r.min), max: Array.from(r.max) }])),
  };
  const entry: Entry = { format: FORMAT, version: CACHE_VERSION, key, checksum: hashText(JSON.stringify(body)), body };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(entry));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

function isObject(x: unknown): x is Record<string, any> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
