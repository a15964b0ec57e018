import type { Attribute } from './attribute.js';
import type { Graph } from './graph.js';
import type { Value } from './value.js';

/**
 * An operator application. Inputs may be absent (an empty name in ONNX, for skipped optional
 * inputs): those slots hold `undefined`. Changing inputs through setInput keeps the inputs'
 * use lists right.
 */
export class Node {
  opType: string;
  domain: string;
  name: string;
  docString = '';
  /** Set when the node calls a function overload (ONNX IR 10). */
  overload = '';
  readonly attributes = new Map<string, Attribute>();
  /** Free-form data for passes; never serialized. */
  readonly meta = new Map<string, unknown>();
  /** @internal */ inputList: (Value | undefined)[] = [];
  /** @internal */ outputList: Value[] = [];
  /** @internal */ owner: Graph | undefined;

  constructor(opType: string, options: { domain?: string; name?: string; inputs?: (Value | undefined)[]; outputs?: Value[]; attributes?: Record<string, Attribute> } = {}) {
    this.opType = opType;
    this.domain = options.domain ?? '';
    this.name = options.name ?? '';
    for (const v of options.inputs ?? []) this.appendInput(v);
    for (const v of options.outputs ?? []) this.appendOutput(v);
    for (const [k, a] of Object.entries(options.attributes ?? {})) this.attributes.set(k, a);
  }

  get inputs(): readonly (Value | undefined)[] {
    return this.inputList;
  }

  get outputs(): readonly Value[] {
    return this.outputList;
  }

  get graph(): Graph | undefined {
    return this.owner;
  }

  input(i: number): Value | undefined {
    return this.inputList[i];
  }

  output(i: number): Value {
    const v = this.outputList[i];
    if (!v) throw new Error(`node '${this.name}' (${this.opType}) has no output ${i}`);
    return v;
  }

  setInput(index: number, value: Value | undefined): void {
    const old = this.inputList[index];
    if (old) {
      const k = old.useList.findIndex((u) => u.node === this && u.index === index);
      if (k >= 0) old.useList.splice(k, 1);
    }
    this.inputList[index] = value;
    if (value) value.useList.push({ node: this, index });
  }

  appendInput(value: Value | undefined): void {
    this.inputList.push(undefined);
    this.setInput(this.inputList.length - 1, value);
  }

  /** Drops every input link (used when the node leaves the graph). */
  clearInputs(): void {
    for (let i = 0; i < this.inputList.length; i++) this.setInput(i, undefined);
    this.inputList = [];
  }

  appendOutput(value: Value): void {
    if (value.producerNode && value.producerNode !== this) {
      throw new Error(`value '${value.name}' is already produced by node '${value.producerNode.name}'`);
    }
    value.producerNode = this;
    value.producerIndex = this.outputList.length;
    this.outputList.push(value);
    if (this.owner) this.owner.adoptValue(value);
  }

  attr(name: string): Attribute | undefined {
    return this.attributes.get(name);
  }

  /** Integer attribute value, or `fallback` when absent. */
  intAttr(name: string, fallback: number): number;
  intAttr(name: string): number | undefined;
  intAttr(name: string, fallback?: number): number | undefined {
    const a = this.attributes.get(name);
    return a?.type === 'int' ? a.value : fallback;
  }

  floatAttr(name: string, fallback: number): number;
  floatAttr(name: string): number | undefined;
  floatAttr(name: string, fallback?: number): number | undefined {
    const a = this.attributes.get(name);
    return a?.type === 'float' ? a.value : fallback;
  }

  intsAttr(name: string): number[] | undefined {
    const a = this.attributes.get(name);
    return a?.type === 'ints' ? a.value : undefined;
  }

  /** Subgraphs held in attributes (If, Loop, Scan bodies). */
  subgraphs(): Graph[] {
    const out: Graph[] = [];
    for (const a of this.attributes.values()) {
      if (a.type === 'graph') out.push(a.value);
      else if (a.type === 'graphs') out.push(...a.value);
    }
    return out;
  }

  toString(): string {
    const ins = this.inputList.map((v) => (v ? v.toString() : '<none>')).join(', ');
    const outs = this.outputList.map((v) => v.toString()).join(', ');
    return `${outs} = ${this.domain ? this.domain + '.' : ''}${this.opType}(${ins})${this.name ? '  # ' + this.name : ''}`;
  }
}

