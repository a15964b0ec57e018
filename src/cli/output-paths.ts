import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors.js';

/** A file the command will write: the flag that names it (for messages) and the path given. */
export interface OutputTarget {
  flag: string;
  file: string;
  /** What is written there, for messages ("quantized model", "JUnit report"). */
  what: string;
}

/** A file or folder the command reads: an output must never be the same file. */
export interface InputSource {
  file: string;
  /** "input model", "baseline model", "calibration dataset". */
  what: string;
}

/**
 * The outputs of one command, checked before any work starts. Missing folders on an output's
 * path are created (`mkdir -p`), but only when the results are written: a run that fails
 * leaves no folder behind, and no folder that existed before is ever removed.
 */
export class OutputPlan {
  private readonly missing: string[];
  private created: string[] = [];

  private constructor(readonly targets: readonly OutputTarget[], missing: string[]) {
    this.missing = missing;
  }

  /**
   * Checks every output before any work: its folder can be written (or created under a folder
   * that can), it names no folder and no existing non-regular file, and it is none of the
   * inputs (compared by device and inode, so symlinks and hard links count) nor another output.
   * Throws a UserError naming the path.
   */
  static check(targets: readonly (OutputTarget | undefined)[], inputs: readonly (InputSource | undefined)[]): OutputPlan {
    const given = targets.filter((t): t is OutputTarget => t !== undefined);
    const sources = inputs.filter((s): s is InputSource => s !== undefined).map((s) => ({ ...s, id: identity(s.file) }));
    const missing = new Set<string>();
    const seen = new Map<string, OutputTarget>();
    for (const t of given) {
      const cannot = (why: string): UserError => new UserError(`cannot write the ${t.what} ${t.file} (${t.flag}): ${why}`);
      if (t.file === '' || /[/\\]$/.test(t.file)) throw cannot('it names a folder; give a file name');
      const existing = statOrUndefined(t.file);
      if (existing?.isDirectory()) throw cannot('it is a folder; give a file name inside it');
      if (existing && !existing.isFile()) throw cannot('it exists and is not a regular file');
      const { folder, toCreate } = nearestFolder(path.dirname(path.resolve(t.file)), cannot);
      try {
        fs.accessSync(folder, fs.constants.W_OK | fs.constants.X_OK);
      } catch {
        throw cannot(`folder ${folder} is not writable`);
      }
      for (const f of toCreate) missing.add(f);
      if (existing) {
        const id = `${existing.dev}:${existing.ino}`;
        const same = sources.find((s) => s.id === id);
        if (same) throw new UserError(`the output ${t.file} (${t.flag}) is the ${same.what} ${same.file} (the same file); write the ${t.what} to another file`);
      }
      // where the file will land: the real folder (symlinks resolved) and the name given
      const landing = path.join(realFolder(folder, toCreate), path.basename(t.file));
      const twice = seen.get(landing);
      if (twice) throw new UserError(`${t.flag} ${t.file} and ${twice.flag} ${twice.file} name the same file; give each output its own file`);
      seen.set(landing, t);
    }
    // outermost first, so creating them in order works and removing them in reverse does too
    return new OutputPlan(given, [...missing].sort((a, b) => a.length - b.length));
  }

  /**
   * Creates the missing folders, runs `write`, and removes the folders it created if writing
   * fails (only folders this plan created, and only while empty).
   */
  async write<T>(write: () => T | Promise<T>): Promise<T> {
    try {
      for (const dir of this.missing) {
        if (fs.existsSync(dir)) continue;
        fs.mkdirSync(dir);
        this.created.push(dir);
      }
      return await write();
    } catch (e) {
      this.removeCreated();
      // a system error (disk full, permissions changed meanwhile) is the user's to fix; anything else is a bug
      const code = (e as NodeJS.ErrnoException).code;
      if (e instanceof UserError || typeof code !== 'string') throw e;
      throw new UserError(`cannot write the outputs (${this.targets.map((t) => t.file).join(', ')}): ${(e as Error).message}`, { cause: e });
    }
  }

  private removeCreated(): void {
    for (const dir of this.created.reverse()) {
      try {
        fs.rmdirSync(dir); // fails, and keeps the folder, when something is in it
      } catch {
        // not empty: leave it
      }
    }
    this.created = [];
  }
}

function statOrUndefined(file: string): fs.Stats | undefined {
  try {
    return fs.statSync(file);
  } catch {
    return undefined;
  }
}

/** "dev:ino" of an existing file or folder (symlinks followed), or undefined. */
function identity(file: string): string | undefined {
  const s = statOrUndefined(file);
  return s ? `${s.dev}:${s.ino}` : undefined;
}

/** The nearest existing ancestor of `dir` (which must be a folder) and the folders to create under it. */
function nearestFolder(dir: string, cannot: (why: string) => UserError): { folder: string; toCreate: string[] } {
  const toCreate: string[] = [];
  let at = dir;
  for (;;) {
    let s: fs.Stats | undefined;
    try {
      s = fs.statSync(at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // ENOTDIR: a file further up; keep climbing to name it
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw cannot(`${at} cannot be read (${code})`);
    }
    if (s) {
      if (!s.isDirectory()) throw cannot(`${at} is a file, not a folder`);
      return { folder: at, toCreate };
    }
    toCreate.unshift(at);
    at = path.dirname(at);
  }
}

function realFolder(folder: string, toCreate: string[]): string {
  const real = fs.realpathSync(folder);
  return toCreate.length ? path.join(real, path.relative(folder, toCreate[toCreate.length - 1]!)) : real;
}
