// Several gateways sharing state in Redis (issue 17), side by side with one gateway without it, in
// the same rounds. What the shared state costs a request on the hot path:
//
//   Basic    the shared lockout check runs only for an attempt about to be hashed, so a credential
//            this gateway verified recently costs no lockout round trip; what else each request
//            asks Redis (e.g. whether grants changed) shows as Redis commands per request.
//   session  a browser session's cookie: every request asks Redis whether it was signed out (one
//            EXISTS), on whichever gateway it lands. The cookie is made by signing in on gateway A
//            and used on both A and B, so each round also shows that B accepts A's sessions (the
//            same session.secret) through the one Redis.
//
// The load is small-basic's (POST log-metric, keep-alive, 50 connections), split over the two
// gateways (wrk -t1 -c25 on each, at the same time) against all of it on the one gateway; then
// one connection alone (wrk -t1 -c1) on gateway A against the one gateway: the latency the Redis
// round trip adds. Redis' own count of the commands it ran (INFO commandstats) during the load is
// divided by the requests: the shared checks each request really made.
import { randomBytes } from 'node:crypto';
import { LOG_METRIC, METRIC_BODY } from '../lib/mlflow-fixture.ts';
import { request } from '../lib/net.ts';
import { stopProcess } from '../lib/processes.ts';
import { hasCommand } from '../lib/workspace.ts';
import { runLoad } from '../load/http-load.ts';
import { paired, describePaired, type Row } from '../report/rows.ts';
import { formatMs, formatNumber } from '../report/table.ts';
import { startMlgate, type Mlgate } from '../servers/mlgate.ts';
import { commandsRun, startRedis, type BenchRedis } from '../servers/redis.ts';
import { requireSuccess, type BenchCase, type CaseContext, type Measurement, type Variant } from './bench-case.ts';

type Credential = 'basic' | 'session';
type Layout = 'one' | 'two';
const VARIANTS: readonly (Variant & { credential: Credential; layout: Layout })[] = [
  { name: 'basic-one', label: 'Basic, 1 gateway, no Redis', credential: 'basic', layout: 'one' },
  { name: 'basic-two', label: 'Basic, 2 gateways + Redis', credential: 'basic', layout: 'two' },
  { name: 'session-one', label: 'session cookie, 1 gateway, no Redis', credential: 'session', layout: 'one' },
  { name: 'session-two', label: 'session cookie, 2 gateways + Redis', credential: 'session', layout: 'two' },
];
const CONNECTIONS = 50;
/** Unmeasured load on each fresh gateway: Node runs 30-50% slower for its first seconds (JIT, heap). */
const WARM_UP_S = 4;

interface Setup {
  redis: BenchRedis;
  single: Mlgate;
  pair: [Mlgate, Mlgate];
  /** The session cookie for the one gateway, and the one made on A for both A and B. */
  cookies: { one: string; two: string };
}

let setup: Promise<Setup> | undefined;
let measured = 0;

async function start(ctx: CaseContext): Promise<Setup> {
  // Every gateway of a group has the same session secret; the one gateway too, so only Redis differs.
  const secret = randomBytes(36).toString('base64url');
  const redis = await startRedis(randomBytes(18).toString('base64url'));
  const session = ['session:', `  secret: ${JSON.stringify(secret)}`];
  const shared = [...session, 'state:', '  redis:', `    url: ${JSON.stringify(redis.url)}`, `    password: ${JSON.stringify(redis.password)}`];
  const gateway = (name: string, extraConfig: string[]) => startMlgate(ctx.ws, { name, upstreamUrl: ctx.upstreamUrl, tls: false, workersAuto: false, extraConfig });
  const single = await gateway('shared-state-one', session);
  const pair: [Mlgate, Mlgate] = [await gateway('shared-state-a', shared), await gateway('shared-state-b', shared)];
  for (const instance of [single, ...pair]) {
    const warm = await runLoad({ url: instance.url + LOG_METRIC, script: 'post-metric', threads: 2, connections: CONNECTIONS, durationS: WARM_UP_S, env: { BENCH_AUTHORIZATION: ctx.ws.authorization } });
    requireSuccess(`${instance.url}, unmeasured warm-up run`, warm.requests, warm.non2xx);
  }
  return { redis, single, pair, cookies: { one: await signIn(ctx, single), two: await signIn(ctx, pair[0]) } };
}

