import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { zooModels, zooPath } from '../helpers/zoo.js';
import { COLUMNS, matrixMarkdown, supportMatrix } from './support-matrix.js';

// docs/architectures.md is this test's output: every pass on every zoo model. The test fails
// when the committed file differs from what the passes give today; UPDATE_MATRIX=1 rewrites it.
// MATRIX_ONLY=name1,name2 runs those models alone (for a look; the comparison is then skipped).
const FILE = zooPath('docs/architectures.md');
const only = process.env.MATRIX_ONLY?.split(',');
const models = zooModels().filter((m) => !only || only.includes(m.name) || only.includes("all"));

describe.skipIf(models.length === 0)('support matrix of docs/architectures.md', () => {
  it(
    'every pass on every zoo model works, fails a named check or is skipped with the reason, as committed',
    async () => {
      const rows = await supportMatrix({
        models,
        onCell: process.env.MATRIX_VERBOSE ? (m, c, cell) => console.log(`${cell.seconds.toFixed(1).padStart(5)}s ${m} × ${c}: ${cell.status} ${cell.text}${cell.notes.length ? ` [${cell.notes.join('; ')}]` : ''}`) : undefined,
      });
      // every cell is decided, and a skipped cell carries a sentence
      for (const r of rows) {
        expect([...r.cells.keys()]).toEqual(COLUMNS.map((c) => c.id));
        for (const [id, cell] of r.cells) if (cell.status !== 'works') expect(cell.text.length, `${r.model.name} × ${id}`).toBeGreaterThan(10);
      }
      const markdown = matrixMarkdown(rows);
      if (only) return;
      if (process.env.UPDATE_MATRIX === '1') fs.writeFileSync(FILE, markdown);
      const committed = fs.existsSync(FILE) ? fs.readFileSync(FILE, 'utf8') : '';
      expect(committed, 'docs/architectures.md is stale: run UPDATE_MATRIX=1 SLIMFORMER_SKIP_BUILD=1 npx vitest run tests/zoo/support-matrix.test.ts').toBe(markdown);
    },
    600_000,
  );
});
