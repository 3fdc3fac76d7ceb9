import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema } from '../config/schema.ts';
import type { HashWorkerPool } from './hash-worker-pool.ts';
import { setHtpasswdUser } from './htpasswd-file.ts';

export const BOOTSTRAP_USER = 'admin';

/** config/htpasswd, as the schema has it. */
function defaultHtpasswd(): string {
  return configSchema.parse({}).auth.htpasswd;
}

/**
 * Only the default file is made on first start. A path someone wrote down (--htpasswd, the config
 * file, MLGATE_AUTH_HTPASSWD) and got wrong would otherwise start a gateway whose users are one new
 * "admin", and everyone else locked out with no hint why.
 */
export function isDefaultHtpasswd(path: string, cwd = process.cwd()): boolean {
  return resolve(cwd, path) === resolve(cwd, defaultHtpasswd());
}

export function missingHtpasswdMessage(path: string): string {
  return `${path} does not exist. Check the path (an existing htpasswd file is used as it is), or create it with a first user: `
    + `${mlgateCommand(`user add ${BOOTSTRAP_USER} --htpasswd ${shellWord(path)}`)}. Only the default, ${defaultHtpasswd()}, is created on first start`;
}

/**
 * On first start there is no htpasswd file: create one with an "admin" user and a random password,
 * so the gateway is never open. Returns the password (shown once, never logged) or undefined.
 */
export async function bootstrapAdminIfMissing(path: string, pool: HashWorkerPool, cost: number): Promise<string | undefined> {
  if (existsSync(path)) return undefined;
  if (!isDefaultHtpasswd(path)) throw new Error(missingHtpasswdMessage(path));
  const password = randomBytes(18).toString('base64url');
  await mkdir(dirname(path), { recursive: true });
  await setHtpasswdUser(path, BOOTSTRAP_USER, await pool.hash(password, cost), { mustNotExist: true });
  return password;
}

/**
 * How the person reading a message runs mlgate: through npm from a checkout (there is no `mlgate`
 * on the PATH there), as `mlgate` from an installed copy or the image (which have no sources).
 */
export function mlgateCommand(args: string): string {
  const checkout = existsSync(fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url)));
  return checkout ? `npm run mlgate -- ${args}` : `mlgate ${args}`;
}

/** The command that changes a first-start password, naming the file unless it is the default one the CLI finds anyway. */
export function changePasswordCommand(user: string, htpasswdPath: string): string {
  return mlgateCommand(`user passwd ${user}${isDefaultHtpasswd(htpasswdPath) ? '' : ` --htpasswd ${shellWord(htpasswdPath)}`}`);
}

export function shellWord(text: string): string {
  return /^[\w./@+:=-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
