// Grant changes across gateways that share Redis (state.redis; docs/operations.md "Several gateways"):
// a grant or revocation made through one gateway's API, or by `mlgate grant|revoke`, is in force on
// the other by the next request after it returns; with Redis stopped the caches' TTL is the bound,
// and once Redis is back every gateway drops its permission cache. A real redis-server, stopped and
// started mid-run; the gateways as a user starts them; the CLI in its own process.
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { announceGrantChange } from '../src/state/grant-invalidation.ts';
import { spawnCli, type CliResult } from './helpers/cli.ts';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { startTestRedis, type TestRedis } from './helpers/redis.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password' };
const ALICE = basic('alice', 'alice-password');
const BOB = basic('bob', 'bob-password');
const ADMIN = basic('admin', 'admin-password');
const JSON_HEADERS = { 'content-type': 'application/json' };
const POLICY = { admins: ['admin'], default: 'READ', workspaces: { 'team-a': { default: 'READ' } } };

let upstream: MlflowUpstream;
let redis: TestRedis;
let htpasswd: string;
/** A and B: a long cache TTL, so only the invalidation can explain a change seen at once. */
let a: TestGateway;
let b: TestGateway;
/** The experiment alice owns (MANAGE); bob has READ from the policy until granted more. */
let churn: string;

function gateway(cacheTtl: string): Promise<TestGateway> {
  return startTestGateway({
    upstream: upstream.url,
    htpasswd,
    policy: POLICY,
    config: { authz: { cacheTtl }, state: { redis: { url: redis.url, timeout: '1s' } } },
  });
}

beforeAll(async () => {
  upstream = await startMlflowUpstream({ workspacesEnabled: true, defaultExperiment: true });
  redis = await startTestRedis();
  htpasswd = await htpasswdLines(USERS);
  churn = upstream.store.addExperiment('shared/churn', [{ key: 'mlgate.owner', value: 'alice' }]).experiment_id;
  [a, b] = await Promise.all([gateway('1m'), gateway('1m')]);
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await redis?.stop();
  await upstream?.close();
});

const grantPath = (experiment: string, user: string, workspace?: string) =>
  `/-/api/permissions/experiments/${experiment}/grants/users/${user}${workspace ? `?workspace=${workspace}` : ''}`;

async function grant(target: TestGateway, user: string, level: string, experiment = churn, workspace?: string): Promise<void> {
  const res = await target.request(grantPath(experiment, user, workspace), { method: 'PUT', headers: { authorization: ALICE, ...JSON_HEADERS }, body: JSON.stringify({ level }) });
  expect(res.status, res.text).toBe(200);
}

async function revoke(target: TestGateway, user: string, experiment = churn, workspace?: string): Promise<void> {
  const res = await target.request(grantPath(experiment, user, workspace), { method: 'DELETE', headers: { authorization: ALICE } });
  expect(res.status, res.text).toBe(200);
}

/** Through the /-/permissions page's form, as alice's browser sends it. */
async function pageForm(target: TestGateway, action: 'grant' | 'revoke', fields: Record<string, string>): Promise<void> {
  const res = await target.request('/-/permissions', {
    method: 'POST',
    headers: { authorization: ALICE, 'content-type': 'application/x-www-form-urlencoded', origin: target.url },
    body: new URLSearchParams({ action, kind: 'experiment', resource: churn, grantee: 'bob', ...fields }).toString(),
  });
  expect(res.status, res.text).toBe(303);
  expect(res.headers.location).toMatch(/done=(granted|revoked)/);
}

/** An EDIT request of bob's; its tag key is unique, so whether it reached MLflow is plain to see. */
function bobTags(target: TestGateway, key: string, experiment = churn, workspace?: string) {
  return target.request('/api/2.0/mlflow/experiments/set-experiment-tag', {
    method: 'POST',
    headers: { authorization: BOB, ...JSON_HEADERS, ...(workspace ? { 'x-mlflow-workspace': workspace } : {}) },
    body: JSON.stringify({ experiment_id: experiment, key, value: 'x' }),
  });
}

const reachedUpstream = (key: string) => upstream.requests.some((request) => request.url.endsWith('/set-experiment-tag') && request.body.includes(`"${key}"`));

/** Refused with 403, and MLflow never got it. */
async function refused(target: TestGateway, key: string, experiment = churn, workspace?: string): Promise<void> {
  const res = await bobTags(target, key, experiment, workspace);
  expect(res.status, res.text).toBe(403);
  expect(reachedUpstream(key)).toBe(false);
}

