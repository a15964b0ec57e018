// How glibc's allocator is set up for this process. bin/slimformer.js starts node with
// MALLOC_MMAP_THRESHOLD_=1048576 (its first line, `#!/usr/bin/env -S ...`): every buffer of a MiB
// and more is then mapped on its own and handed back to the system when freed. With glibc's
// default the threshold rises to the largest buffer freed so far (up to 32 MiB), so the
// activations, products and weights of 1-32 MiB that quantization makes and drops by the
// thousand come from the heap, and what is freed there stays resident: on the BERT-base-sized
// encoder (docs/scale.md) w4 GPTQ peaked at 1237 MiB with the default and 860 MiB with the
// threshold, w8a8 at 426 and 381 MiB. The variable is read when the process starts, so
// `node bin/slimformer.js` and programs using the API get glibc's defaults unless they set it.

/** The setting in words, for SLIMFORMER_MEMTRACE's first line. */
export function allocatorSetting(): string {
  const t = process.env.MALLOC_MMAP_THRESHOLD_;
  return t ? `MALLOC_MMAP_THRESHOLD_=${t}` : "glibc's defaults (MALLOC_MMAP_THRESHOLD_ not set)";
}

/**
 * Whether large freed buffers go back to the system (MALLOC_MMAP_THRESHOLD_ set at start, at
 * most 32 MiB). Then a short-lived onnxruntime session keeps its memory arena: its chunks are
 * reused run after run and unmapped when the session is released. Without the setting the
 * arena's chunks stay in glibc's heap after release, and sessions run without it.
 */
export function freedBuffersReturned(): boolean {
  const t = Number(process.env.MALLOC_MMAP_THRESHOLD_);
  return process.platform === 'linux' && Number.isFinite(t) && t > 0 && t <= 32 * 2 ** 20;
}
