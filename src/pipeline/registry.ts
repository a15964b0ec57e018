import { UserError } from '../errors.js';
import { cleanup } from '../passes/cleanup.js';
import type { Pass } from '../passes/pass.js';
import { quantize, type QuantizePassOptions } from '../passes/quantize.js';
import { namePattern } from '../quantize/select.js';
import { flexRound, gptq, type FlexRoundOptions, type GptqOptions } from '../passes/flexround.js';
import { CALIBRATION_METHODS, METHODS, SCHEMES, SOFTMAX_MODES } from '../quantize/scheme.js';
import type { CleanupOptions } from '../passes/cleanup.js';
import { PRUNE_METHODS, prune, type PruneOptions } from '../passes/prune.js';

/** How one option of a pass is checked when it comes from a recipe (untyped JSON/YAML). */
export type OptionSpec =
  | { type: 'enum'; values: readonly (string | number)[]; required?: boolean; doc: string }
  | { type: 'number'; min?: number; max?: number; integer?: boolean; required?: boolean; doc: string }
  | { type: 'boolean'; required?: boolean; doc: string }
  | { type: 'string'; required?: boolean; doc: string }
  | { type: 'string[]'; required?: boolean; doc: string }
  /** A mapping from layer-name patterns (globs or /regex/) to one of `values`. */
  | { type: 'pattern-map'; values: readonly (string | number)[]; required?: boolean; doc: string };

/** A pass the recipes and the CLI can name: its options and the factory that builds it. */
export interface PassEntry {
  name: string;
  doc: string;
  options: Record<string, OptionSpec>;
  create(options: Record<string, unknown>): Pass;
}

/** The values a quantize layerBits entry takes. */
const LAYER_BITS = [8, 7, 6, 5, 4, 3, 2, 'float'] as const;

const registry = new Map<string, PassEntry>();

/** Adds a pass to the registry (later registration of the same name replaces the earlier). */
export function registerPass(entry: PassEntry): void {
  registry.set(entry.name, entry);
}

/** The registered pass names, sorted. */
export function passNames(): string[] {
  return [...registry.keys()].sort();
}

export function passEntry(name: string): PassEntry {
  const e = registry.get(name);
  if (!e) throw new UserError(`unknown pass '${name}' (valid passes: ${passNames().join(', ')})`);
  return e;
}

/** Checks untyped options against a pass's specs; `where` names the recipe step in messages. */
export function checkOptions(entry: PassEntry, options: Record<string, unknown>, where: string): Record<string, unknown> {
  const valid = Object.keys(entry.options);
  for (const key of Object.keys(options)) {
    if (!(key in entry.options)) throw new UserError(`${where}: unknown option '${key}' for pass '${entry.name}' (valid options: ${valid.join(', ') || 'none'})`);
  }
  for (const [key, spec] of Object.entries(entry.options)) {
    const v = options[key];
    if (v === undefined) {
      if (spec.required) throw new UserError(`${where}: pass '${entry.name}' needs option '${key}' (${spec.doc})`);
      continue;
    }
    const bad = (want: string): UserError => new UserError(`${where}: option '${key}' of pass '${entry.name}' must be ${want}, not ${JSON.stringify(v)}`);
    switch (spec.type) {
      case 'enum':
        if (!spec.values.includes(v as string | number)) throw bad(`one of ${spec.values.join(', ')}`);
        break;
      case 'number':
        if (typeof v !== 'number' || !Number.isFinite(v)) throw bad('a number');
        if (spec.integer && !Number.isInteger(v)) throw bad('a whole number');
        if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) throw bad(`a number in [${spec.min ?? '-inf'}, ${spec.max ?? 'inf'}]`);
        break;
      case 'boolean':
        if (typeof v !== 'boolean') throw bad('true or false');
        break;
      case 'string':
        if (typeof v !== 'string') throw bad('a string');
        break;
      case 'string[]':
        if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw bad('a list of strings');
        break;
      case 'pattern-map': {
        if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length === 0) throw bad(`a mapping of layer patterns to ${spec.values.join(', ')} (like { 'blocks.3.*': 8 })`);
        for (const [p, x] of Object.entries(v)) {
          if (!spec.values.includes(x as string | number)) throw new UserError(`${where}: option '${key}' of pass '${entry.name}': pattern '${p}' must map to one of ${spec.values.join(', ')}, not ${JSON.stringify(x)}`);
          try {
            namePattern(p);
          } catch (e) {
            throw new UserError(`${where}: option '${key}' of pass '${entry.name}': ${(e as Error).message.replace('--exclude pattern', 'pattern')}`);
          }
        }
        break;
      }
    }
  }
  return options;
}

registerPass({
  name: 'cleanup',
  doc: 'removes Identity nodes, dead nodes and unused initializers; sorts the graph',
  options: { identities: { type: 'boolean', doc: 'remove Identity nodes (default true)' } },
  create: (o) => cleanup(o as CleanupOptions),
});