async function allowed(target: TestGateway, key: string, experiment = churn, workspace?: string): Promise<void> {
  const res = await bobTags(target, key, experiment, workspace);
  expect(res.status, res.text).toBe(200);
  expect(reachedUpstream(key)).toBe(true);
}

async function metrics(target: TestGateway): Promise<string> {
  const res = await target.request('/-/metrics', { headers: { authorization: ADMIN } });
  expect(res.status).toBe(200);
  return res.text;
}

function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function cli(args: string[], target: TestGateway): Promise<CliResult> {
  const run = spawnCli([...args, '--config', join(target.dir, 'mlgate.yaml')], { cwd: target.dir });
  run.child.stdin.end();
  const status = await run.exited;
  return { status, ...run.output() };
}

describe('grant changes on two gateways sharing Redis', () => {
  it('a grant through A is in force on B, and a revocation through B refused on A, by the next request', async () => {
    // Both gateways have bob's READ cached before each change.
    await refused(a, 'primed-a');
    await refused(b, 'primed-b');
    for (let round = 0; round < 12; round++) {
      await grant(a, 'bob', 'EDIT');
      await allowed(b, `granted-${round}`);
      await revoke(b, 'bob');
      await refused(a, `revoked-${round}`);
      // And the other way round.
      await grant(b, 'bob', 'EDIT');
      await allowed(a, `granted-back-${round}`);
      await revoke(a, 'bob');
      await refused(b, `revoked-back-${round}`);
    }
  });

  it('through the /-/permissions page too', async () => {
    await refused(b, 'page-before');
    await pageForm(a, 'grant', { level: 'EDIT' });
    await allowed(b, 'page-granted');
    await pageForm(b, 'revoke', {});
    await refused(a, 'page-revoked');
  });

  it('the change is announced before the answer: Redis holding writes back delays the answer, not the effect', async () => {
    await refused(b, 'paused-before');
    const client = new Redis(redis.url);
    try {
      // Reads go on (B's look-up of the epoch), writes wait (A's announcement): an answer sent
      // before the announcement was taken would leave B's next request on its cached READ.
      await client.call('CLIENT', 'PAUSE', '150', 'WRITE');
      await grant(a, 'bob', 'EDIT');
      await allowed(b, 'paused-granted');
      await client.call('CLIENT', 'PAUSE', '150', 'WRITE');
      await revoke(a, 'bob');
      await refused(b, 'paused-revoked');
    } finally {
      client.disconnect();
    }
  });

  it("a grant tag set or deleted through MLflow's own API is announced too, before the answer", async () => {
    const tag = (target: TestGateway, action: 'set' | 'delete') => target.request(`/api/2.0/mlflow/experiments/${action}-experiment-tag`, {
      method: 'POST',
      headers: { authorization: ALICE, ...JSON_HEADERS },
      body: JSON.stringify({ experiment_id: churn, key: 'mlgate.grant.user.bob', ...(action === 'set' ? { value: 'EDIT' } : {}) }),
    });
    await refused(b, 'api-tag-before');
    const client = new Redis(redis.url);
    try {
      await client.call('CLIENT', 'PAUSE', '150', 'WRITE');
      const set = await tag(a, 'set');
      expect(set.status, set.text).toBe(200);
      await allowed(b, 'api-tag-granted');
      await client.call('CLIENT', 'PAUSE', '150', 'WRITE');
      const deleted = await tag(b, 'delete');
      expect(deleted.status, deleted.text).toBe(200);
      await refused(a, 'api-tag-revoked');
    } finally {
      client.disconnect();
    }
  });

  it('a grant by `mlgate grant` is in force on both gateways by the next request, its revocation too', async () => {
    await refused(a, 'before-cli-a');
    await refused(b, 'before-cli-b');
    const granted = await cli(['grant', 'bob', 'experiment', churn, 'EDIT'], a);
    expect(granted.status, granted.stderr).toBe(0);
    expect(granted.stderr).toBe('');
    await allowed(a, 'cli-granted-a');
    await allowed(b, 'cli-granted-b');
    const revoked = await cli(['revoke', 'bob', 'experiment', churn], b);
    expect(revoked.status, revoked.stderr).toBe(0);
    await refused(a, 'cli-revoked-a');
    await refused(b, 'cli-revoked-b');
  });

  it('a change of which no message was heard is caught by the epoch', async () => {
    await refused(b, 'before-silent');
    // As if B missed the message: the grant written behind the gateways' backs, only the epoch bumped.
    upstream.store.experiments.get(churn)!.tags.push({ key: 'mlgate.grant.user.bob', value: 'EDIT' });
    const client = new Redis(redis.url);
    try {
      await client.incr('mlgate:grants:epoch');
    } finally {
      client.disconnect();
    }
    await allowed(b, 'silent-granted');
    expect(metricValue(await metrics(b), 'mlgate_grant_invalidations_total{cause="epoch"}')).toBeGreaterThanOrEqual(1);
    await revoke(b, 'bob');
    await refused(a, 'silent-revoked');
  });

  it("a message drops the grant's resource in its workspace", async () => {
    const experiment = upstream.store.addExperiment('team-a/forecast', [{ key: 'mlgate.owner', value: 'alice' }]).experiment_id;
    await refused(b, 'ws-before', experiment, 'team-a');
    // Its entry in the default workspace must not be what is dropped.
    await refused(b, 'ws-before-default', experiment);
    const heard = metricValue(await metrics(b), 'mlgate_grant_invalidations_total{cause="message"}') ?? 0;
    upstream.store.experiments.get(experiment)!.tags.push({ key: 'mlgate.grant.user.bob', value: 'EDIT' });
    // The CLI's announcement, without the CLI: the message is heard before the next request, so the
    // epoch is seen already and only the precise drop can let bob in.
    expect(await announceGrantChange(a.config.state.redis!, { workspace: 'team-a', kind: 'experiment', id: experiment, name: 'team-a/forecast' })).toBeUndefined();
    for (let tries = 0; (metricValue(await metrics(b), 'mlgate_grant_invalidations_total{cause="message"}') ?? 0) === heard; tries++) {
      expect(tries).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await allowed(b, 'ws-granted', experiment, 'team-a');
    await grant(a, 'bob', 'EDIT', experiment, 'team-a');
    await revoke(a, 'bob', experiment, 'team-a');
    await refused(b, 'ws-revoked', experiment, 'team-a');
  });

  it('Redis stopped: the cache TTL bounds what is missed; back: every gateway drops its permission cache', async () => {
    const short = await gateway('1s');
    try {
      await refused(short, 'outage-before-short');
      await refused(b, 'outage-before-b');
      expect(metricValue(await metrics(b), 'mlgate_redis_up')).toBe(1);
      await redis.stop();
      await grant(a, 'bob', 'EDIT');
      await waitForLog(a.logs, (line) => String(line.msg).startsWith('grant change not announced'));
      // The command writes the grant all the same, and says the gateways were not told.
      const command = await cli(['grant', 'bob', 'experiment', churn, 'EDIT'], b);
      expect(command.status, command.stderr).toBe(0);
      expect(command.stderr).toMatch(/^warning: the change is written to MLflow, but the gateways could not be told through Redis at redis:\/\/127\.0\.0\.1:\d+ \(.+\); each applies it within authz\.cacheTtl \(60 s\)\n$/);
      // The gateway that made the change knows it at once; the short-TTL one within its TTL.
      await allowed(a, 'outage-granted-a');
      for (let tries = 0; (await bobTags(short, `outage-granted-short-${tries}`)).status !== 200; tries++) {
        expect(tries, 'the short-TTL gateway never saw the grant').toBeLessThan(100);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      // B (TTL 1m) still has bob's READ cached: nothing told it.
      await refused(b, 'outage-stale-b');
      const down = await metrics(b);
      expect(metricValue(down, 'mlgate_redis_up')).toBe(0);
      expect(metricValue(down, 'mlgate_redis_failures_total{kind="connection"}')).toBeGreaterThanOrEqual(1);
      expect(metricValue(await metrics(a), 'mlgate_grant_announce_failures_total')).toBe(1);

      await redis.start();
      await waitForLog(b.logs, (line) => String(line.msg).startsWith('permission caches dropped'), 10_000);
      await allowed(b, 'outage-after-b');
      const up = await metrics(b);
      expect(metricValue(up, 'mlgate_redis_up')).toBe(1);
      expect(metricValue(up, 'mlgate_grant_invalidations_total{cause="reconnection"}')).toBe(1);
      // And shared again: a revocation through A refused on B by the next request.
      await revoke(a, 'bob');
      await refused(b, 'outage-revoked-b');
    } finally {
      await short.close();
    }
  }, 30_000);
});
