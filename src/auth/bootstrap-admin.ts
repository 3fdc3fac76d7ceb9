import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { HashWorkerPool } from './hash-worker-pool.ts';
import { setHtpasswdUser } from './htpasswd-file.ts';

export const BOOTSTRAP_USER = 'admin';

/**
 * On first start there is no htpasswd file: create one with an "admin" user and a random password,
 * so the gateway is never open. Returns the password (shown once, never logged) or undefined.
 */
export async function bootstrapAdminIfMissing(path: string, pool: HashWorkerPool, cost: number): Promise<string | undefined> {
  if (existsSync(path)) return undefined;
  const password = randomBytes(18).toString('base64url');
  await mkdir(dirname(path), { recursive: true });
  await setHtpasswdUser(path, BOOTSTRAP_USER, await pool.hash(password, cost), { mustNotExist: true });
  return password;
}
