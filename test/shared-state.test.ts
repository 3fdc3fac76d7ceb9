// Several gateways sharing state in Redis (state.redis): a lockout earned on one holds on the other,
// a sign-out on one is refused by the other at its very next request, and with Redis stopped the
// documented behaviour (Basic still works, cookie sessions are refused naming the state store,
// /-/readyz says degraded) until Redis is back. A real redis-server, stopped and started mid-run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { startTestRedis, type TestRedis } from './helpers/redis.ts';
import { signIn, signOut } from './helpers/sign-in.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password', carol: 'carol-password', dave: 'dave-password' };
const LOCKOUT = { window: '10s', maxUserFailures: 3, maxIpFailures: 50, backoff: '3s', backoffMax: '6s' };
const SESSION_SECRET = 'a-session-secret-both-gateways-share-0123456789';

let upstream: MlflowUpstream;
let redis: TestRedis;
let a: TestGateway;
let b: TestGateway;
/** The same file on both (the session cookie carries a fingerprint of the user's hash). */
let htpasswd: string;

function gateway(): Promise<TestGateway> {
  return startTestGateway({
    upstream: upstream.url,
    htpasswd,
    config: {
      lockout: LOCKOUT,
      proxy: { trustedProxies: ['127.0.0.1'] },
      session: { secret: SESSION_SECRET },
      state: { redis: { url: redis.url, timeout: '300ms' } },
    },
  });
}

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  redis = await startTestRedis();
  htpasswd = await htpasswdLines(USERS);
  [a, b] = await Promise.all([gateway(), gateway()]);
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await redis?.stop();
  await upstream?.close();
});

const API = '/-/whoami';
const basic = (target: TestGateway, user: string, password: string, ip: string) =>
  target.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: [user, password], headers: { 'x-forwarded-for': ip }, body: '{"max_results":10}' });
const withCookie = (target: TestGateway, cookie: string) => target.request(API, { headers: { cookie } });

describe('two gateways sharing Redis', () => {
  it('a lockout earned on A holds on B', async () => {
    for (const ip of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) expect((await basic(a, 'alice', 'guess', ip)).status).toBe(401);
    const before = b.gateway.passwordChecker.verifications;
    const res = await basic(b, 'alice', 'alice-password', '10.1.0.9');
    expect(res.status).toBe(401);
    expect(res.json<{ message: string }>().message).toMatch(/^too many failed sign-ins for user "alice"; try again in [23] seconds$/);
    expect(b.gateway.passwordChecker.verifications).toBe(before);
    // Failures counted on both add up: two on A and one on B lock bob.
    expect((await basic(a, 'bob', 'guess', '10.2.0.1')).status).toBe(401);
    expect((await basic(b, 'bob', 'guess', '10.2.0.2')).status).toBe(401);
    expect((await basic(a, 'bob', 'guess', '10.2.0.3')).status).toBe(401);
    expect((await basic(b, 'bob', 'bob-password', '10.2.0.4')).json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "bob"/);
    // Others notice nothing.
    expect((await basic(b, 'carol', 'carol-password', '10.3.0.1')).status).toBe(200);
  });

  it('a sign-out on A is refused on B by the next request after it returns', async () => {
    const cookie = await signIn(a, 'carol', 'carol-password');
    expect((await withCookie(b, cookie)).status).toBe(200);
    expect((await withCookie(a, cookie)).status).toBe(200);
    await signOut(a, cookie);
    const res = await withCookie(b, cookie);
    expect(res.status, res.text).toBe(401);
  });

  it('Redis stopped: Basic works, cookies are refused naming the store, readyz is degraded; back: cookies work', async () => {
    const cookie = await signIn(b, 'carol', 'carol-password');
    expect((await withCookie(a, cookie)).status).toBe(200);
    await redis.stop();
    for (const target of [a, b]) {
      expect((await basic(target, 'carol', 'carol-password', '10.4.0.1')).status).toBe(200);
      // A password not yet verified on this gateway: hashed, lockouts counted locally.
      expect((await basic(target, 'admin', 'admin-password', '10.4.0.2')).status).toBe(200);
      const refused = await withCookie(target, cookie);
      expect(refused.status).toBe(401);
      expect(refused.text).toContain('shared state store (Redis) is unreachable');
      const ready = await target.request('/-/readyz');
      expect(ready.status).toBe(200);
      expect(ready.json()).toMatchObject({ status: 'degraded' });
      const detailed = await target.request('/-/readyz', { auth: ['admin', 'admin-password'] });
      expect(detailed.json()).toMatchObject({ status: 'degraded', stateStore: { redis: 'unreachable' } });
    }
    await waitForLog(a.logs, (line) => String(line.msg).startsWith('shared state store (Redis) unreachable'));
    // Lockouts are counted by each gateway alone meanwhile: three failures on A lock dave on A.
    for (const ip of ['10.5.0.1', '10.5.0.2', '10.5.0.3']) expect((await basic(a, 'dave', 'wrong', ip)).status).toBe(401);
    expect((await basic(a, 'dave', 'dave-password', '10.5.0.4')).json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "dave"/);

    await redis.start();
    await waitForLog(a.logs, (line) => String(line.msg).startsWith('shared state store (Redis) reachable again'), 10_000);
    await waitForLog(b.logs, (line) => String(line.msg).startsWith('shared state store (Redis) reachable again'), 10_000);
    expect((await withCookie(a, cookie)).status).toBe(200);
    expect((await withCookie(b, cookie)).status).toBe(200);
    expect((await b.request('/-/readyz')).json()).toMatchObject({ status: 'ready' });
  }, 30_000);
});

describe('state.redis configuration', () => {
  function load(redisConfig: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-state-'));
    try {
      const configPath = join(dir, 'mlgate.yaml');
      writeFileSync(configPath, JSON.stringify({ state: { redis: redisConfig } }));
      return loadConfig({ configPath, env, cwd: dir }).config;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('takes the password from MLGATE_STATE_REDIS_PASSWORD, and refuses one in the URL or another scheme', () => {
    expect(load({ url: 'rediss://redis.internal:6380/0' }, { MLGATE_STATE_REDIS_PASSWORD: 'pw' }).state.redis).toEqual({ url: 'rediss://redis.internal:6380/0', password: 'pw', keyPrefix: 'mlgate:', timeout: 1000 });
    expect(() => load({ url: 'redis://user:secret@redis.internal/0' })).toThrow(/must not hold a password/);
    expect(() => load({ url: 'http://redis.internal' })).toThrow(/redis:\/\/ or rediss:\/\//);
  });

  it('authenticates with the password to a Redis that asks for one', async () => {
    const guarded = await startTestRedis('a-redis-password');
    const target = await startTestGateway({
      upstream: upstream.url,
      htpasswd,
      config: { session: { secret: SESSION_SECRET }, state: { redis: { url: guarded.url, timeout: '300ms' } } },
      env: { MLGATE_STATE_REDIS_PASSWORD: 'a-redis-password' },
    });
    try {
      const cookie = await signIn(target, 'carol', 'carol-password');
      expect((await withCookie(target, cookie)).status).toBe(200);
      expect((await target.request('/-/readyz')).json()).toMatchObject({ status: 'ready' });
    } finally {
      await target.close();
      await guarded.stop();
    }
  });
});
