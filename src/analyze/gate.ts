import type { AnalysisResult } from './analyze.js';

export interface AnalysisGate {
  maxKurtosis?: number;
  maxInfNorm?: number;
}

export interface GateOutcome {
  passed: boolean;
  failures: string[];
}

/** Checks the analysis against CI limits: the largest per-layer kurtosis and inf norm. */
export function gateAnalysis(r: AnalysisResult, gate: AnalysisGate): GateOutcome {
  const failures: string[] = [];
  if (gate.maxKurtosis !== undefined && r.summary.maxKurtosis > gate.maxKurtosis) {
    failures.push(`kurtosis ${r.summary.maxKurtosis.toFixed(2)} at ${r.summary.maxKurtosisLayer} exceeds --max-kurtosis ${gate.maxKurtosis}`);
  }
  if (gate.maxInfNorm !== undefined && r.summary.maxInfNorm > gate.maxInfNorm) {
    failures.push(`inf norm ${r.summary.maxInfNorm.toFixed(3)} at ${r.summary.maxInfNormLayer} exceeds --max-inf-norm ${gate.maxInfNorm}`);
  }
  return { passed: failures.length === 0, failures };
}
