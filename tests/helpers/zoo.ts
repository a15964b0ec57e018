import * as fs from 'node:fs';
import * as path from 'node:path';

/** One model of the zoo of real exporter output (fixtures/zoo/manifest*.json). */
export interface ZooModel {
  name: string;
  /** Path relative to the repository root. */
  file: string;
  family: string;
  task: 'classification' | 'lm' | string;
  trained: boolean;
  calib?: string;
  eval?: string;
  metrics?: Record<string, number>;
  /** Present for models saved after onnxruntime's graph optimizer. */
  optimizedFrom?: string;
}

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Every zoo model listed by the manifests, whose file exists; [] when the zoo is absent. */
export function zooModels(): ZooModel[] {
  const dir = path.join(ROOT, 'fixtures/zoo');
  if (!fs.existsSync(dir)) return [];
  const out: ZooModel[] = [];
  for (const f of fs.readdirSync(dir).filter((x) => /^manifest.*\.json$/.test(x)).sort()) {
    const doc = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { models?: ZooModel[] } | ZooModel[];
    const models = Array.isArray(doc) ? doc : (doc.models ?? []);
    for (const m of models) if (fs.existsSync(path.join(ROOT, m.file)) && !out.some((x) => x.name === m.name)) out.push(m);
  }
  return out;
}

export function zooPath(rel: string): string {
  return path.join(ROOT, rel);
}
