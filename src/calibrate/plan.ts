/**
 * How to fetch full activations within a memory budget: the batch size, and the tensors split
 * into groups that each get their own pass over the data when one sample's tensors alone are
 * over the budget.
 */
export interface ExposurePlan {
  batchSize: number;
  groups: string[][];
}

/**
 * `bytesPerSample`: bytes each tensor takes for one sample, in the order to keep. Prefers
 * smaller batches to more passes (a pass costs a forward pass over the whole dataset).
 */
export function planExposure(bytesPerSample: Map<string, number>, budgetBytes: number, batchSize: number): ExposurePlan {
  const names = [...bytesPerSample.keys()];
  const total = [...bytesPerSample.values()].reduce((a, b) => a + b, 0);
  const wanted = Math.max(1, Math.floor(batchSize));
  if (names.length === 0) return { batchSize: wanted, groups: [] };
  if (total * wanted <= budgetBytes) return { batchSize: wanted, groups: [names] };
  if (total <= budgetBytes) return { batchSize: Math.max(1, Math.floor(budgetBytes / total)), groups: [names] };
  const groups: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const n of names) {
    const b = bytesPerSample.get(n)!;
    if (current.length > 0 && bytes + b > budgetBytes) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(n);
    bytes += b;
  }
  groups.push(current);
  return { batchSize: 1, groups };
}
