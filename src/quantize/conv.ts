import { attrString } from '../ir/attribute.js';
import { constantSource, constantTensor } from '../discover/constants.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';

/**
 * A 2-D Conv with a constant float weight (a ViT's patch embedding, usually), quantized as an
 * integer kernel: QLinearConv (static schemes), ConvInteger (dynamic), or, when it is a patch
 * embedding (`patch` set), as the equivalent MatMul over patches for weight-only schemes.
 */
export interface ConvLayer {
  /** Module-like name: "conv_proj" from torch's "/conv_proj/Conv", else the weight's name without ".weight". */
  name: string;
  node: Node;
  /** The value holding the weight, [out, in/group, kh, kw]. */
  weight: Value;
  bias?: Value;
  outChannels: number;
  /** Inputs of one output channel: in/group · kh · kw (a row of the weight seen as [out, k]). */
  k: number;
  /** Set when kernel == stride, no padding, dilation or groups, and the input's C, H, W are fixed and H, W divisible by the kernel. */
  patch?: PatchGeometry;
  /** Why `patch` is not set (for weight-only schemes, which need it). */
  notPatch?: string;
}

/** A Conv that cuts [B, C, H, W] into non-overlapping kh x kw patches: one MatMul row per patch. */
export interface PatchGeometry {
  channels: number;
  height: number;
  width: number;
  kh: number;
  kw: number;
}

export interface ConvSelection {
  convs: ConvLayer[];
  skipped: { name: string; reason: string }[];
}

/**
 * Every Conv of the main graph: those with a constant float32 2-D weight become ConvLayers,
 * every other one is skipped with the reason (nothing is left float without a word). A
 * ConvTranspose with a constant weight is listed as skipped too.
 */
export function findConvs(model: Model): ConvSelection {
  const out: ConvSelection = { convs: [], skipped: [] };
  for (const n of model.graph.nodes) {
    if (n.domain !== '' || (n.opType !== 'Conv' && n.opType !== 'ConvTranspose')) continue;
    const name = convName(n);
    if (n.opType === 'ConvTranspose') {
      if (constantTensor(n.input(1))) out.skipped.push({ name, reason: `ConvTranspose '${n.name}' has no integer kernel in onnxruntime; kept in float` });
      continue;
    }
    const w = constantTensor(n.input(1));
    if (!w) {
      out.skipped.push({ name, reason: `Conv '${n.name}': the weight is not a constant; kept in float` });
      continue;
    }
    if (w.dtype !== DataType.FLOAT) {
      out.skipped.push({ name, reason: `Conv '${n.name}': weight '${n.input(1)!.name}' is not float32; kept in float` });
      continue;
    }
    if (w.dims.length !== 4) {
      out.skipped.push({ name, reason: `Conv '${n.name}' is ${w.dims.length - 2}-D; only 2-D Convs are written as integer kernels (QLinearConv fuses those); kept in float` });
      continue;
    }
    const bias = n.input(2) ? constantSource(n.input(2)) : undefined;
    if (n.input(2) && (!bias || constantTensor(bias)!.dtype !== DataType.FLOAT)) {
      out.skipped.push({ name, reason: `Conv '${n.name}': the bias is not a float32 constant; kept in float` });
      continue;
    }
    const [o, ci, kh, kw] = w.dims as [number, number, number, number];
    const layer: ConvLayer = { name, node: n, weight: constantSource(n.input(1))!, bias, outChannels: o, k: ci * kh * kw };
    const p = patchGeometry(n, w.dims as number[]);
    if (typeof p === 'string') layer.notPatch = p;
    else layer.patch = p;
    out.convs.push(layer);
  }
  uniqueNames(out.convs);
  return out;
}

function convName(n: Node): string {
  const m = /^\/(.+)\/Conv(_\d+)?$/.exec(n.name);
  if (m) return m[1]!.replace(/\//g, '.');
  const w = n.input(1)?.name ?? '';
  if (/\.weight$/.test(w)) return w.slice(0, -'.weight'.length);
  return n.name || n.output(0).name;
}

function uniqueNames(convs: ConvLayer[]): void {
  const seen = new Map<string, number>();
  for (const c of convs) {
    const k = seen.get(c.name) ?? 0;
    seen.set(c.name, k + 1);
    if (k > 0) c.name = `${c.name}_${k}`;
  }
}

/** The patch geometry of a Conv, or why it is not a patch embedding. */
function patchGeometry(n: Node, wDims: number[]): PatchGeometry | string {
  const [, ci, kh, kw] = wDims as [number, number, number, number];
  const strides = n.intsAttr('strides') ?? [1, 1];
  const pads = n.intsAttr('pads') ?? [0, 0, 0, 0];
  const dilations = n.intsAttr('dilations') ?? [1, 1];
  const autoPad = attrString(n.attr('auto_pad')) ?? 'NOTSET';
  const group = n.intAttr('group', 1);
  if (strides[0] !== kh || strides[1] !== kw) return `its stride [${strides.join(',')}] is not its kernel [${kh},${kw}] (patches overlap or leave gaps)`;
  if (pads.some((p) => p !== 0) || (autoPad !== 'NOTSET' && autoPad !== 'VALID')) return 'it pads its input';
  if (dilations.some((d) => d !== 1)) return 'it is dilated';
  if (group !== 1) return `it has ${group} groups`;
  const shape = n.input(0)!.shape;
  if (!shape || shape.length !== 4) return `the shape of its input '${n.input(0)!.name}' is not known as [batch, channels, height, width]`;
  const [, c, h, w] = shape;
  if (typeof c !== 'number' || typeof h !== 'number' || typeof w !== 'number') return `its input '${n.input(0)!.name}' has no fixed channels, height and width ([${shape.map((d) => d ?? '?').join(',')}])`;
  if (c !== ci) return `its input has ${c} channels, its weight ${ci}`;
  if (h % kh !== 0 || w % kw !== 0) return `its input's ${h}x${w} pixels are not whole ${kh}x${kw} patches`;
  return { channels: c, height: h, width: w, kh, kw };
}