registerPass({
  name: 'quantize',
  doc: 'quantizes linear layers and embeddings under a scheme, checked against the float model',
  options: {
    scheme: { type: 'enum', values: SCHEMES, required: true, doc: `one of ${SCHEMES.join(', ')}` },
    method: { type: 'enum', values: METHODS, doc: 'preparation before rounding (default rtn; static schemes with calibration: repquant when a post-norm activation has outlier channels)' },
    alpha: { type: 'number', min: 0, max: 1, doc: 'SmoothQuant migration strength (default 0.5)' },
    repquantObserver: { type: 'enum', values: ['minmax', 'percentile', 'mse'], doc: 'RepQuant per-channel bounds (default mse)' },
    reconstruct: { type: 'enum', values: ['none', 'gptq'], doc: 'weight reconstruction (default none)' },
    softmax: { type: 'enum', values: SOFTMAX_MODES, doc: 'post-softmax quantization (default none)' },
    calibMethod: { type: 'enum', values: CALIBRATION_METHODS, doc: 'activation ranges (default minmax)' },
    perChannel: { type: 'boolean', doc: 'weight scales per output channel (default true)' },
    blockSize: { type: 'enum', values: [16, 32, 64, 128], doc: 'block size of weight-only schemes (default 32)' },
    weightSearch: { type: 'enum', values: ['minmax', 'mse'], doc: 'weight range search' },
    weightSymmetric: { type: 'boolean', doc: 'weight-only schemes: symmetric grids (default: yes, except at 2 bits)' },
    weightBits: { type: 'number', integer: true, min: 2, max: 8, doc: "bits of a static scheme's weight grid when not the scheme's own (w8a8 + 4: W4A8)" },
    gptqDamp: { type: 'number', min: 0, doc: 'GPTQ damping, a fraction of the mean Gram diagonal (default 0.01)' },
    gptqActOrder: { type: 'boolean', doc: 'GPTQ: columns by descending input energy (default true)' },
    exclude: { type: 'string[]', doc: 'layers kept in float (globs or /regex/)' },
    layerBits: { type: 'pattern-map', values: [...LAYER_BITS], doc: "per-layer weight bits or 'float' ({ 'blocks.3.*': 8, lm_head: float }; first matching pattern wins)" },
    outerBits: { type: 'enum', values: [2, 3, 4, 5, 6, 7, 8, 'scheme'], doc: "bits of the embedding tables and the linears outside the blocks when the scheme has fewer (default 8; 'scheme': the scheme's bits)" },
    embeddings: { type: 'boolean', doc: 'quantize embedding tables (default true)' },
    keepIoTypes: { type: 'boolean', doc: 'fp16/q4f16: graph inputs and outputs stay float32 (default true)' },
    keepFloat32Ops: { type: 'string[]', doc: 'fp16/q4f16: operator types kept in float32 besides the built-in list' },
    verifySamples: { type: 'number', integer: true, min: 1, doc: 'calibration samples run to check the result (default 16)' },
    batchSize: { type: 'number', integer: true, min: 1, doc: 'samples per onnxruntime run' },
  },
  create: (o) => quantize(o as unknown as QuantizePassOptions),
});

registerPass({
  name: 'prune',
  doc: 'structured pruning of MLP neurons, attention heads or attention sublayers',
  options: {
    method: { type: 'enum', values: PRUNE_METHODS, required: true, doc: `one of ${PRUNE_METHODS.join(', ')}` },
    ratio: { type: 'number', min: 0, max: 1, doc: 'share of MLP neurons to remove' },
    flops: { type: 'number', min: 0, max: 1, doc: 'FLOP budget as a fraction of the original' },
    maxIncrease: { type: 'number', min: 0, doc: 'AMP: largest entropy rise per MLP (nats)' },
    count: { type: 'number', integer: true, min: 1, doc: 'drop-attention / drop-mlp: sublayers to drop' },
    samples: { type: 'number', integer: true, min: 1, doc: 'calibration samples for scoring' },
  },
  create: (o) => prune(o as unknown as PruneOptions),
});

/** Options the flexround and gptq passes share (see src/passes/flexround.ts). */
const weightPassOptions = {
  bits: { type: 'enum', values: [8, 4, 3, 2], doc: 'weight bits (default 4)' },
  aBits: { type: 'enum', values: [8], doc: 'activation bits: absent for weight-only, 8 for static W·A8' },
  blockSize: { type: 'enum', values: [16, 32, 64, 128], doc: 'input features per weight scale (default 32)' },
  granularity: { type: 'string', doc: "weights per scale: 'tensor', 'channel' or 'block:N' (N = 16, 32, 64, 128; weight-only); overrides blockSize" },
  weightSymmetric: { type: 'boolean', doc: 'weight-only: symmetric grids (default: yes, except at 2 bits)' },
  exclude: { type: 'string[]', doc: 'layers kept in float (globs or /regex/)' },
  embeddings: { type: 'boolean', doc: 'quantize embedding tables (default true)' },
  verifySamples: { type: 'number', integer: true, min: 1, doc: 'calibration samples run to check the result (default 16)' },
  batchSize: { type: 'number', integer: true, min: 1, doc: 'samples per onnxruntime run' },
} as const;

registerPass({
  name: 'flexround',
  doc: 'learnable rounding by element-wise division, reconstructed block by block (exports ordinary integer weights)',
  options: {
    ...weightPassOptions,
    iters: { type: 'number', integer: true, min: 0, doc: 'optimizer steps per block or layer (default 500)' },
    lr: { type: 'number', min: 0, doc: 'Adam learning rate of the log-scales' },
    mode: { type: 'enum', values: ['layer', 'block'], doc: "'block' (default) or 'layer'" },
  },
  create: (o) => flexRound(o as unknown as FlexRoundOptions),
});

registerPass({
  name: 'gptq',
  doc: 'GPTQ: Hessian-aware rounding from calibration inputs',
  options: {
    ...weightPassOptions,
    damp: { type: 'number', min: 0, doc: 'damping, a fraction of the mean Gram diagonal (default 0.01)' },
    actOrder: { type: 'boolean', doc: 'columns by descending input energy (default false)' },
  },
  create: (o) => gptq(o as unknown as GptqOptions),
});
