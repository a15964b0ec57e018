import * as path from 'node:path';
import { UserError } from '../errors.js';
import type { Scheme } from '../quantize/scheme.js';

/**
 * transformers.js's dtype names (its `dtype` option, src/utils/dtypes.js
 * DEFAULT_DTYPE_SUFFIX_MAPPING) and what slimformer writes for each. transformers.js loads
 * `onnx/<file><suffix>.onnx`, <file> being model, encoder_model, decoder_model_merged, ...
 *
 * - q8 and int8: its scripts/quantize.py writes both with onnxruntime's dynamic quantization
 *   (DynamicQuantizeLinear + MatMulInteger, uint8 activations), int8 weights; q8 switches to
 *   uint8 weights only when the model has a Conv, because onnxruntime-web lacks ConvInteger
 *   with int8 weights. slimformer's dynamic scheme writes int8 weights and never writes
 *   ConvInteger (a patch-embedding Conv becomes a MatMul, other Convs stay float), so its q8
 *   and int8 files are the same model under two names.
 * - uint8: dynamic quantization with asymmetric uint8 weights (a zero point per tensor).
 *   slimformer's dynamic scheme is symmetric int8 by design, so it refuses uint8 rather than
 *   write an int8 model under that name.
 */
export interface DtypeVariant {
  readonly dtype: string;
  /** The file name's suffix before .onnx. */
  readonly suffix: string;
  readonly scheme: Scheme;
}

const WRITTEN: readonly DtypeVariant[] = [
  { dtype: 'fp16', suffix: '_fp16', scheme: 'fp16' },
  { dtype: 'q8', suffix: '_quantized', scheme: 'dynamic' },
  { dtype: 'int8', suffix: '_int8', scheme: 'dynamic' },
  { dtype: 'q4', suffix: '_q4', scheme: 'w4' },
  { dtype: 'q4f16', suffix: '_q4f16', scheme: 'q4f16' },
];

/** transformers.js dtypes slimformer does not write, and why. */
const REFUSED: Record<string, string> = {
  uint8: "transformers.js's uint8 is dynamic quantization with asymmetric uint8 weights, and slimformer's dynamic scheme writes symmetric int8 weights only; use q8 (or int8), which loads the same way",
  bnb4: 'bnb4 (bitsandbytes NF4 in MatMulBnb4) is not a scheme slimformer writes; use q4 (MatMulNBits)',
  fp32: 'fp32 is the input model itself (onnx/model.onnx)',
};

export const DTYPES = WRITTEN.map((v) => v.dtype);


/** `--dtype q4,q8`: the variants in the order given; an unknown, refused or repeated name is a user error. */
export function parseDtypes(value: string): DtypeVariant[] {
  const names = value.split(',').map((s) => s.trim());
  const out: DtypeVariant[] = [];
  for (const name of names) {
    const refused = REFUSED[name];
    if (refused) throw new UserError(`--dtype ${name} is not written: ${refused}`);
    const v = WRITTEN.find((w) => w.dtype === name);
    if (!v) throw new UserError(`unknown --dtype '${name}' (choose from ${DTYPES.join(', ')}, separated by commas)`);
    if (out.includes(v)) throw new UserError(`--dtype names ${name} twice`);
    out.push(v);
  }
  return out;
}

/** Where a variant of `modelFile` goes: beside it, named as transformers.js loads it (model.onnx, q4 -> model_q4.onnx). */
export function variantFile(modelFile: string, v: DtypeVariant): string {
  const base = path.basename(modelFile, '.onnx');
  return path.join(path.dirname(modelFile), `${base}${v.suffix}.onnx`);
}
