#!/usr/bin/env -S node --max-semi-space-size=8
// The flag: every way of starting mlgate runs with the same young generation (docs/performance.md
// "Memory"). V8 sizes its heap before any code runs, so it cannot be set from here:
// v8.setFlagsFromString after start-up leaves the young generation as it is (measured).
// `node bin/mlgate.js` skips this line: npm's scripts, the Docker image and the systemd unit pass
// the flag themselves. Workers of `workers: N` inherit it (node:cluster forks with execArgv).
// Installed with a build (npm run build, the Docker image, a service): the compiled CLI.
// From a checkout without one: the TypeScript source through tsx, a dev dependency, when it is
// installed; otherwise (npm ci --omit=dev) how to build.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const tsx = await import('tsx/esm/api').catch((err) => {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
    const root = fileURLToPath(new URL('..', import.meta.url));
    // A checkout has its lock file; a copy installed from `npm pack` has neither it nor a build.
    const how = existsSync(join(root, 'package-lock.json'))
      ? `make one with: cd ${root} && npm ci && npm run build`
      : 'build mlgate in its checkout (npm ci && npm run build) and run or install it from there';
    process.stderr.write(`mlgate: no build in ${join(root, 'dist')}; ${how}\n`);
    process.exit(1);
  });
  tsx.register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
