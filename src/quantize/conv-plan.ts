import type { LinearLayer } from '../discover/structure.js';
import { convToPatchMatMul } from '../export/patch-matmul.js';
import type { Graph } from '../ir/graph.js';
import type { ConvLayer } from './conv.js';
import { isStatic, type Scheme } from './scheme.js';
import type { Selection } from './select.js';

/** How a Conv is quantized: rewritten as a MatMul over patches (then a linear layer), or static QDQ fused into QLinearConv. */
export type ConvForm = 'patch MatMul' | 'QLinearConv';

export interface ConvPlan {
  /** The linear layers written for patch-embedding Convs (already in `sel.linears`), with the Conv output's name they keep. */
  patchLinears: Map<LinearLayer, string>;
  /** Convs to write as QLinearConv (static schemes, Convs that are not patch embeddings). */
  qlinear: ConvLayer[];
  /** Every quantized Conv and its form, for the report. */
  forms: { conv: ConvLayer; form: ConvForm }[];
}

/**
 * Decides each selected Conv's form and rewrites the patch embeddings. A patch embedding
 * (kernel == stride, no padding, dilation or groups) becomes the equal MatMul over patches
 * under every scheme: it is then quantized as any linear (MatMulIntegerToFloat, dynamic
 * MatMul, MatMulNBits, GPTQ, FlexRound) and its output is not requantized. Measured with
 * onnxruntime-node 1.30 CPU (docs/quantize.md): the QDQ Conv fuses into QLinearConv only with
 * its output requantized to 8 bits per tensor, which cost tv_vit_mnist 17 dB of output SQNR,
 * and ConvInteger (the integer Conv with a float output) ran 2 to 5 times slower than the
 * float Conv.
 * Other 2-D Convs are written as QLinearConv under static schemes and skipped (with the
 * reason) under dynamic and weight-only ones. The patch linears go to the front of
 * `sel.linears`; skipped Convs to `sel.skipped`; `sel.convs` is left as it was.
 */
export function planConvs(g: Graph, sel: Selection, scheme: Scheme): ConvPlan {
  const plan: ConvPlan = { patchLinears: new Map(), qlinear: [], forms: [] };
  for (const c of sel.convs) {
    if (c.patch) {
      const outName = c.node.output(0).name;
      plan.patchLinears.set(convToPatchMatMul(g, c), outName);
      plan.forms.push({ conv: c, form: 'patch MatMul' });
    } else if (isStatic(scheme)) {
      plan.qlinear.push(c);
      plan.forms.push({ conv: c, form: 'QLinearConv' });
    } else {
      const why =
        scheme === 'dynamic'
          ? 'onnxruntime has no fused dynamic Conv, and its ConvInteger ran slower than the float Conv (docs/quantize.md); a static scheme writes it as QLinearConv'
          : 'weight-only schemes write MatMulNBits, which has no Conv form; a static scheme writes it as QLinearConv';
      sel.skipped.push({ name: c.name, reason: `Conv '${c.node.name}' is not a patch embedding that a MatMul over patches computes (${c.notPatch}), and ${why}; kept in float` });
    }
  }
  sel.linears.unshift(...plan.patchLinears.keys());
  return plan;
}
