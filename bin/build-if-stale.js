#!/usr/bin/env node
// `npm start` and `npm run mlgate` run this first: it compiles src/ into dist/ only when something
// the build reads (a file under src/, tsconfig*.json, package.json) is newer than the last build,
// so a start after the first one costs a directory walk, not a TypeScript compile.
// Without TypeScript (`npm ci --omit=dev`) it never builds: an existing dist/ is used as it is, and
// with none it says how to make one. Everything it prints goes to stderr (stdout may be YAML).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = (...parts) => join(root, ...parts);
const say = (text) => process.stderr.write(`mlgate: ${text}\n`);
const HOW_TO_BUILD = 'npm ci && npm run build';

/** When the last build finished: tsc's build info, rewritten by every build that changes anything. */
const STAMP = at('dist', '.tsbuildinfo');
const COMPILED = at('dist', 'cli', 'main.js');

/** The newest modification time among the build's inputs (directories too, so a deleted file counts). */
function newestInput() {
  let newest = 0;
  const visit = (path) => {
    const stats = statSync(path, { throwIfNoEntry: false });
    if (!stats) return;
    newest = Math.max(newest, stats.mtimeMs);
    if (stats.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
  };
  visit(at('src'));
  for (const name of readdirSync(root)) if (/^tsconfig.*\.json$/.test(name) || name === 'package.json') visit(at(name));
  return newest;
}

function typescriptPresent() {
  try {
    createRequire(at('package.json')).resolve('typescript/package.json');
    return true;
  } catch {
    return false;
  }
}

const built = existsSync(COMPILED) ? (statSync(STAMP, { throwIfNoEntry: false }) ?? statSync(COMPILED)).mtimeMs : undefined;
const stale = built === undefined || !existsSync(at('src')) || newestInput() > built;

if (!stale) {
  // up to date: nothing to do
} else if (!existsSync(at('src'))) {
  // An installed package without sources: the build it came with is the only one.
  if (built === undefined) {
    say(`no build in ${at('dist')} and no src/ to build it from; install mlgate from a checkout: ${HOW_TO_BUILD}`);
    process.exit(1);
  }
} else if (!typescriptPresent()) {
  if (built === undefined) {
    say(`no build in dist/, and TypeScript (a dev dependency) is not installed to make one: run ${HOW_TO_BUILD}`);
    process.exit(1);
  }
  say(`src/ is newer than dist/, but TypeScript is not installed to rebuild it; running the existing build (rebuild with: ${HOW_TO_BUILD})`);
} else {
  say('compiling src/ into dist/ (only after a change)...');
  const started = new Date();
  // The project's own build command, its output on stderr.
  const npm = process.env.npm_execpath;
  const build = npm
    ? spawnSync(process.execPath, [npm, 'run', 'build', '--silent'], { cwd: root, stdio: ['ignore', 2, 2] })
    : spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: ['ignore', 2, 2], shell: process.platform === 'win32' });
  if (build.status !== 0) {
    say(`the build failed (${build.error?.message ?? `exit status ${build.status}`}); fix the errors above, or run: npm run build`);
    process.exit(1);
  }
  // tsc leaves its build info alone when no output changed (an edit to a comment the output drops):
  // stamp it so the next start does not compile again; with the time the build began, so an edit
  // made while it ran still counts as newer.
  if (existsSync(STAMP)) utimesSync(STAMP, started, started);
}
