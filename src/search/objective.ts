import { UserError } from '../errors.js';

/**
 * What auto mode optimizes among the candidates that pass the accuracy limit:
 *  - size:     the smallest model (latency is not measured during the search);
 *  - latency:  the fastest model as deployed on this machine; candidates within the noise
 *              margin of the fastest count as tied, and the smallest of them wins;
 *  - balanced: the smallest model that runs no slower than float (within the margin); when
 *              every candidate is slower, the fastest.
 */
export const OBJECTIVES = ['size', 'latency', 'balanced'] as const;
export type Objective = (typeof OBJECTIVES)[number];

export function parseObjective(s: string): Objective {
  if ((OBJECTIVES as readonly string[]).includes(s)) return s as Objective;
  throw new UserError(`--objective takes ${OBJECTIVES.join(', ')}, not '${s}'`);
}

/** A passing trial with its measured median latency. */
export interface TimedCandidate {
  index: number;
  bytes: number;
  latencyMs: number;
}

export interface ObjectiveChoice {
  index: number;
  /** One sentence on why this candidate won (printed and written to the report). */
  reason: string;
  /** Whether the winner's median beat float's by more than the margin. */
  fasterThanFloat: boolean;
}

/**
 * Picks the candidate `objective` asks for. `margin` is relative (0.05: 5%): on a shared
 * machine two medians closer than that are not told apart, so ties go to the smaller model.
 * Returns undefined when there is no candidate.
 */
export function chooseByObjective(objective: Objective, candidates: readonly TimedCandidate[], floatMs: number, margin: number): ObjectiveChoice | undefined {
  if (candidates.length === 0) return undefined;
  const smallest = (xs: readonly TimedCandidate[]): TimedCandidate => xs.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  const fastest = candidates.reduce((a, b) => (b.latencyMs < a.latencyMs ? b : a));
  const vsFloat = (c: TimedCandidate): string => `${c.latencyMs.toFixed(3)} ms, float ${floatMs.toFixed(3)} ms`;
  const faster = (c: TimedCandidate): boolean => c.latencyMs < floatMs * (1 - margin);
  if (objective === 'size') {
    const c = smallest(candidates);
    return { index: c.index, reason: 'the smallest passing model', fasterThanFloat: faster(c) };
  }
  if (objective === 'latency') {
    const c = smallest(candidates.filter((x) => x.latencyMs <= fastest.latencyMs * (1 + margin)));
    const tie = c !== fastest ? ` (within ${margin * 100}% of the fastest, trial ${fastest.index}, and smaller)` : '';
    return { index: c.index, reason: `the fastest passing model${tie}: ${vsFloat(c)}`, fasterThanFloat: faster(c) };
  }
  const notSlower = candidates.filter((x) => x.latencyMs <= floatMs * (1 + margin));
  if (notSlower.length === 0) return { index: fastest.index, reason: `every passing model ran slower than float by more than ${margin * 100}%: kept the fastest (${vsFloat(fastest)})`, fasterThanFloat: false };
  const c = smallest(notSlower);
  return { index: c.index, reason: `the smallest passing model no slower than float (within ${margin * 100}%): ${vsFloat(c)}`, fasterThanFloat: faster(c) };
}
