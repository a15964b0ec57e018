import * as fs from 'node:fs';
import { allocatorSetting } from './allocator.js';

/**
 * Resident memory of this process now and at its peak (VmHWM), in bytes; the peak is 0 where
 * /proc is not there.
 */
export function residentMemory(): { rss: number; peak: number } {
  const rss = process.memoryUsage().rss;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return { rss, peak: m ? Number(m[1]) * 1024 : 0 };
  } catch {
    return { rss, peak: 0 };
  }
}

/**
 * With SLIMFORMER_MEMTRACE set, writes one line to stderr: the phase and the resident memory
 * now and at its peak. How docs/scale.md's profile of `quantize` was taken; silent otherwise.
 */
export function traceMemory(phase: string): void {
  if (!process.env.SLIMFORMER_MEMTRACE) return;
  if (!allocatorTraced) {
    allocatorTraced = true;
    process.stderr.write(`[memory] allocator: ${allocatorSetting()}\n`);
  }
  // with --expose-gc (SLIMFORMER_MEMTRACE=gc): what is still reachable, garbage collected first
  const gc = (globalThis as { gc?: () => void }).gc;
  if (process.env.SLIMFORMER_MEMTRACE === 'gc' && gc) gc();
  const { rss, peak } = residentMemory();
  const mib = (b: number): string => (b / 2 ** 20).toFixed(0);
  // anonymous vs file-backed resident pages, and what JavaScript holds (heap, typed arrays)
  let split = '';
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    split = ` (anon ${mib(kb('RssAnon'))}, file ${mib(kb('RssFile'))})`;
  } catch {
    // no /proc: rss and peak only
  }
  const js = process.memoryUsage();
  process.stderr.write(`[memory] ${phase}: rss ${mib(rss)} MiB${split}, peak ${mib(peak)} MiB; js heap ${mib(js.heapUsed)} MiB, array buffers ${mib(js.arrayBuffers)} MiB\n`);
}

let allocatorTraced = false;
