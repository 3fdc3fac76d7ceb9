// Issued API tokens in the shared Redis (state.redis): two gateways with config directories of their
// own (so no tokens file can be what they share) and one real redis-server. A token made through one
// works on the other, a revoke through either is refused by the other's very next request, `mlgate
// token` edits the same store, last uses are shown wherever tokens are listed, tokens.file is imported
// once, and with Redis stopped token requests and token edits fail closed with a 503 until it is back.
// Two gateways on one identity provider's refresh tokens file refresh each user one at a time (a
// Redis lock), so a rotated refresh token is never spent twice.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueToken } from '../src/auth/api-tokens.ts';
import { runCli } from './helpers/cli.ts';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import type { TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { IDP_CLIENT_ID, IDP_CLIENT_SECRET, signInAtIdp, startTestIdp, type TestIdp } from './helpers/oidc-provider.ts';
import { startTestRedis, type TestRedis } from './helpers/redis.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' };
const API = '/-/api/tokens';
const SEARCH = '/api/2.0/mlflow/experiments/search';

let upstream: MlflowUpstream;
let redis: TestRedis;
let inspect: Redis;
let a: TestGateway;
let b: TestGateway;
let htpasswd: string;
/** Where the imported tokens file lives: outside every gateway's own directory. */
let importDir: string;

function gateway(config: Record<string, unknown> = {}): Promise<TestGateway> {
  return startTestGateway({
    upstream: upstream.url,
    htpasswd,
    config: { watchInterval: '10m', tokens: { maxPerUser: 3, ...(config.tokens as object | undefined) }, state: { redis: { url: redis.url, timeout: '300ms' } } },
  });
}

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  redis = await startTestRedis();
  inspect = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  inspect.on('error', () => undefined);
  htpasswd = await htpasswdLines(USERS);
  importDir = mkdtempSync(join(tmpdir(), 'mlgate-import-'));
  [a, b] = await Promise.all([gateway(), gateway()]);
});
afterAll(async () => {
  inspect?.disconnect();
  await a?.close();
  await b?.close();
  await redis?.stop();
  await upstream?.close();
  if (importDir) rmSync(importDir, { recursive: true, force: true });
});

interface View { id: string; user: string; name: string; last_used: string | null }
interface Made extends View { token: string }

