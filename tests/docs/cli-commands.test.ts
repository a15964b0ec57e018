// Every shell command of README.md and docs/*.md (tests/helpers/doc-commands.ts says which lines
// are commands and which markers apply) is run, and exits with the code the doc implies.
//
// Each doc file runs in its own temporary folder, its blocks in order in one bash (so a later
// block can use what an earlier one wrote, and `O=…` assignments carry over), with
// fixtures/, calibration/, examples/ and bin/ linked in so the doc's relative paths resolve;
// `/tmp/` in a command becomes that folder's tmp/, so nothing outside it is written (checked
// below). `slimformer` and `npx slimformer` run the built bin/slimformer.js; `npm start` and
// `npm run NAME` run package.json's script in that folder; any other npm or npx command, Python,
// pip and downloads (curl, wget) are refused: such a block needs a `<!-- not run: REASON -->` marker.
//
// SLIMFORMER_DOC_TIMES=1 prints each command's wall time and exit code; SLIMFORMER_DOC_LOGS=DIR
// keeps each command's output there (to refresh a transcript in a doc); SLIMFORMER_DOC_FILES=
// docs/a.md,docs/b.md runs only those files' commands.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docFiles, hiddenCommands, shellBlocksOf, type DocCommand, type ShellBlock } from '../helpers/doc-commands.js';
import { ROOT } from '../helpers/fixtures.js';
import { tempDir } from '../helpers/tmp.js';

const files = docFiles(ROOT);
const blocks: ShellBlock[] = files.flatMap((f) => shellBlocksOf(ROOT, f));
const toRun = blocks.filter((b) => b.notRun === undefined);
const commandsIn = (file: string): number => toRun.filter((b) => b.file === file).reduce((n, b) => n + b.commands.length, 0);
const only = process.env.SLIMFORMER_DOC_FILES?.split(',');
/** Docs whose commands a test of their own runs (on copies of the folders they write into, checking their tables too). */
const RUN_ELSEWHERE: Record<string, string> = { 'docs/byo.md': 'tests/docs/byo-commands.test.ts' };
/** The files with most commands start first, so that the two lanes end close together. */
const runFiles = [...new Set(toRun.filter((b) => b.commands.length > 0).map((b) => b.file))]
  .filter((f) => !only || only.includes(f))
  .filter((f) => !(f in RUN_ELSEWHERE) || !fs.existsSync(path.join(ROOT, RUN_ELSEWHERE[f]!)))
  .sort((a, b) => commandsIn(b) - commandsIn(a));
/** Doc files run at once, each command on THREADS onnxruntime threads (2 × 1 for 2 cores). */
const PARALLEL = 2;
const THREADS = 1;
const LINKED = ['fixtures', 'calibration', 'examples', 'bin'];

/**
 * Commands run lighter than the doc writes them, each with its reason. The command still runs
 * with every flag the doc gives (so they are parsed and used); only the added ones differ.
 */
const LIGHTER: { file: string; find: string; replace: string; why: string }[] = [
  { file: 'docs/flexround.md', find: '--method flexround', replace: '--method flexround --iters 50', why: '500 FlexRound steps per block take 5 to 20 s; 50 run the same code' },
  { file: 'docs/lm-eval.md', find: '--method flexround', replace: '--method flexround --iters 50', why: '500 FlexRound steps per block take 10 to 30 s; 50 run the same code' },
];
const lighter = (c: DocCommand): string => LIGHTER.filter((l) => c.where.startsWith(`${l.file}:`)).reduce((t, l) => t.replaceAll(l.find, l.replace), c.run);

interface Outcome {
  command: DocCommand;
  status: number | undefined;
  seconds: number;
  log: string;
}

