// Starts the gateway the way a user does: a YAML config file and an htpasswd file in a directory,
// loaded by the real loader, listening on a real port with a real (self-signed) certificate.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { stringify } from 'yaml';
import { hashPassword } from '../../src/auth/htpasswd-formats.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { startGateway, type Gateway, type StartOptions } from '../../src/server/gateway.ts';
import { request, type RequestOptions, type TestResponse } from './http-client.ts';

export interface TestGatewayOptions {
  /** One server, or a list of them (docs/operations.md "Several MLflow servers"). */
  upstream: string | readonly string[];
  /** user -> password, hashed with bcrypt at the lowest cost to keep tests fast. */
  users?: Record<string, string>;
  /** Exact htpasswd file contents, instead of users. */
  htpasswd?: string;
  /** Extra configuration, as it would be written in mlgate.yaml. */
  config?: Record<string, unknown>;
  tls?: boolean;
  /**
   * The policy file (authz.policyFile, <dir>/policy.yaml): YAML text or an object written as YAML.
   * Without it there is no file: the built-in policy (the htpasswd user "admin" is the only admin,
   * everyone else READ, creators MANAGE).
   */
  policy?: string | Record<string, unknown>;
  /** The gateway's environment as the config loader sees it (${NAME} in routes[].upstreamHeaders); empty by default. */
  env?: NodeJS.ProcessEnv;
  /** The callers' levels for grant management (/-/api/permissions); see StartOptions.permissionLevel. */
  permissionLevel?: StartOptions['permissionLevel'];
}

export interface TestGateway {
  url: string;
  port: number;
  dir: string;
  htpasswdPath: string;
  /** Where the policy file is (or would be): <dir>/policy.yaml. */
  policyPath: string;
  /** The gateway's certificate (self-signed), to pin in clients. */
  ca?: string;
  config: Config;
  gateway: Gateway;
  /** Every JSON line the gateway logged. */
  logs: Record<string, unknown>[];
  request(path: string, options?: RequestOptions): Promise<TestResponse>;
  close(graceMs?: number): Promise<void>;
}

export async function htpasswdLines(users: Record<string, string>, cost = 4): Promise<string> {
  const lines = await Promise.all(Object.entries(users).map(async ([user, password]) => `${user}:${await hashPassword(password, cost)}`));
  return lines.join('\n') + '\n';
}

export function captureLogs(): { logs: Record<string, unknown>[]; stream: Writable } {
  const logs: Record<string, unknown>[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      pending += chunk.toString('utf8');
      let newline: number;
      while ((newline = pending.indexOf('\n')) !== -1) {
        logs.push(JSON.parse(pending.slice(0, newline)) as Record<string, unknown>);
        pending = pending.slice(newline + 1);
      }
      callback();
    },
  });
  return { logs, stream };
}

export async function startTestGateway(options: TestGatewayOptions): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-test-'));
  const htpasswdPath = join(dir, 'htpasswd');
  writeFileSync(htpasswdPath, options.htpasswd ?? (await htpasswdLines(options.users ?? { alice: 'alice-password' })), { mode: 0o600 });
  const tls = options.tls ?? true;
  const policyPath = join(dir, 'policy.yaml');
  if (options.policy !== undefined) writeFileSync(policyPath, typeof options.policy === 'string' ? options.policy : stringify(options.policy));
  const file = {
    host: '127.0.0.1',
    port: 0,
    upstream: options.upstream,
    watchInterval: '50ms',
    shutdownGrace: '5s',
    ...options.config,
    // MLGATE_TEST_FORWARDER=undici runs the same tests through the other HTTP forwarder (proxy.forwarder).
    ...(process.env.MLGATE_TEST_FORWARDER && { proxy: { forwarder: process.env.MLGATE_TEST_FORWARDER, ...(options.config?.proxy as object | undefined) } }),
    tls: { enabled: tls, selfSignedDir: join(dir, 'certs'), ...(options.config?.tls as object | undefined) },
    auth: { htpasswd: htpasswdPath, bcryptCost: 4, hashWorkers: 1, ...(options.config?.auth as object | undefined) },
    session: { keyFile: join(dir, 'session.key'), revocationsFile: join(dir, 'session-revocations.json'), ...(options.config?.session as object | undefined) },
    tokens: { file: join(dir, 'tokens.json'), ...(options.config?.tokens as object | undefined) },
    authz: { policyFile: policyPath, ...(options.config?.authz as object | undefined) },
  };
  const configPath = join(dir, 'mlgate.yaml');
  writeFileSync(configPath, stringify(file));
  const { logs, stream } = captureLogs();
  let config: Config;
  let gateway: Gateway;
  try {
    config = loadConfig({ configPath, env: options.env ?? {}, cwd: dir }).config;
    gateway = await startGateway(config, { logger: pino({ level: 'debug' }, stream), permissionLevel: options.permissionLevel });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const ca = tls ? readFileSync(config.tls.cert ?? join(dir, 'certs', 'mlgate.crt'), 'utf8') : undefined;
  return {
    url: gateway.url,
    port: gateway.port,
    dir,
    htpasswdPath,
    policyPath,
    ca,
    config,
    gateway,
    logs,
    request: (path, requestOptions) => request(gateway.url + path, { ca, ...requestOptions }),
    async close(graceMs) {
      await gateway.close(graceMs);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits until a log line matching the predicate appears (log lines are written asynchronously). */
export async function waitForLog(logs: Record<string, unknown>[], predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 3000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = logs.find(predicate);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching log line in ${timeoutMs} ms; saw:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
