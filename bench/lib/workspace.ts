// The temporary directory every server of one run shares: the htpasswd file, the TLS pair, the
// 1 GiB artifact, configs and logs. Removed at the end.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ADMIN_USER, BENCH_EXPERIMENT_ID, BENCH_RUN_ID, POLICY_YAML } from './mlflow-fixture.ts';
import { basicAuthorization } from './net.ts';
import { runToEnd } from './processes.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The tsx loader, by absolute URL, so Node scripts start the same way from any directory. */
export const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const BCRYPT_COST = 12;
export const ARTIFACT_BYTES = 2 ** 30;
/** Where MLflow serves artifacts (mlflow server --serve-artifacts); the file sits under it. */
export const ARTIFACT_PREFIX = '/api/2.0/mlflow-artifacts/artifacts/';
/**
 * Laid out as MLflow lays out a run's artifacts, `<experiment id>/<run id>/artifacts/...`: mlgate
 * decides on the experiment in the first segment, so it must be the bench's experiment.
 */
export const ARTIFACT_DIR = `${BENCH_EXPERIMENT_ID}/${BENCH_RUN_ID}/artifacts`;
export const ARTIFACT_NAME = `${ARTIFACT_DIR}/blob.bin`;

export interface User {
  name: string;
  password: string;
  /** The bcrypt hash as it stands in the htpasswd file. */
  hash: string;
}

export interface Workspace {
  dir: string;
  htpasswd: string;
  /** The client the bench measures; its credential is cached by the gateways that cache. */
  user: User;
  authorization: string;
  /** An admin in the policy file (authorization skips its resource checks), with its Authorization header. */
  admin: User & { authorization: string };
  /** Existing users whose passwords the guessing flood tries. */
  victims: User[];
  /** authz.policyFile of every gateway (mlflow-fixture.ts): the bench user has EDIT on the bench's experiment by a group rule. */
  policyFile: string;
  cert: string;
  key: string;
  /** The 1 GiB file: uploaded by stream-up, served by the upstream for stream-down. */
  artifactFile: string;
  /** How the hashes were made, for the report. */
  hashedWith: string;
  path(...parts: string[]): string;
  remove(): Promise<void>;
}

export async function createWorkspace(): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'mlgate-bench-'));
  const path = (...parts: string[]) => join(dir, ...parts);
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const hashedWith = (await hasCommand('htpasswd')) ? 'htpasswd -nbB -C 12' : 'bcryptjs (cost 12)';
    const names = ['bench', 'alice', 'bob', 'carol', ADMIN_USER];
    const users = await Promise.all(names.map((name) => makeUser(name, hashedWith.startsWith('htpasswd'))));
    const htpasswd = path('htpasswd');
    await writeFile(htpasswd, users.map((u) => `${u.name}:${u.hash}\n`).join(''), { mode: 0o600 });

    const policyFile = path('policy.yaml');
    await writeFile(policyFile, POLICY_YAML);

    const { cert, key } = await makeCertificate(dir);

    // The upstream serves it from a directory laid out like the URL, so nginx needs no rewrite.
    const artifactFile = path('www', ARTIFACT_PREFIX, ARTIFACT_NAME);
    await mkdir(join(artifactFile, '..'), { recursive: true });
    // Sparse: reading it costs no disk, so the transfer, not the storage, is measured.
    const handle = await open(artifactFile, 'w');
    await handle.truncate(ARTIFACT_BYTES);
    await handle.close();

    const user = users[0]!;
    const admin = users[4]!;
    return {
      dir, htpasswd, user, authorization: basicAuthorization(user.name, user.password),
      admin: { ...admin, authorization: basicAuthorization(admin.name, admin.password) }, victims: users.slice(1, 4),
      policyFile, cert, key, artifactFile, hashedWith, path, remove,
    };
  } catch (err) {
    await remove();
    throw err;
  }
}

async function makeUser(name: string, withHtpasswd: boolean): Promise<User> {
  const password = randomBytes(12).toString('base64url');
  if (withHtpasswd) {
    const result = await runToEnd('htpasswd', 'htpasswd', ['-nbB', '-C', String(BCRYPT_COST), name, password]);
    const line = result.stdout.trim();
    if (result.code !== 0 || !line.startsWith(`${name}:$2`)) throw new Error(`htpasswd failed: ${result.output}`);
    return { name, password, hash: line.slice(name.length + 1) };
  }
  const bcrypt = (await import('bcryptjs')).default;
  return { name, password, hash: bcrypt.hashSync(password, BCRYPT_COST) };
}

/**
 * The certificate every TLS server in the run presents: made by mlgate itself (`mlgate cert
 * generate`, an EC P-256 self-signed pair), so nginx, Caddy and mlgate do the same handshake work.
 */
async function makeCertificate(dir: string): Promise<{ cert: string; key: string }> {
  const certDir = join(dir, 'certs');
  const config = join(dir, 'cert-config.yaml');
  await writeFile(config, `tls:\n  selfSignedDir: ${JSON.stringify(certDir)}\n`);
  const result = await runToEnd('mlgate cert generate', process.execPath, ['--import', TSX, 'src/cli/main.ts', 'cert', 'generate', '--config', config], { cwd: REPO_ROOT, env: gatewayEnv() });
  const cert = join(certDir, 'mlgate.crt');
  const key = join(certDir, 'mlgate.key');
  if (result.code === 0 && existsSync(cert)) return { cert, key };
  // The same kind of key with openssl, should the CLI be broken mid-edit.
  await mkdir(certDir, { recursive: true });
  const made = await runToEnd('openssl', 'openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert]);
  if (made.code !== 0) throw new Error(`could not make a TLS certificate: mlgate said ${result.output.trim()}; openssl said ${made.output.trim()}`);
  return { cert, key };
}

/** The runner's environment without MLGATE_* settings, which would change (or break) the gateway under test. */
export function gatewayEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MLGATE_')));
}

export async function hasCommand(name: string): Promise<boolean> {
  const result = await runToEnd(`which ${name}`, 'sh', ['-c', `command -v ${name}`]);
  return result.code === 0 && result.stdout.trim() !== '';
}