/** The shell functions that stand in for the installed package. */
const PRELUDE = String.raw`
slimformer() { "$DOC_NODE" "$DOC_ROOT/bin/slimformer.js" "$@"; }
npx() {
  if [ "$1" = slimformer ]; then shift; slimformer "$@"; return; fi
  echo "doc test: 'npx $1' is not run here; mark its block <!-- not run: REASON -->" >&2; return 127
}
npm() {
  local name
  case "$1" in start) name=start ;; run) name="$2" ;;
    *) echo "doc test: 'npm $1' is not run here; mark its block <!-- not run: REASON -->" >&2; return 127 ;;
  esac
  local script
  script=$("$DOC_NODE" -e 'const s = require(process.argv[1]).scripts[process.argv[2]]; if (!s) process.exit(1); console.log(s)' "$DOC_ROOT/package.json" "$name") || { echo "doc test: no npm script '$name'" >&2; return 127; }
  eval "$script"
}
# Python, pip and downloads are not part of this test's world (no network, no Optimum)
for tool in python python3 pip pip3 optimum-cli huggingface-cli curl wget; do
  eval "$tool() { echo \"doc test: '$tool' is not run here; mark its block <!-- not run: REASON -->\" >&2; return 127; }"
done
now() { date +%s%N; }
`;

function script(file: string, cwd: string): { text: string; commands: DocCommand[] } {
  const commands = toRun.filter((b) => b.file === file).flatMap((b) => b.commands);
  const out = path.join(cwd, '.doc-test');
  const steps = commands.map((c, i) => {
    const text = lighter(c).replaceAll('/tmp/', `${cwd}/tmp/`);
    return `t=$(now)\n{ ${text}\n} >'${out}/${i}.log' 2>&1 </dev/null\necho "$? $(( ($(now) - t) / 1000000 ))" >'${out}/${i}.status'\n`;
  });
  return { text: `${PRELUDE}\ncd '${cwd}' || exit 99\n${steps.join('')}`, commands };
}

async function runFile(file: string): Promise<Outcome[]> {
  const cwd = tempDir('slimformer-doc-cli-');
  for (const d of LINKED) fs.symlinkSync(path.join(ROOT, d), path.join(cwd, d));
  fs.mkdirSync(path.join(cwd, 'tmp'));
  fs.mkdirSync(path.join(cwd, '.doc-test'));
  const { text, commands } = script(file, cwd);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', ['-c', text], {
      cwd,
      stdio: 'ignore',
      // a hung command ends its file's run (its status file is then missing) before the test's own timeout
      timeout: 540_000,
      env: { ...process.env, DOC_NODE: process.execPath, DOC_ROOT: ROOT, SLIMFORMER_THREADS: String(THREADS) },
    });
    child.on('error', reject);
    child.on('exit', () => resolve());
  });
  const keep = process.env.SLIMFORMER_DOC_LOGS;
  return commands.map((command, i) => {
    const status = path.join(cwd, '.doc-test', `${i}.status`);
    const log = path.join(cwd, '.doc-test', `${i}.log`);
    const [code, ms] = fs.existsSync(status) ? fs.readFileSync(status, 'utf8').trim().split(' ').map(Number) : [undefined, 0];
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    // the output, to refresh a transcript in a doc
    if (keep) fs.writeFileSync(path.join(keep, `${command.where.replace(/\W+/g, '_')}.log`), `$ ${command.text}\n${text}`);
    return { command, status: code, seconds: (ms ?? 0) / 1000, log: text };
  });
}

/** Runs the doc files, PARALLEL at a time; each test awaits its own. */
function runAll(): Map<string, Promise<Outcome[]>> {
  const runs = new Map<string, Promise<Outcome[]>>();
  const queue = [...runFiles];
  const pending = new Map<string, { resolve: (o: Outcome[]) => void; reject: (e: unknown) => void }>();
  for (const f of queue) runs.set(f, new Promise((resolve, reject) => pending.set(f, { resolve, reject })));
  for (let lane = 0; lane < PARALLEL; lane++) {
    void (async () => {
      for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
        const p = pending.get(f)!;
        await runFile(f).then(p.resolve, p.reject);
      }
    })();
  }
  return runs;
}

/** size and mtime of every file under the folders the commands can reach, and the top-level names. */
function snapshot(): string[] {
  const out = fs.readdirSync(ROOT).filter((n) => n !== 'dist' && n !== 'node_modules');
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true })) {
      const p = path.join(rel, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = fs.lstatSync(path.join(ROOT, p));
        out.push(`${p} ${s.size} ${s.mtimeMs}`);
      }
    }
  };
  for (const d of [...LINKED, 'docs']) if (fs.existsSync(path.join(ROOT, d))) walk(d);
  return out.sort();
}

