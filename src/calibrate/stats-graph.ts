import type { Attribute } from '../ir/attribute.js';
import { DataType } from '../ir/dtype.js';
import type { Model } from '../ir/model.js';
import { Tensor } from '../ir/tensor.js';
import type { Value } from '../ir/value.js';

/** Names of the small outputs that summarize one tensor inside the graph. */
export interface TensorStatOutputs {
  /** Minimum and maximum: a scalar, or one per channel. */
  min?: string;
  max?: string;
  /** NaN when the tensor holds NaN or an infinity, else 0 (sum of x * 0). */
  nonFinite?: string;
  /** The tensor's shape (int64). */
  shape: string;
}

export interface StatRequest {
  name: string;
  /** Compute min, max and the finiteness check (else only the shape). */
  reduce: boolean;
  /** Per-channel reduction over this axis (negative counts from the end); per-tensor when undefined. */
  channelAxis?: number;
}

// "to the end" for Slice (any bound past the last dimension is clamped)
const INT64_MAX = Number.MAX_SAFE_INTEGER;

/**
 * Adds, to a copy of the model, nodes that reduce each requested tensor to its min and max
 * (as onnxruntime's MinMaxCalibrater does) and a finiteness check, and makes them graph
 * outputs, so only a few numbers per tensor come back from onnxruntime instead of the
 * activations. Works without shape information: a per-channel reduction reshapes the tensor
 * to [-1, C, inner] from its runtime shape. The caller's model is not touched.
 */
export function withStatistics(model: Model, requests: StatRequest[]): { model: Model; outputs: Map<string, TensorStatOutputs> } {
  const m = model.clone();
  const g = m.graph;
  const opset = m.opset;
  const outputs = new Map<string, TensorStatOutputs>();
  const prefix = 'slimformer_calibration';
  const constant = (base: string, dtype: DataType, dims: number[], values: number[]): Value =>
    g.addInitializer(Tensor.from(g.uniqueName(`${prefix}/${base}`), dtype, dims, values));
  const ints = (base: string, values: number[]): Value => constant(base, DataType.INT64, [values.length], values);
  const op = (type: string, inputs: Value[], name: string, attributes: Record<string, Attribute> = {}): Value =>
    g.addNode(type, inputs, [g.uniqueName(`${prefix}/${name}`)], { name: g.uniqueNodeName(`${prefix}/${name}`), attributes }).output(0);
  const keep0: Record<string, Attribute> = { keepdims: { type: 'int', value: 0 } };
  /** ReduceMin/Max/Prod over `axes` (all when undefined), in the form of the model's opset. */
  const reduce = (type: string, x: Value, name: string, axes: number[] | undefined, keepdims = 0): Value => {
    const attributes: Record<string, Attribute> = { keepdims: { type: 'int', value: keepdims } };
    if (!axes) return op(type, [x], name, attributes);
    if (opset >= 18) return op(type, [x, ints(`${name}_axes`, axes)], name, attributes);
    return op(type, [x], name, { ...attributes, axes: { type: 'ints', value: axes } });
  };
  const zero = constant('zero', DataType.FLOAT, [], [0]);
  const output = (v: Value): string => {
    g.outputs.push(v);
    return v.name;
  };

  requests.forEach((req, i) => {
    const v = g.value(req.name);
    if (!v) throw new Error(`no tensor '${req.name}'`);
    const shape = op('Shape', [v], `${i}/shape`);
    const out: TensorStatOutputs = { shape: output(shape) };
    if (req.reduce) {
      const x = op('Cast', [v], `${i}/float`, { to: { type: 'int', value: DataType.FLOAT } });
      let r = x;
      let axes: number[] | undefined;
      const a = req.channelAxis;
      if (a !== undefined) {
        const channels = op('Slice', [shape, ints(`${i}/axis`, [a]), ints(`${i}/axis_end`, [a === -1 ? INT64_MAX : a + 1])], `${i}/channels`);
        const parts = [ints(`${i}/rest`, [-1]), channels];
        if (a !== -1) {
          const after = op('Slice', [shape, ints(`${i}/after`, [a + 1]), ints(`${i}/end`, [INT64_MAX])], `${i}/after`);
          const withOne = op('Concat', [ints(`${i}/one`, [1]), after], `${i}/after_one`, { axis: { type: 'int', value: 0 } });
          parts.push(reduce('ReduceProd', withOne, `${i}/inner`, undefined, 1));
        }
        const target = op('Concat', parts, `${i}/target`, { axis: { type: 'int', value: 0 } });
        r = op('Reshape', [x, target], `${i}/by_channel`);
        axes = a === -1 ? [0] : [0, 2];
      }
      out.min = output(reduce('ReduceMin', r, `${i}/min`, axes));
      out.max = output(reduce('ReduceMax', r, `${i}/max`, axes));
      out.nonFinite = output(op('ReduceSum', [op('Mul', [x, zero], `${i}/times_zero`)], `${i}/non_finite`, keep0));
    }
    outputs.set(req.name, out);
  });
  return { model: m, outputs };
}
