/**
 * McNemar's exact test for two classifiers scored on the same samples: only the samples where
 * they disagree about correctness count (b: only the first is right, c: only the second is).
 * Under "equally accurate" each such sample is a fair coin, so the two-sided p-value is
 * min(1, 2 · P(X ≤ min(b, c))) for X ~ Binomial(b + c, 1/2). A top1 difference of a few samples
 * out of thousands is usually far from significant; this says how far.
 */
export interface McNemar {
  /** Samples only the first classifier gets right. */
  firstOnly: number;
  /** Samples only the second classifier gets right. */
  secondOnly: number;
  /** Two-sided exact p-value (1 when they never disagree). */
  p: number;
}

export function mcnemarExact(firstCorrect: ArrayLike<boolean | number>, secondCorrect: ArrayLike<boolean | number>): McNemar {
  if (firstCorrect.length !== secondCorrect.length) throw new Error(`McNemar: ${firstCorrect.length} and ${secondCorrect.length} samples; the classifiers must be scored on the same samples`);
  let b = 0;
  let c = 0;
  for (let i = 0; i < firstCorrect.length; i++) {
    const x = Boolean(firstCorrect[i]);
    const y = Boolean(secondCorrect[i]);
    if (x && !y) b++;
    else if (!x && y) c++;
  }
  return { firstOnly: b, secondOnly: c, p: binomialTwoSided(b, c) };
}

/** The sign test of two paired measurements where lower is better: ties are dropped. */
export interface SignTest {
  /** Samples where the first value is lower. */
  firstLower: number;
  /** Samples where the second value is lower. */
  secondLower: number;
  /** Two-sided exact p-value under "either is lower with probability 1/2" (1 when all tie). */
  p: number;
}

/**
 * Exact two-sided sign test of paired per-sample values (e.g. each sample's KL to the float model
 * under two compressions): it asks only which one is lower on each sample, so a few large values
 * cannot decide it the way they can decide a difference of means.
 */
export function signTest(first: ArrayLike<number>, second: ArrayLike<number>): SignTest {
  if (first.length !== second.length) throw new Error(`sign test: ${first.length} and ${second.length} values; the measurements must be paired`);
  let b = 0;
  let c = 0;
  for (let i = 0; i < first.length; i++) {
    if (first[i]! < second[i]!) b++;
    else if (second[i]! < first[i]!) c++;
  }
  return { firstLower: b, secondLower: c, p: binomialTwoSided(b, c) };
}

/** min(1, 2 · P(X ≤ min(b, c))), X ~ Binomial(b + c, 1/2), summed in log space (n may be thousands). */
function binomialTwoSided(b: number, c: number): number {
  const n = b + c;
  if (n === 0) return 1;
  const k = Math.min(b, c);
  // log C(n, i) built up term by term: C(n, i) = C(n, i-1) · (n - i + 1) / i
  let logTerm = -n * Math.LN2;
  let tail = Math.exp(logTerm);
  for (let i = 1; i <= k; i++) {
    logTerm += Math.log(n - i + 1) - Math.log(i);
    tail += Math.exp(logTerm);
  }
  return Math.min(1, 2 * tail);
}