describe('shell commands of README.md and docs/', () => {
  const all = blocks.flatMap((b) => b.commands.map((c) => ({ block: b, command: c })));
  let runs: Map<string, Promise<Outcome[]>>;
  let before: string[];
  const times: string[] = [];

  beforeAll(() => {
    before = snapshot();
    runs = runAll();
  });

  afterAll(() => {
    if (process.env.SLIMFORMER_DOC_TIMES) console.log(times.join('\n'));
  });

  it('finds the commands that run slimformer, in every doc file that has one', () => {
    const invoking = all.filter((c) => c.command.invokesSlimformer);
    expect(invoking.length).toBeGreaterThanOrEqual(40);
    expect(new Set(invoking.map((c) => c.block.file)).size).toBeGreaterThanOrEqual(10);
    const ran = invoking.filter((c) => c.block.notRun === undefined);
    expect(ran.length / invoking.length).toBeGreaterThan(0.5);
  });

  it('every command ends (no dangling `\\`, `&&` or unclosed loop)', () => {
    expect(all.filter((c) => c.command.exit < 0).map((c) => `${c.command.where}: ${c.command.text}`)).toEqual([]);
  });

  it('no command hides in an unlabelled block (label it sh to run it, text for a synopsis)', () => {
    expect(files.flatMap((f) => hiddenCommands(ROOT, f))).toEqual([]);
  });

  it('every "not run" marker gives its reason and sits on a block of commands', () => {
    const marked = blocks.filter((b) => b.notRun !== undefined);
    expect(marked.filter((b) => b.notRun === '' || b.commands.length === 0).map((b) => b.where)).toEqual([]);
  });

  const skipped = blocks.filter((b) => b.notRun).flatMap((b) => b.commands.map((c) => [c.where, b.notRun!, c.text.split('\n')[0]!] as const));
  it.skip.each(skipped)('%s not run: %s (%s)', () => {});

  const lightened = all.filter((c) => c.block.notRun === undefined && lighter(c.command) !== c.command.run);
  it('runs lighter only the commands LIGHTER names, each for its reason', () => {
    for (const l of LIGHTER) expect(lightened.some((c) => c.block.file === l.file && c.command.run.includes(l.find)), `${l.file}: no command has '${l.find}'`).toBe(true);
    expect(lightened.length).toBeLessThanOrEqual(6);
  });
  it.each(lightened.map((c) => [c.command.where, LIGHTER.find((l) => c.command.where.startsWith(`${l.file}:`))!.why, c.command] as const))(
    '%s runs lighter (%s), with every word of the doc\'s command',
    (_, __, c) => expect(lighter(c).split(/[\s"']+/)).toEqual(expect.arrayContaining(c.run.split(/[\s"']+/))),
  );

  it.each(runFiles)('runs the commands of %s, each exits as the doc says', async (file) => {
    const outcomes = await runs.get(file)!;
    const failures: string[] = [];
    for (const o of outcomes) {
      times.push(`${o.seconds.toFixed(1).padStart(6)} s  exit ${o.status}  ${o.command.where}  ${o.command.text.split('\n')[0]!.slice(0, 110)}`);
      if (o.status !== o.command.exit) failures.push(`${o.command.where}: exit ${o.status}, the doc implies ${o.command.exit}\n$ ${lighter(o.command)}\n${o.log.slice(-3000)}`);
      // an error a transcript shows is the error the command gives (not another one with the same code)
      for (const line of o.command.output.filter((l) => o.command.exit !== 0 && l.startsWith('slimformer: ')))
        if (!o.log.includes(line)) failures.push(`${o.command.where}: the doc shows\n${line}\nbut the command printed\n${o.log.slice(-3000)}`);
    }
    expect(failures.join('\n\n')).toBe('');
  }, 600_000);

  it('wrote nothing into the repository', async () => {
    await Promise.allSettled([...runs.values()]);
    expect(snapshot()).toEqual(before);
  }, 600_000);
});
