import type { Node } from '../ir/node.js';
import type { Value } from '../ir/value.js';
import { classifyActivation, ELEMENTWISE, gatedName } from './activation.js';
import { isConstant } from './constants.js';
import type { LinearIndex } from './linear.js';
import { fail, nodeLabel, type NoMatch } from './match.js';
import type { SymbolicShapes } from './infer-shapes.js';
import type { HeadSite, LinearLayer, Mlp } from './structure.js';
import { isNumber, symEqual } from './symbolic.js';

const MAX_REGION = 48;

/**
 * Matches fc1 -> activation -> fc2 starting at `first` (fc1, or the gate of a gated MLP). The
 * activation is the set of elementwise nodes on the paths from first's output to fc2's input;
 * a gated MLP has one more value entering that set, the output of an "up" linear that reads
 * the same input. Returns undefined when there is no nonlinearity between two linears (not an
 * MLP), NoMatch when there is one but the rest does not fit.
 */
export function matchMlp(first: LinearLayer, linears: LinearIndex, shapes?: SymbolicShapes): Mlp | NoMatch | undefined {
  const x = first.output;
  const { region: reached, fc2s, gateInput, stopped } = elementwiseRegion(first, linears, shapes);
  if (fc2s.size === 0) return unknownActivation(first, stopped, linears);
  if (fc2s.size > 1) {
    return fail(first.node, `its output reaches ${fc2s.size} linear layers through elementwise ops (${[...fc2s].map((l) => l.name).join(', ')})`);
  }
  const fc2 = [...fc2s][0]!;
  // a sublayer returns to the model width; linear-act-linear that does not is a head (pooler -> classifier)
  if (fc2.outFeatures !== first.inFeatures) return undefined;
  const region = ancestorsWithin(fc2.input, reached);
  const gateMul = gateInput ? region.find((n) => n.inputs.includes(gateInput)) : undefined;
  const guess = classifyActivation(region.filter((n) => n !== gateMul && n.opType !== 'Reshape'), x);
  if (guess === undefined) return undefined;
  const between = `the activation between '${first.name}' and '${fc2.name}'`;
  if ('unknown' in guess) return fail(first.node, `${between} is not recognised (ops ${guess.unknown.join(', ')})`);
  for (const n of region) {
    for (const o of n.outputs) {
      // Shape readers (torch's x.size() for a view) read only dims
      const escape = o.consumers().find((c) => !region.includes(c) && c !== fc2.node && c.opType !== 'Shape');
      if (escape || o.isGraphOutput()) {
        return fail(first.node, `the activation value '${o.name}' is also read by ${escape ? `'${nodeLabel(escape)}'` : 'the graph outputs'}`);
      }
    }
  }
  let fc1 = first;
  let gate: LinearLayer | undefined;
  let activation = guess.name;
  if (gateMul) {
    const up = linears.producing(gateInput)!;
    if (up.outFeatures !== first.outFeatures) {
      return fail(first.node, `gate '${first.name}' has ${first.outFeatures} outputs but up projection '${up.name}' has ${up.outFeatures}`);
    }
    fc1 = up;
    gate = first;
    activation = gatedName(activation);
  }
  if (fc2.inFeatures !== fc1.outFeatures) {
    return fail(first.node, `'${fc2.name}' reads ${fc2.inFeatures} features but '${fc1.name}' writes ${fc1.outFeatures}`);
  }
  return { fc1, gate, fc2, activation, activationNodes: region, width: fc1.outFeatures, widthSites: widthSites(region, shapes), input: fc1.input, output: fc2.output };
}

/** The last entry of each view inside the MLP (HF Conv1D's x.view(size_out)) when it states the width. */
function widthSites(region: readonly Node[], shapes: SymbolicShapes | undefined): HeadSite[] {
  const sites: HeadSite[] = [];
  for (const n of region) {
    if (n.opType !== 'Reshape') continue;
    const target = shapes?.value(n.input(1));
    const last = target?.[target.length - 1];
    if (last && isNumber(last) && last.c > 0) sites.push({ node: n, slot: 1, entry: target!.length - 1 });
  }
  return sites;
}

