#!/usr/bin/env node
import cluster from 'node:cluster';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { homeDirectory } from '../config/load.ts';
import { configSchema } from '../config/schema.ts';
import { VERSION } from '../version.ts';
import { registerCert } from './cert.ts';
import { registerConfigCheck } from './config-check.ts';
import { registerGrant } from './grant.ts';
import { registerServe } from './serve.ts';
import { registerToken } from './token.ts';
import { registerUser } from './user.ts';

const program = new Command('mlgate')
  .description('Authentication gateway for MLflow tracking servers')
  .version(VERSION)
  .option('--dir <path>', 'directory to work in, made if missing (like git -C): config/mlgate.yaml, config/htpasswd, certs/ '
    + 'and every other relative path are there (default: $MLGATE_HOME, else the current directory)')
  .showHelpAfterError();

registerServe(program);
registerUser(program);
registerToken(program);
registerCert(program);
registerConfigCheck(program);
registerGrant(program);

/**
 * An installed copy (a packed tarball installed, the image) has no checkout of its own to keep its
 * files in, so without --dir or MLGATE_HOME they land wherever it happened to be started; a checkout
 * runs there.
 */
const installed = !existsSync(fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url)));
/** The first start creates this one (with an admin user) along with the rest of its files. */
const firstStartFile = configSchema.parse({}).auth.htpasswd;
let announceFirstStart = false;

program.hook('preAction', (_program, command) => {
  const home = homeDirectory(program.opts<{ dir?: string }>().dir);
  // Workers start in the primary's directory already; a relative --dir would be resolved twice.
  if (home && !cluster.isWorker) enter(home.path, home.origin);
  announceFirstStart = installed && !home && !cluster.isWorker && command.name() === 'serve' && !existsSync(firstStartFile);
});

// After serve's action: the gateway is listening, and the first start has made its files.
program.hook('postAction', () => {
  if (!announceFirstStart || !existsSync(firstStartFile)) return;
  const here = process.cwd();
  process.stderr.write(`mlgate: first start: ${firstStartFile} and its other files are in ${here}, the directory it was started in; `
    + `start it there again, or with --dir ${here} (or MLGATE_HOME=${here}), to keep using them\n`);
});

/** Moves into the directory, making it if needed: everything relative resolves there from now on. */
function enter(path: string, origin: string): void {
  if (!existsSync(path)) {
    // Like config/ and certs/ themselves: keys and password hashes go in it.
    mkdirSync(path, { recursive: true, mode: 0o700 });
    process.stderr.write(`mlgate: created ${path} (named by ${origin}) for its configuration and files\n`);
  } else if (!statSync(path).isDirectory()) {
    throw new Error(`${origin} names ${path}, which is not a directory`);
  }
  process.chdir(path);
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`mlgate: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
