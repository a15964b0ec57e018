// Finds the shell commands of README.md and docs/*.md, as a reader would type them.
//
// A block is shell when it is fenced ```sh, ```bash, ```shell or ```console, or unlabelled with
// `$ ` prompts (a transcript). A YAML block's one-line `run:` steps that call slimformer (a CI
// workflow) count as commands too. In sh/bash/shell blocks every line is a command (a leading `$ ` is
// dropped); in console and unlabelled blocks only `$ ` lines are, and the lines after them are
// output. A command goes on over lines ending in `\`, `&&`, `||` or `|`, and over a `for`/`while`/
// `if` … `done`/`fi` construct and over a here-document (`cat > FILE <<'EOF'` … `EOF`); comment-only and blank lines between commands are skipped.
//
// HTML comments right before a block's fence (invisible on GitHub and npm) say how to treat it:
//   <!-- not run: REASON -->     none of its commands is run; REASON says why (required)
//   <!-- doc-test exit N -->     each of its commands is expected to exit N (default 0)
//   <!-- doc-test paths A=B … --> run with the bundled path B where the doc names the reader's A
// and a command's own trailing comment `# exits N` sets its expected exit code alone.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface DocCommand {
  /** file:line of the command's first line. */
  where: string;
  /** The command as the doc shows it: prompt dropped, lines joined as the shell joins them. */
  text: string;
  /** Whether it runs slimformer (`slimformer`, `npx slimformer`) or an npm script or a node program. */
  invokesSlimformer: boolean;
  /** The exit code the doc implies. */
  exit: number;
  /** In a transcript, the output lines the doc shows after the command. */
  output: string[];
  /** The text run: with the block's `doc-test paths` substituted. */
  run: string;
}

export interface ShellBlock {
  file: string;
  /** file:line of the opening fence. */
  where: string;
  lang: string;
  commands: DocCommand[];
  /** The reason given by a `<!-- not run: … -->` marker ('' when the marker gives none); undefined: run. */
  notRun?: string;
}

const SHELL = new Set(['sh', 'bash', 'shell', 'console']);
const PROMPT = /^\$ /;

/** README.md and every docs/*.md file, so a new doc is picked up without listing it here. */
export function docFiles(root: string): string[] {
  const docs = fs.readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).sort();
  return ['README.md', ...docs.map((f) => `docs/${f}`)];
}

interface Fence {
  lang: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The HTML comments right before the fence, innermost last. */
  markers: string[];
}

function fences(text: string): Fence[] {
  const out: Fence[] = [];
  for (const m of text.matchAll(/^```(\w*)[^\n]*\n([\s\S]*?)^```\s*$/gm)) {
    const before = text.slice(0, m.index);
    // the comments between the previous text and the fence; a comment holds no `-->`
    const comments = /((?:<!--(?:(?!-->)[\s\S])*-->\s*)+)$/.exec(before);
    const markers = comments ? [...comments[1]!.matchAll(/<!--((?:(?!-->)[\s\S])*)-->/g)].map((c) => c[1]!.trim()) : [];
    out.push({ lang: m[1]!, code: m[2]!, line: before.split('\n').length, markers });
  }
  return out;
}