async function make(on: TestGateway, user: string, name: string): Promise<Made> {
  const res = await on.request(API, { method: 'POST', auth: [user, USERS[user as keyof typeof USERS]], headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  expect(res.status, res.text).toBe(201);
  return res.json<Made>();
}

async function listed(on: TestGateway, user: string): Promise<View[]> {
  const res = await on.request(API, { auth: [user, USERS[user as keyof typeof USERS]] });
  expect(res.status, res.text).toBe(200);
  return res.json<{ tokens: View[] }>().tokens;
}

/** An MLflow call with the token; `forwarded`: whether MLflow saw it. */
async function useToken(on: TestGateway, token: string): Promise<TestResponse & { forwarded: boolean }> {
  const before = upstream.requests.length;
  const res = await on.request(SEARCH, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"max_results":10}' });
  return Object.assign(res, { forwarded: upstream.requests.length > before });
}

function cli(on: TestGateway, ...args: string[]) {
  return runCli(['token', ...args, '--config', join(on.dir, 'mlgate.yaml')], { cwd: on.dir });
}

/** Every key and value in Redis, as text. */
async function everything(): Promise<Map<string, string>> {
  if (inspect.status !== 'ready') await inspect.connect().catch(() => undefined);
  const all = new Map<string, string>();
  for (const key of await inspect.keys('*')) {
    const type = await inspect.type(key);
    const value = type === 'string' ? await inspect.get(key) : type === 'hash' ? JSON.stringify(await inspect.hgetall(key)) : JSON.stringify(await inspect.smembers(key));
    all.set(key, value ?? '');
  }
  return all;
}

describe('two gateways sharing tokens through Redis', () => {
  it('a token made on A works on B, is listed on B, and only its hash is kept', async () => {
    const made = await make(a, 'alice', 'ci-nightly');
    const onB = await useToken(b, made.token);
    expect(onB.status, onB.text).toBe(200);
    expect(onB.forwarded).toBe(true);
    expect((await listed(b, 'alice')).map((token) => token.id)).toContain(made.id);
    const stored = await everything();
    expect([...stored].some(([key, value]) => key.includes(made.token) || value.includes(made.token))).toBe(false);
    expect([...stored.keys()].filter((key) => key.startsWith('mlgate:token:'))).toHaveLength(1);
    expect(stored.get('mlgate:tokens')).toContain(made.id);
  });

  it('a token revoked on B is refused on A by the next request after the revoke returns, and MLflow sees nothing', async () => {
    const made = await make(b, 'bob', 'to-revoke');
    expect((await useToken(a, made.token)).status).toBe(200);
    const revoke = await b.request(`${API}/${made.id}`, { method: 'DELETE', auth: ['bob', 'bob-password'] });
    expect(revoke.status, revoke.text).toBe(200);
    const refused = await useToken(a, made.token);
    expect(refused.status).toBe(401);
    expect(refused.json<{ message: string }>().message).toBe('invalid bearer token: unknown or revoked token');
    expect(refused.forwarded).toBe(false);
    expect((await listed(a, 'bob')).map((token) => token.id)).not.toContain(made.id);
  });

  it('a token from `mlgate token issue` (the same config) works on both, is listed by the CLI, and its CLI revoke is refused on both', async () => {
    const issued = cli(a, 'issue', 'carol', '--name', 'from-cli');
    expect(issued.status, issued.stderr).toBe(0);
    const token = issued.stdout.trim();
    for (const target of [a, b]) expect((await useToken(target, token)).status).toBe(200);
    const list = cli(b, 'list', '--user', 'carol');
    expect(list.status, list.stderr).toBe(0);
    const id = /^([0-9a-f]{12})\s+carol\s+from-cli/m.exec(list.stdout)?.[1];
    expect(id, list.stdout).toBeDefined();
    expect((await listed(b, 'carol')).map((view) => view.id)).toContain(id);
    const revoked = cli(b, 'revoke', id!);
    expect(revoked.status, revoked.stderr).toBe(0);
    for (const target of [a, b]) {
      const refused = await useToken(target, token);
      expect(refused.status).toBe(401);
      expect(refused.forwarded).toBe(false);
    }
  });

  it('shows when a token was last used, wherever it is listed', async () => {
    const made = await make(a, 'alice', 'last-used');
    expect((await listed(b, 'alice')).find((view) => view.id === made.id)?.last_used).toBeNull();
    const before = Date.now();
    expect((await useToken(b, made.token)).status).toBe(200);
    // Written after the answer, off the request's path: looked for until it is there.
    let seen: string | null | undefined;
    for (let tries = 0; tries < 50 && !seen; tries++) {
      seen = (await listed(a, 'alice')).find((view) => view.id === made.id)?.last_used;
      if (!seen) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(Date.parse(seen ?? '')).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    const list = cli(a, 'list', '--user', 'alice');
    expect(list.stdout).toMatch(new RegExp(`^${made.id}\\s+alice\\s+last-used\\s+.*\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\dZ$`, 'm'));
  });

  it('holds tokens.maxPerUser across gateways', async () => {
    for (const target of [a, b, a]) await make(target, 'admin', 'limit');
    const refused = await b.request(API, { method: 'POST', auth: ['admin', 'admin-password'], headers: { 'content-type': 'application/json' }, body: '{"name":"one-too-many"}' });
    expect(refused.status).toBe(409);
    expect(refused.json<{ error_code: string }>().error_code).toBe('RESOURCE_LIMIT_EXCEEDED');
  });
});

describe('tokens.file when Redis is turned on', () => {
  it('is imported once at start; a token revoked since stays revoked when the gateway starts again', async () => {
    const file = join(importDir, 'tokens.json');
    const { token, record } = await issueToken(file, { user: 'bob', name: 'from-the-file', ttlMs: 3_600_000 });
    const start = () => gateway({ tokens: { file } });
    let c = await start();
    try {
      await waitForLog(c.logs, (line) => line.msg === 'imported API tokens from tokens.file into the shared state store (Redis); the file is not read while state.redis is set' && line.imported === 1);
      // A never saw the file.
      expect((await useToken(a, token)).status).toBe(200);
      expect((await a.request(`${API}/${record.id}`, { method: 'DELETE', auth: ['admin', 'admin-password'] })).status).toBe(200);
      expect((await useToken(c, token)).status).toBe(401);
      await c.close();
      c = await start();
      const refused = await useToken(c, token);
      expect(refused.status).toBe(401);
      expect(refused.forwarded).toBe(false);
      expect(c.logs.some((line) => String(line.msg).startsWith('imported API tokens'))).toBe(false);
    } finally {
      await c.close();
    }
  });
});

describe('Redis stopped, then back', () => {
  it('token requests and token edits fail closed with a 503 naming the store; Basic works; all is back with Redis', async () => {
    const kept = await make(a, 'bob', 'through-the-outage');
    // Redis with persistence comes back with its data: played by dumping and restoring every key.
    const dumped: [string, Buffer, number][] = [];
    for (const key of await inspect.keys('*')) dumped.push([key, (await inspect.dumpBuffer(key))!, await inspect.pttl(key)]);
    await redis.stop();

    for (const target of [a, b]) {
      const refused = await useToken(target, kept.token);
      expect(refused.status, refused.text).toBe(503);
      expect(refused.json()).toMatchObject({ error_code: 'TEMPORARILY_UNAVAILABLE' });
      expect(refused.json<{ message: string }>().message).toMatch(/^the shared state store \(Redis\) is unreachable, so API tokens cannot be checked against revocations made on other gateways/);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.forwarded).toBe(false);
      // A well-formed made-up token is refused the same way; a malformed one still gets its reason.
      expect((await useToken(target, kept.token.slice(0, -1))).status).toBe(401);
      const basic = await target.request(SEARCH, { method: 'POST', auth: ['bob', 'bob-password'], headers: { 'content-type': 'application/json' }, body: '{"max_results":10}' });
      expect(basic.status).toBe(200);
    }
    const revoke = await b.request(`${API}/${kept.id}`, { method: 'DELETE', auth: ['bob', 'bob-password'] });
    expect(revoke.status).toBe(503);
    expect(revoke.json<{ message: string }>().message).toMatch(/^the shared state store \(Redis\) is unreachable, so the token was not revoked; try again once it is back/);
    const create = await a.request(API, { method: 'POST', auth: ['bob', 'bob-password'], headers: { 'content-type': 'application/json' }, body: '{"name":"during"}' });
    expect(create.status).toBe(503);
    expect(create.json<{ message: string }>().message).toMatch(/so no token was issued/);
    expect((await a.request(API, { auth: ['bob', 'bob-password'] })).status).toBe(503);
    const issued = cli(a, 'issue', 'bob', '--name', 'during');
    expect(issued.status).not.toBe(0);
    expect(issued.stdout).toBe('');
    expect(issued.stderr).toMatch(/the shared state store \(Redis\) is unreachable, so no token was issued/);
    const revokedByCli = cli(b, 'revoke', kept.id);
    expect(revokedByCli.status).not.toBe(0);
    expect(revokedByCli.stderr).toMatch(/the shared state store \(Redis\) is unreachable, so the token was not revoked/);

    await redis.start();
    if (inspect.status !== 'ready') await inspect.connect().catch(() => undefined);
    for (const [key, value, ttl] of dumped) await inspect.restore(key, ttl > 0 ? ttl : 0, value, 'REPLACE');
    for (const target of [a, b]) await waitForLog(target.logs, (line) => String(line.msg).startsWith('shared state store (Redis) reachable again'), 10_000);
    // A gateway counts Redis unreachable for a moment after its last failure: asked until it answers.
    for (const target of [a, b]) {
      let status = 0;
      for (let tries = 0; tries < 50 && status !== 200; tries++) {
        status = (await useToken(target, kept.token)).status;
        if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(status).toBe(200);
    }
    // The revoke refused during the outage changed nothing; made now, it holds everywhere.
    expect((await b.request(`${API}/${kept.id}`, { method: 'DELETE', auth: ['bob', 'bob-password'] })).status).toBe(200);
    for (const target of [a, b]) expect((await useToken(target, kept.token)).status).toBe(401);
  }, 30_000);
});

describe("an identity provider's refresh tokens, two gateways on one file", () => {
  const SECRET_VARIABLE = 'MLGATE_TEST_SHARED_REFRESH_SECRET';
  const HTML = 'text/html,application/xhtml+xml';
  let idp: TestIdp;
  let first: TestGateway;
  let second: TestGateway;

  beforeAll(async () => {
    process.env[SECRET_VARIABLE] = IDP_CLIENT_SECRET;
    idp = await startTestIdp();
    idp.refreshTokens = true;
    const replica = () => startTestGateway({
      upstream: upstream.url,
      htpasswd,
      config: {
        session: { secret: 'a-session-secret-both-gateways-share-0123456789' },
        state: { redis: { url: redis.url, timeout: '300ms' } },
        oidc: {
          refreshTokensFile: join(importDir, 'oidc-refresh-tokens.json'),
          providers: [{
            name: 'test', issuer: idp.issuer, clientId: IDP_CLIENT_ID, clientSecretEnv: SECRET_VARIABLE, ca: idp.caFile,
            scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'], requiredGroups: ['ml-users'], refreshInterval: '1s',
          }],
        },
      },
    });
    [first, second] = await Promise.all([replica(), replica()]);
    idp.configureClient({ redirectUris: [`${first.url}/-/oidc/callback`], postLogoutRedirectUris: [`${first.url}/-/login?signed-out`] });
  });
  afterAll(async () => {
    await first?.close();
    await second?.close();
    await idp?.close();
    delete process.env[SECRET_VARIABLE];
  });

  it('refresh one user at a time: the rotated token is never spent twice, and group changes reach the token in Redis', async () => {
    const person = (groups: string[]) => ({ preferred_username: 'fay', name: 'fay', email: 'fay@example.com', email_verified: true, groups });
    idp.users.fay = person(['ml-users']);
    const started = await first.request('/-/oidc/start?provider=test&next=/', { headers: { accept: HTML } });
    const flow = (started.headers['set-cookie'] ?? []).find((line) => line.startsWith('__Secure-mlgate-oidc='))!.split(';')[0]!;
    const back = new URL(await signInAtIdp(idp, started.headers.location!, 'fay'));
    const signedIn = await first.request(back.pathname + back.search, { headers: { accept: HTML, cookie: flow } });
    expect(signedIn.status, signedIn.text).toBe(303);
    const cookie = (signedIn.headers['set-cookie'] ?? []).find((line) => line.startsWith('__Host-mlgate-session='))!.split(';')[0]!;
    const made = await first.request(API, { method: 'POST', headers: { cookie, origin: first.url, 'content-type': 'application/json' }, body: '{"name":"fay-ci"}' });
    expect(made.status, made.text).toBe(201);
    const { token, id } = made.json<Made>();

    // Both gateways run refresh rounds every second on the same entry: several rounds each.
    // (A token spent twice answers invalid_grant, which reads as the provider dropping the user.)
    const dropped = (line: Record<string, unknown>) => String(line.msg).startsWith('identity provider dropped a user');
    const target = idp.refreshes + 6;
    for (let tries = 0; tries < 150 && idp.refreshes < target && ![...first.logs, ...second.logs].some(dropped); tries++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect([...first.logs, ...second.logs].filter(dropped)).toEqual([]);
    expect((await first.request('/-/whoami', { headers: { cookie } })).status).toBe(200);
    expect((await useToken(second, token)).status).toBe(200);

    idp.users.fay = person(['ml-users', 'team-x']);
    const changed = (line: Record<string, unknown>) => line.msg === "identity provider changed a user's groups" && line.user === 'fay';
    for (let tries = 0; tries < 80 && ![...first.logs, ...second.logs].some(changed); tries++) await new Promise((resolve) => setTimeout(resolve, 100));
    const views = (await second.request(`${API}?all=1`, { auth: ['admin', 'admin-password'] })).json<{ tokens: (View & { groups: string[] })[] }>().tokens;
    expect(views.find((view) => view.id === id)?.groups).toEqual(['ml-users', 'team-x']);
    expect([...first.logs, ...second.logs].filter(dropped)).toEqual([]);
  }, 30_000);
});