/** Signs in with the password form, as a browser does; the session cookie back, as "name=value". */
async function signIn(ctx: CaseContext, instance: Mlgate): Promise<string> {
  const reply = await request(`${instance.url}/-/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: instance.url },
    body: new URLSearchParams({ username: ctx.ws.user.name, password: ctx.ws.user.password, next: '/' }).toString(),
    timeoutMs: 30_000,
  });
  const cookie = ([] as string[]).concat(reply.headers['set-cookie'] ?? []).map((header) => header.split(';')[0]!).find((pair) => /session/i.test(pair.split('=')[0]!));
  if (reply.status !== 303 || !cookie) throw new Error(`sign-in on ${instance.url} answered ${reply.status} without a session cookie: ${reply.body.slice(0, 200)}`);
  return cookie;
}

function credentialEnv(ctx: CaseContext, credential: Credential, cookie: string, instance: Mlgate): Record<string, string> {
  return credential === 'basic' ? { BENCH_AUTHORIZATION: ctx.ws.authorization } : { BENCH_COOKIE: cookie, BENCH_ORIGIN: instance.url };
}

async function measure(ctx: CaseContext, variant: (typeof VARIANTS)[number]): Promise<Measurement> {
  const { redis, single, pair, cookies } = await (setup ??= start(ctx));
  const gateways = variant.layout === 'one' ? [single] : pair;
  const cookie = variant.layout === 'one' ? cookies.one : cookies.two;
  const load = (instance: Mlgate, threads: number, connections: number) => ({
    url: instance.url + LOG_METRIC, script: 'post-metric' as const, threads, connections, durationS: ctx.options.durationS,
    env: credentialEnv(ctx, variant.credential, cookie, instance),
  });
  // A refusal is fast and would read as a fast gateway: each gateway must take this credential first.
  for (const instance of gateways) {
    const env = credentialEnv(ctx, variant.credential, cookie, instance);
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(env.BENCH_AUTHORIZATION ? { authorization: env.BENCH_AUTHORIZATION } : { cookie: env.BENCH_COOKIE!, origin: env.BENCH_ORIGIN! }) };
    const reply = await request(instance.url + LOG_METRIC, { method: 'POST', headers, body: METRIC_BODY, timeoutMs: 30_000 });
    if (reply.status !== 200) throw new Error(`${variant.label}: POST log-metric on ${instance.url} answered ${reply.status}: ${reply.body.slice(0, 300)}`);
  }

  const before = await commandsRun(redis);
  const runs = await Promise.all(gateways.map((instance) => runLoad(load(instance, 2 / gateways.length, CONNECTIONS / gateways.length))));
  const after = await commandsRun(redis);
  runs.forEach((run, i) => requireSuccess(`${variant.label} (${gateways[i]!.url})`, run.requests, run.non2xx));
  const requests = runs.reduce((sum, run) => sum + run.requests, 0);
  if (requests === 0) throw new Error(`${variant.label}: no answer within the run`);

  const alone = await runLoad(load(gateways[0]!, 1, 1));
  requireSuccess(`${variant.label}, one connection`, alone.requests, alone.non2xx);
  // Each kind of command per request (extra keys "redis:get", ...), and all of them.
  const perRequest: Record<string, number> = Object.fromEntries([...after].map(([name, calls]): [string, number] => [`redis:${name}`, (calls - (before.get(name) ?? 0)) / requests]).filter(([, rate]) => rate !== 0));
  const commands = Object.values(perRequest).reduce((sum, rate) => sum + rate, 0);
  return {
    value: runs.reduce((sum, run) => sum + run.requestsPerS, 0),
    // Over both gateways: the slower one's, as a client of the pair may land on either.
    p50Ms: Math.max(...runs.map((run) => run.p50Ms)),
    p99Ms: Math.max(...runs.map((run) => run.p99Ms)),
    extra: { requests, redisPerRequest: commands, ...perRequest, oneConnP50Ms: alone.p50Ms, oneConnP99Ms: alone.p99Ms },
  };
}

export const sharedState: BenchCase = {
  name: 'shared-state',
  unit: 'req/s',
  about: `POST log-metric, keep-alive, ${CONNECTIONS} connections: two gateways sharing one redis-server (wrk -t1 -c${CONNECTIONS / 2} on each at once; p50/p99 the slower's) `
    + 'against one gateway without Redis (wrk -t2 -c50), with Basic and with a session cookie (signed in on A, used on A and B); '
    + 'then one connection (wrk -t1 -c1) on gateway A against the one gateway: the latency the shared checks add',
  flavor: 'own',
  targets: ['mlgate'],
  async skipReason() {
    return (await hasCommand('redis-server')) ? undefined : 'redis-server is not installed (Debian: apt-get install redis-server)';
  },
  variants: () => VARIANTS,
  async measure(ctx, _target, _endpoint, variant) {
    try {
      return await measure(ctx, VARIANTS.find((v) => v.name === variant!.name)!);
    } finally {
      // Its own servers, stopped after the last round (and by the runner's clean-up should a round throw past here).
      if (++measured === VARIANTS.length * ctx.options.rounds && setup) {
        const { redis, single, pair } = await setup.catch(() => ({ redis: undefined, single: undefined, pair: [] as Mlgate[] }));
        for (const instance of [single, ...pair]) if (instance) await stopProcess(instance.process, 5000);
        if (redis) await stopProcess(redis.process, 2000);
      }
    }
  },
  notes(extra) {
    const parts: string[] = [];
    if (extra.oneConnP50Ms !== undefined) parts.push(`1 conn p50 ${formatMs(extra.oneConnP50Ms)}`);
    if (extra.redisPerRequest !== undefined) parts.push(`${extra.redisPerRequest.toFixed(2)} Redis commands per request${describeCommands(extra)}`);
    return parts.join(', ');
  },
  compare(rows: Row[]): string[] {
    const lines: string[] = [];
    for (const credential of ['basic', 'session'] as const) {
      const one = rows.find((row) => row.variant === `${credential}-one`);
      const two = rows.find((row) => row.variant === `${credential}-two`);
      if (one?.status !== 'ok' || two?.status !== 'ok') continue;
      const throughput = paired(two, one);
      if (throughput) {
        two.extra.vsOne = throughput.median;
        two.notes = [`${describePaired(throughput)} of 1 gateway`, two.notes].filter(Boolean).join('; ');
      }
      const added = two.extra.oneConnP50Ms! - one.extra.oneConnP50Ms!;
      two.extra.addedP50Ms = added;
      lines.push(`${credential.padEnd(8)} 2 gateways + Redis ${formatNumber(two.value!)} req/s, 1 gateway ${formatNumber(one.value!)} req/s: ${describePaired(throughput)};`
        + ` one connection p50 ${formatMs(two.extra.oneConnP50Ms)} against ${formatMs(one.extra.oneConnP50Ms)} (${added >= 0 ? '+' : '-'}${formatMs(Math.abs(added))} per request);`
        + ` ${two.extra.redisPerRequest!.toFixed(2)} Redis commands per request${describeCommands(two.extra)}`);
    }
    if (lines.length) lines.unshift('shared-state: two gateways sharing Redis against one gateway without it (req/s medians; ratio the median of each round\'s, lowest-highest round):');
    return lines;
  },
};

/** " (get 1.00, exists 1.00)": which commands the requests made, from the "redis:<name>" extras. */
function describeCommands(extra: Record<string, number>): string {
  const kinds = Object.entries(extra).filter(([key, rate]) => key.startsWith('redis:') && rate >= 0.005).map(([key, rate]) => `${key.slice('redis:'.length)} ${rate.toFixed(2)}`);
  return kinds.length ? ` (${kinds.join(', ')})` : '';
}