/** Drops a trailing `# comment` (a `#` after white space; the docs quote no `#`). */
function stripComment(line: string): string {
  return line.replace(/(^|\s)#.*$/, '').trimEnd();
}

const OPENERS = /(?:^|[;&|]\s*)(?:for|while|until|if|case)\b/g;
const CLOSERS = /(?:^|[;&|]\s*)(?:done|fi|esac)\b/g;

const INVOKES = /(?:^|[\s;&|(])(?:(?:npx\s+)?slimformer\s|npm\s|node\s+(?:bin|dist)\/)/;

function commandsOf(f: Fence, file: string, blockExit: number): DocCommand[] {
  const transcript = f.lang === 'console' || f.lang === '';
  const lines = f.code.replace(/\n$/, '').split('\n');
  const out: DocCommand[] = [];
  let current: string[] | undefined;
  let start = 0;
  let depth = 0;
  let heredoc: RegExp | undefined;
  lines.forEach((raw, i) => {
    let line = raw;
    if (current && heredoc) {
      // the body of `cat > FILE <<'EOF'` is data, up to its delimiter line
      current.push(line);
      if (heredoc.test(line)) heredoc = undefined;
      else return;
      line = '';
    }
    if (!current) {
      if (PROMPT.test(line)) line = line.replace(PROMPT, '');
      else if (transcript) {
        out.at(-1)?.output.push(line);
        return;
      }
      if (stripComment(line).trim() === '') return;
      current = [];
      start = i;
    }
    if (line !== '' || current.length === 0) current.push(line);
    const code = stripComment(line);
    const here = /<<(-?)\s*['"]?(\w+)['"]?/.exec(code);
    if (here) heredoc = new RegExp(here[1] ? `^\\t*${here[2]}$` : `^${here[2]}$`);
    depth += (code.match(OPENERS) ?? []).length - (code.match(CLOSERS) ?? []).length;
    const continued = heredoc !== undefined || /\\$/.test(line.trimEnd()) || /(?:&&|\|\||\|)$/.test(code);
    if (!continued && depth <= 0) {
      const text = current.join('\n');
      const exit = /#\s*exits?\s+(\d+)/.exec(text);
      out.push({
        where: `${file}:${f.line + 1 + start}`,
        text,
        invokesSlimformer: current.some((l) => INVOKES.test(` ${stripComment(l)}`)),
        exit: exit ? Number(exit[1]) : blockExit,
        output: [],
        run: text,
      });
      current = undefined;
      depth = 0;
    }
  });
  if (current) out.push({ where: `${file}:${f.line + 1 + start}`, text: current.join('\n'), invokesSlimformer: true, exit: -1, output: [], run: '' });
  return out;
}

/** The one-line `run:` steps of a CI workflow (YAML) that run slimformer. */
function workflowCommands(f: Fence, file: string, blockExit: number): DocCommand[] {
  return f.code
    .split('\n')
    .map((l, i) => [/^\s*(?:-\s+)?run:\s*(.+)$/.exec(l)?.[1], i] as const)
    .filter((e): e is readonly [string, number] => e[0] !== undefined && INVOKES.test(` ${e[0]}`) && /slimformer/.test(e[0]))
    .map(([text, i]) => ({ where: `${file}:${f.line + 1 + i}`, text, invokesSlimformer: true, exit: blockExit, output: [], run: text }));
}

/** The shell blocks of one markdown file (path relative to root), and the CI workflows that run slimformer. */
export function shellBlocksOf(root: string, file: string): ShellBlock[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  const out: ShellBlock[] = [];
  for (const f of fences(text)) {
    const isShell = SHELL.has(f.lang) || (f.lang === '' && f.code.split('\n').some((l) => PROMPT.test(l)));
    const isWorkflow = (f.lang === 'yaml' || f.lang === 'yml') && workflowCommands(f, file, 0).length > 0;
    if (!isShell && !isWorkflow) continue;
    const notRun = f.markers.map((m) => /^not[ -]run\b:?\s*([\s\S]*)$/i.exec(m)).find((m) => m);
    const exit = f.markers.map((m) => /^doc-test\s+exit\s+(\d+)$/.exec(m)).find((m) => m);
    const blockExit = exit ? Number(exit[1]) : 0;
    const paths = f.markers.flatMap((m) => /^doc-test\s+paths\s+([\s\S]+)$/.exec(m)?.[1]!.trim().split(/\s+/) ?? []).map((p) => p.split('=') as [string, string]);
    const commands = isShell ? commandsOf(f, file, blockExit) : workflowCommands(f, file, blockExit);
    for (const c of commands) for (const [from, to] of paths) c.run = c.run.replaceAll(from, to);
    out.push({
      file,
      where: `${file}:${f.line}`,
      lang: f.lang,
      commands,
      notRun: notRun ? notRun[1]!.trim() : undefined,
    });
  }
  return out;
}

/**
 * Unlabelled blocks that hold a command without a `$ ` prompt: a reader copies them like
 * commands, so they must be labelled `sh` (and run) or `text` (a synopsis).
 */
export function hiddenCommands(root: string, file: string): string[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  return fences(text)
    .filter((f) => f.lang === '' && !f.code.split('\n').some((l) => PROMPT.test(l)))
    .flatMap((f) =>
      f.code
        .split('\n')
        .map((l, i) => [l, i] as const)
        .filter(([l]) => /^\s*(?:npx\s+)?slimformer\s/.test(l))
        .map(([l, i]) => `${file}:${f.line + 1 + i}: ${l.trim()}`),
    );
}
