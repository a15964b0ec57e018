import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

/**
 * The package as a user gets it: `npm pack`, then `npm install <tarball>` into an empty folder
 * with the one setting docs/install.md gives (ONNXRUNTIME_NODE_INSTALL=skip), the dependencies
 * coming from the npm registry (or npm's cache), then the CLI, an ESM and a CommonJS
 * TypeScript consumer run from that folder, and `npx slimformer quantize ./model-folder --dtype q4,q8`
 * on a text and an image model folder. Slow-ish (about 30 s): packing and installing
 * onnxruntime-node's 115 MB tarball, and two TypeScript compilations.
 */
const ROOT = path.resolve(import.meta.dirname, '../..');
const MODEL = path.join(ROOT, 'fixtures/vit_mnist.onnx');

/**
 * The environment minus what `npm test` puts there: npm exports every config it read (the
 * repository's .npmrc included, which skips onnxruntime-node's download) as npm_config_*, and
 * a consumer does not have those.
 */
function consumerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, extra: Record<string, string> = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: consumerEnv(extra), timeout: 80_000 });
}

describe('the packed package installed into an empty folder', () => {
  const dir = tempDir('slimformer-package-');
  const consumer = path.join(dir, 'consumer');
  const installed = path.join(consumer, 'node_modules/slimformer');
  let packed: { filename: string; size: number; unpackedSize: number; files: { path: string }[] };
  let install: SpawnSyncReturns<string>;

  beforeAll(() => {
    // dist/ is fresh (the global setup builds it); --ignore-scripts skips `prepare` building it again
    const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
    expect(pack.status, pack.stderr).toBe(0);
    packed = JSON.parse(pack.stdout)[0];
    fs.mkdirSync(consumer);
    fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    install = run('npm', ['install', path.join(dir, packed.filename), '--no-audit', '--no-fund', '--prefer-offline'], consumer, { ONNXRUNTIME_NODE_INSTALL: 'skip' });
  }, 90_000);

  it('installs with ONNXRUNTIME_NODE_INSTALL=skip and downloads no GPU libraries', () => {
    expect(install.status, install.stdout + install.stderr).toBe(0);
    expect(install.stdout + install.stderr).not.toMatch(/Downloading|nuget/i);
    const ort = path.join(consumer, 'node_modules/onnxruntime-node');
    const libraries = (fs.readdirSync(ort, { recursive: true }) as string[]).filter((f) => /providers_(cuda|tensorrt)/.test(f));
    expect(libraries).toEqual([]);
  });

  it('ships LICENSE, README, docs and examples, and neither tests nor models', () => {
    const files = packed.files.map((f) => f.path);
    for (const f of ['LICENSE', 'README.md', 'docs/recipes.md', 'docs/install.md', 'examples/compose.mjs', 'examples/recipes/w8a8-float-classifier.yaml', 'bin/slimformer.js', 'dist/src/index.d.ts']) expect(files).toContain(f);
    expect(files.filter((f) => /^(tests|fixtures|calibration|benchmarks)\/|\.onnx$/.test(f))).toEqual([]);
    expect(fs.readFileSync(path.join(installed, 'LICENSE'), 'utf8')).toMatch(/^MIT License/);
    expect(JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')).license).toBe('MIT');
  });

  it('has no source map pointing at a file the package lacks', () => {
    const maps = (fs.readdirSync(path.join(installed, 'dist'), { recursive: true }) as string[]).filter((f) => f.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(50);
    const dangling: string[] = [];
    for (const m of maps) {
      const file = path.join(installed, 'dist', m);
      const { sources, sourceRoot = '' } = JSON.parse(fs.readFileSync(file, 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const s of sources) if (!fs.existsSync(path.resolve(path.dirname(file), sourceRoot, s))) dangling.push(`${m} -> ${s}`);
    }
    expect(dangling).toEqual([]);
  });

  it('resolves every docs/ file that --help names and every relative link in README and docs', () => {
    const commands = ['', 'inspect', 'eval', 'gate', 'quantize', 'prune', 'analyze', 'compress'];
    const named = new Set<string>();
    for (const c of commands) {
      // npx once (as a user types it), the installed bin link directly for the rest (npx costs a second each)
      const r = c === '' ? run('npx', ['--no', '--', 'slimformer', '--help'], consumer) : run(path.join(consumer, 'node_modules/.bin/slimformer'), [c, '--help'], consumer);
      expect(r.status, `${c} --help: ${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/^Usage: slimformer/);
      for (const m of r.stdout.replace(/\s+/g, ' ').matchAll(/docs\/[\w-]+\.md/g)) named.add(m[0]);
    }
    expect(named.size).toBeGreaterThan(0);
    for (const f of named) expect(fs.existsSync(path.join(installed, f)), f).toBe(true);
    const broken: string[] = [];
    for (const md of ['README.md', ...fs.readdirSync(path.join(installed, 'docs')).map((f) => `docs/${f}`)]) {
      const text = fs.readFileSync(path.join(installed, md), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(target!)) continue; // https: and mailto: links
        if (!fs.existsSync(path.resolve(path.dirname(path.join(installed, md)), target!))) broken.push(`${md} -> ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('runs `npx slimformer inspect` on a bundled model', () => {
    const r = run('npx', ['--no', '--', 'slimformer', 'inspect', MODEL], consumer);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/parameters\s+139,018/);
    expect(r.stdout).toMatch(/input\s+pixel_values: float32\[batch,1,28,28\]/);
  });

  it('quantizes a model folder with --dtype q4,q8 from raw text, and a ViT folder from an image folder, through npx', () => {
    // as a user has them: a model folder (real files, no symlinks) and a text file / image folder beside it
    const zoo = path.join(ROOT, 'fixtures/zoo/folders');
    const work = path.join(consumer, 'work');
    fs.cpSync(path.join(zoo, 'llama_moby_kv'), path.join(work, 'model-folder'), { recursive: true, dereference: true });
    fs.copyFileSync(path.join(zoo, 'llama_moby_kv/calib.txt'), path.join(work, 'corpus.txt'));
    fs.cpSync(path.join(zoo, 'tv_vit_mnist'), path.join(work, 'vit-folder'), { recursive: true, dereference: true });
    fs.cpSync(path.join(zoo, 'tv_vit_mnist/images'), path.join(work, 'images'), { recursive: true });
    const cases = [
      { args: ['./model-folder', '--dtype', 'q4,q8', '--calib-text', 'corpus.txt'], folder: 'model-folder', samples: 8 },
      { args: ['./vit-folder', '--dtype', 'q4,q8', '--calib-images', 'images'], folder: 'vit-folder', samples: 16 },
    ];
    for (const c of cases) {
      const r = run('npx', ['--no', '--', 'slimformer', 'quantize', ...c.args], work, { SLIMFORMER_MEMTRACE: '1' });
      expect(r.status, r.stderr).toBe(0);
      // the bin's first line set glibc's allocator (src/runtime/allocator.ts)
      expect(r.stderr).toContain('[memory] allocator: MALLOC_MMAP_THRESHOLD_=1048576');
      expect(r.stderr).toContain(`model folder ./${c.folder}: using onnx/model.onnx`);
      expect(r.stdout).toContain(`${c.folder}/onnx/model.onnx (`);
      expect(r.stdout).toContain(`2 variants, each checked against it on ${c.samples} calibration samples`);
      expect(r.stdout).toMatch(/^q4\s+model_q4\.onnx\s+w4\s+.*\s+pass$/m);
      expect(r.stdout).toMatch(/^q8\s+model_quantized\.onnx\s+dynamic\s+.*\s+pass$/m);
      expect(fs.readdirSync(path.join(work, c.folder, 'onnx')).sort()).toEqual(['model.onnx', 'model_q4.onnx', 'model_quantized.onnx']);
    }
  });

  it('loads from an ES module', () => {
    const script = `import { load, discoverStructure } from 'slimformer'; console.log(discoverStructure(load(${JSON.stringify(MODEL)})).blocks.length);`;
    const r = run(process.execPath, ['--input-type=module', '-e', script], consumer);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('4');
  });

  it('compiles and runs a CommonJS TypeScript consumer (module commonjs); module node16 gets TypeScript\'s one-line refusal', () => {
    const cjs = path.join(consumer, 'cjs');
    fs.mkdirSync(cjs);
    // no "type": "module": a CommonJS project, as `npm init` makes it
    fs.writeFileSync(path.join(cjs, 'package.json'), JSON.stringify({ name: 'cjs-consumer', private: true }));
    fs.writeFileSync(
      path.join(cjs, 'main.ts'),
      [
        "import { load, discoverStructure, parseRecipe, type Recipe } from 'slimformer';",
        'const recipe: Recipe = parseRecipe("passes: [cleanup]", "inline");',
        'console.log(`${discoverStructure(load(process.argv[2]!)).blocks.length} blocks, ${recipe.passes.length} pass`);',
        '',
      ].join('\n'),
    );
    // skipLibCheck off: the shipped .d.ts files are type-checked too; @types/node comes from this repository
    const tsconfig = { compilerOptions: { module: 'commonjs', target: 'es2022', strict: true, skipLibCheck: false, outDir: 'out', typeRoots: [path.join(ROOT, 'node_modules/@types')], types: ['node'] }, files: ['main.ts'] };
    fs.writeFileSync(path.join(cjs, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const built = run(process.execPath, [tsc, '-p', '.'], cjs);
    expect(built.status, built.stdout).toBe(0);
    expect(fs.readFileSync(path.join(cjs, 'out/main.js'), 'utf8')).toContain('require("slimformer")');
    // require() of an ES module: Node >= 20.19 / 22.12, the floor of package.json's engines
    const r = run(process.execPath, ['out/main.js', MODEL], cjs);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('4 blocks, 1 pass');
    const node16 = run(process.execPath, [tsc, '-p', '.', '--module', 'node16', '--moduleResolution', 'node16', '--noEmit', '--skipLibCheck'], cjs);
    expect(node16.status).not.toBe(0);
    expect(node16.stdout).toMatch(/error TS1479: The current file is a CommonJS module whose imports will produce 'require' calls; however, the referenced file is an ECMAScript module .* Consider writing a dynamic 'import\("slimformer"\)' call instead/);
  });
});
