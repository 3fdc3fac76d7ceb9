// The CLI compiled as `npm run build` compiles it, for the tests that run it: through tsx a command
// costs ~0.9 s, most of it loading and transforming the TypeScript; compiled, ~0.3 s. One build
// serves every test worker of a run, and later runs too while src/ is unchanged (it is kept under
// node_modules/.cache, named by a digest of everything that goes into it).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The compiled CLI's main.js. `runDir` is the run's own directory (test/helpers/cli-build.ts): the
 * first worker to get there builds, or finds the build in the cache; the others wait for it.
 */
export function compiledCliMain(root: string, runDir: string): string {
  const done = join(runDir, 'done');
  let first = true;
  try {
    mkdirSync(join(runDir, 'lock'));
  } catch {
    first = false;
  }
  if (first) {
    let outcome: { main?: string; error?: string };
    try {
      outcome = { main: cachedBuild(root) };
    } catch (error) {
      outcome = { error: String(error) };
    }
    // Renamed into place, so that no worker reads it half-written.
    writeFileSync(`${done}.new`, JSON.stringify(outcome));
    renameSync(`${done}.new`, done);
  }
  // runCli is synchronous, so the wait is too: a blocking sleep between looks.
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const giveUp = Date.now() + 300_000;
  while (!existsSync(done)) {
    if (Date.now() > giveUp) throw new Error(`the CLI build for ${runDir} never finished`);
    Atomics.wait(nap, 0, 0, 50);
  }
  const { main, error } = JSON.parse(readFileSync(done, 'utf8')) as { main?: string; error?: string };
  if (!main) throw new Error(error);
  return main;
}

function cachedBuild(root: string): string {
  const cache = join(root, 'node_modules', '.cache', 'mlgate-test-cli');
  const entry = join(cache, digestOfInputs(root));
  const main = join(entry, 'dist', 'cli', 'main.js');
  if (existsSync(main)) {
    const now = new Date();
    utimesSync(entry, now, now); // in use: not pruned
    return main;
  }
  mkdirSync(cache, { recursive: true });
  // Built aside and renamed in whole, so that a concurrent run never uses a half-made build.
  const building = join(cache, `building-${process.pid}-${Date.now()}`);
  try {
    build(root, building);
    try {
      renameSync(building, entry);
    } catch (error) {
      if (!existsSync(main)) throw error; // else another run just put the same build there
    }
  } finally {
    rmSync(building, { recursive: true, force: true });
  }
  prune(cache);
  return main;
}

/**
 * Laid out like a checkout (src/ beside dist/), so that the CLI's messages are the ones users of a
 * checkout see, as under tsx. Type errors are `tsc --noEmit`'s business (npm test runs it first),
 * so the build only emits.
 */
function build(root: string, app: string): void {
  mkdirSync(app);
  copyFileSync(join(root, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(app, 'node_modules'), 'dir');
  symlinkSync(join(root, 'src'), join(app, 'src'), 'dir');
  const tsc = spawnSync(process.execPath, [
    join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'),
    '--noCheck', '--incremental', 'false', '--outDir', join(app, 'dist'),
  ], { encoding: 'utf8', timeout: 300_000 });
  if (!existsSync(join(app, 'dist', 'cli', 'main.js'))) {
    throw new Error(`building the CLI failed (tsc status ${tsc.status}):\n${tsc.stdout}${tsc.stderr}${tsc.error ?? ''}`);
  }
}

/** Everything the build is made from: the sources, the compiler settings and version, package.json. */
function digestOfInputs(root: string): string {
  const digest = createHash('sha256');
  const src = join(root, 'src');
  const sources = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.ts')).sort();
  const inputs = [...sources.map((name) => join('src', name)), 'package.json', 'tsconfig.json', 'tsconfig.build.json', join('node_modules', 'typescript', 'package.json')];
  for (const name of inputs) digest.update(`${name}\0`).update(readFileSync(join(root, name))).update('\0');
  return digest.digest('hex').slice(0, 20);
}

/** Builds of sources long gone; a day leaves alone whatever a run still going may be using. */
function prune(cache: string): void {
  for (const name of readdirSync(cache)) {
    const path = join(cache, name);
    if (Date.now() - statSync(path).mtimeMs > DAY_MS) rmSync(path, { recursive: true, force: true });
  }
}