/** A Reshape that keeps the last axis (the neurons) and only regroups the tokens in front of it. */
function keepsLastAxis(n: Node, shapes: SymbolicShapes | undefined): boolean {
  const a = shapes?.shape(n.input(0))?.at(-1);
  const b = shapes?.shape(n.output(0))?.at(-1);
  return n.opType === 'Reshape' && !!a && symEqual(a, b);
}

/**
 * fc1 -> an op discovery does not know -> a linear back to fc1's input width: an MLP whose
 * activation is not recognised, recorded with the op and node (otherwise the block would show
 * no MLP and no reason). Only a linear reading the op's output directly counts, so attention
 * projections (Reshape, Transpose, MatMul of two activations) are not taken for one.
 */
function unknownActivation(first: LinearLayer, stopped: Set<Node>, linears: LinearIndex): NoMatch | undefined {
  for (const op of stopped) {
    for (const o of op.outputs) {
      const fc2 = o.consumers().map((c) => linears.atNode(c)).find((l) => l?.input === o && l.inFeatures === first.outFeatures && l.outFeatures === first.inFeatures);
      if (fc2) return fail(first.node, `the activation between '${first.name}' and '${fc2.name}' is not recognised (op ${op.domain && op.domain !== 'ai.onnx' ? `${op.domain}.` : ''}${op.opType} '${nodeLabel(op)}' is not an elementwise op slimformer knows)`);
    }
  }
  return undefined;
}

/**
 * The elementwise nodes computed from `first`'s output alone (besides constants), the
 * linear layers that read them, and the other ops that read them (`stopped`). One Mul may also read the output of another linear layer
 * with the same input: the "up" projection of a gated MLP.
 */
function elementwiseRegion(first: LinearLayer, linears: LinearIndex, shapes?: SymbolicShapes): { region: Set<Node>; fc2s: Set<LinearLayer>; gateInput?: Value; stopped: Set<Node> } {
  const region = new Set<Node>();
  const stopped = new Set<Node>();
  const fc2s = new Set<LinearLayer>();
  const known = new Set<Value>([first.output]);
  let gateInput: Value | undefined;
  const queue: Value[] = [first.output];
  while (queue.length > 0 && region.size < MAX_REGION) {
    const v = queue.shift()!;
    for (const c of v.consumers()) {
      const l = linears.atNode(c);
      if (l && l.input === v) {
        if (v !== first.output) fc2s.add(l);
        continue;
      }
      if (c.opType === 'Reshape' && c.input(0) === v && keepsLastAxis(c, shapes)) {
        // HF Conv1D views tokens flat around its addmm: the neuron axis stays last
        if (!region.has(c)) {
          region.add(c);
          known.add(c.output(0));
          queue.push(c.output(0));
        }
        continue;
      }
      if (!ELEMENTWISE.has(c.opType)) stopped.add(c);
      if (!ELEMENTWISE.has(c.opType) || region.has(c)) continue;
      const pending = c.inputs.filter((i): i is Value => !!i && !known.has(i) && !isConstant(i));
      if (pending.length === 1 && !gateInput && c.opType === 'Mul' && linears.producing(pending[0])?.input === first.input) {
        gateInput = pending[0];
      } else if (pending.length > 0) {
        continue; // reads something not computed from first's output (yet): not part of it
      }
      region.add(c);
      for (const o of c.outputs) {
        known.add(o);
        queue.push(o);
      }
    }
  }
  return { region, fc2s, gateInput, stopped };
}

/** Nodes of `within` from which `v` can be reached, in the order they were added to `within`. */
function ancestorsWithin(v: Value, within: Set<Node>): Node[] {
  const found = new Set<Node>();
  const stack = [v];
  while (stack.length > 0) {
    const p = stack.pop()!.producer();
    if (!p || !within.has(p) || found.has(p)) continue;
    found.add(p);
    for (const i of p.inputs) if (i) stack.push(i);
  }
  return [...within].filter((n) => found.has(n));
}
