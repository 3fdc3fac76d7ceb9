// Scale-out as a team runs it (issue 17): two gateway processes started as a user starts them
// (`mlgate serve --config`), sharing a real Redis, in front of two real MLflow servers on one real
// PostgreSQL. What one gateway learns (a sign-out, a lockout, a grant, a token) holds on the other by
// the next request; one MLflow server dies mid-load and clients notice nothing they had not sent;
// Redis goes away and comes back with the documented behaviour. Every refused write is read back
// from MLflow itself, around the gateways, to prove it was not carried out.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningUrl, spawnCli, stopCli, type RunningCli } from '../helpers/cli.ts';
import { htpasswdLines, type TestGateway } from '../helpers/gateway.ts';
import { request, type RequestOptions, type TestResponse } from '../helpers/http-client.ts';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { postgresProblem, startTestPostgres, type TestPostgres } from '../helpers/postgres.ts';
import { MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';
import { startTestRedis, type TestRedis } from '../helpers/redis.ts';
import { isListening } from '../helpers/tls.ts';
import { signIn, signOut } from '../helpers/sign-in.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password', carol: 'carol-password', dave: 'dave-password', erin: 'erin-password', frank: 'frank-password', grace: 'grace-password', heidi: 'heidi-password' };
const LOCKOUT = { window: '30s', maxUserFailures: 3, maxIpFailures: 50, backoff: '20s', backoffMax: '30s' };
const SESSION_SECRET = 'a-session-secret-both-gateways-share-0123456789';

/** Why this machine cannot run the suite, beyond MLflow (which mlflowServersFor reports). */
function missingTools(python: string): string | undefined {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) return 'no redis-server: apt-get install redis-server (.ci/run installs it)';
  if (spawnSync(python, ['-c', 'import psycopg2'], { stdio: 'ignore' }).status !== 0) return `${python} cannot import psycopg2 (MLflow's PostgreSQL driver): bash ../shared/mlflow/install.sh --postgres`;
  return postgresProblem();
}

// MLflow 3 (the version teams scale out today); the other version's schema would need a database and
// a pair of servers of its own, for no path of the gateway's that differs.
const mlflow = mlflowServersFor('two gateways and two MLflow servers on one PostgreSQL', { mlflow3Only: true }).at(-1);
const problem = mlflow ? missingTools(mlflow.python) : undefined;
if (problem) {
  describe(`two gateways and two MLflow servers on one PostgreSQL (skipped: ${problem})`, () => {
    it.skip(problem, () => {});
  });
}

interface LoadOutcome {
  gateway: string;
  step: number;
  sentAt: number;
  endedAt: number;
  status: number;
  text: string;
  kind: 'ok' | 'in-flight' | 'cut-off' | 'not-sent' | 'other';
}

/**
 * What became of one request: answered; failed on a server that died under it (sent, so it may or
 * may not have been carried out: the gateway must not send it again), with a 502 or, when the
 * server's answer had begun, the connection cut; or a failure it was never sent for (a refused
 * connection, no server up), which the other server should have taken.
 */
function outcomeKind(status: number, text: string): LoadOutcome['kind'] {
  if (status === 200) return 'ok';
  if (status === 502 && /\((ECONNRESET|socket hang up|EPIPE)\)/.test(text)) return 'in-flight';
  if (status === 0 && /socket hang up|ECONNRESET/.test(text)) return 'cut-off';
  if (status >= 500 && /ECONNREFUSED|none of the MLflow tracking servers is up/.test(text)) return 'not-sent';
  return 'other';
}

/** `mlgate serve` in its own process, on its own directory (its own token and revocation files: only Redis is shared). */
interface GatewayProcess {
  name: string;
  url: string;
  dir: string;
  cli: RunningCli;
  request(path: string, options?: RequestOptions): Promise<TestResponse>;
  /** Resolves when the gateway has printed a line matching `pattern` since `from` (an offset in its output). */
  waitForOutput(pattern: RegExp, from: number, timeoutMs?: number): Promise<void>;
  outputLength(): number;
}

/** The sign-in helpers take a gateway by its URL and its request function; a process has both. */
const asPages = (gw: GatewayProcess) => gw as unknown as TestGateway;

let postgres: TestPostgres;
let redis: TestRedis;
let mlflowA: RunningMlflow;
let mlflowB: RunningMlflow;
let a: GatewayProcess;
let b: GatewayProcess;
let directA: MlflowDirect;
let directB: MlflowDirect;
const gatewayDirs: string[] = [];
let artifacts: string;

async function startGatewayProcess(name: string, upstream: string | string[], htpasswd: string): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), `mlgate-scale-out-${name}-`));
  gatewayDirs.push(dir);
  writeFileSync(join(dir, 'htpasswd'), htpasswd, { mode: 0o600 });
  writeFileSync(join(dir, 'policy.yaml'), stringify({ admins: ['admin'], default: 'READ' }));
  writeFileSync(join(dir, 'mlgate.yaml'), stringify({
    host: '127.0.0.1',
    port: 0,
    // One process per gateway: with Redis away the test counts lockouts per gateway, and each worker
    // process of a gateway would count alone (docs/operations.md).
    workers: 1,
    upstream,
    tls: { enabled: false },
    auth: { htpasswd: 'htpasswd', bcryptCost: 4, hashWorkers: 1 },
    // A grant cached for ten minutes: only the shared invalidation, not the TTL, can put a grant made on A in force on B.
    authz: { policyFile: 'policy.yaml', cacheTtl: '10m' },
    session: { secret: SESSION_SECRET, revocationsFile: 'session-revocations.json' },
    tokens: { file: 'tokens.json' },
    lockout: LOCKOUT,
    // Checked every second, out after one failed check: the kill test sees B taken out within its load.
    proxy: { trustedProxies: ['127.0.0.1'], healthCheck: { interval: '1s', timeout: '500ms', fails: 1, passes: 1 } },
    state: { redis: { url: redis.url, timeout: '300ms' } },
    log: { level: 'info' },
  }));
  const cli = spawnCli(['serve', '--config', 'mlgate.yaml'], { cwd: dir });
  const url = await listeningUrl(cli);
  const text = () => cli.output().stdout + cli.output().stderr;
  return {
    name,
    url,
    dir,
    cli,
    request: (path, options) => request(url + path, options),
    outputLength: () => text().length,
    async waitForOutput(pattern, from, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(text().slice(from))) {
        if (Date.now() > deadline) throw new Error(`gateway ${name} printed nothing matching ${pattern} in ${timeoutMs} ms:\n${text().slice(from).slice(-3000)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

const JSON_HEADERS = { 'content-type': 'application/json' };
const as = (user: keyof typeof USERS): [string, string] => [user, USERS[user]];

/** An MLflow API call through a gateway with Basic credentials. */
function api(gw: GatewayProcess, user: keyof typeof USERS | [string, string], method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<TestResponse> {
  return gw.request(`/api/2.0/mlflow/${path}`, {
    method,
    auth: typeof user === 'string' ? as(user) : user,
    headers: { ...JSON_HEADERS, ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** An MLflow write with a browser's session cookie, as the gateway's own pages send it. */
function withCookie(gw: GatewayProcess, cookie: string, path: string, body: unknown): Promise<TestResponse> {
  return gw.request(`/api/2.0/mlflow/${path}`, { method: 'POST', headers: { ...JSON_HEADERS, cookie, origin: gw.url }, body: JSON.stringify(body) });
}

/** An experiment made with an API token. */
function byBearer(gw: GatewayProcess, token: string, name: string): Promise<TestResponse> {
  return gw.request('/api/2.0/mlflow/experiments/create', { method: 'POST', headers: { ...JSON_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify({ name }) });
}

/** What MLflow itself holds under this experiment name (asked of A, the server that stays up: they share the store). */
async function experimentExists(name: string): Promise<boolean> {
  const res = await directA.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: name });
  if (res.status === 404) return false;
  if (res.status === 200) return true;
  throw new Error(`MLflow answered ${res.status}: ${res.text}`);
}

/** The steps of a metric's whole history as MLflow holds it (3.x answers none at all without max_results). */
async function metricSteps(runId: string, key: string): Promise<number[]> {
  const { metrics = [] } = await directA.api<{ metrics?: { step: number | string }[] }>('GET', 'metrics/get-history', { run_id: runId, metric_key: key, max_results: '100000' });
  return metrics.map((metric) => Number(metric.step));
}

const unique = (what: string) => `${what}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;

if (mlflow && !problem) {
  beforeAll(async () => {
    [postgres, redis] = await Promise.all([startTestPostgres(), startTestRedis()]);
    const store = postgres.createDatabase('mlflow');
    artifacts = mkdtempSync(join(tmpdir(), 'mlgate-scale-out-artifacts-'));
    // The last --backend-store-uri and --artifacts-destination win over the helper's own (click): both servers on one store.
    const shared = ['--backend-store-uri', store, '--artifacts-destination', artifacts];
    // One after the other: the first creates MLflow's schema; two at once would race its migrations.
    mlflowA = await startMlflowServer(mlflow, { extraArgs: shared });
    mlflowB = await startMlflowServer(mlflow, { extraArgs: shared });
    directA = new MlflowDirect(mlflowA.url);
    directB = new MlflowDirect(mlflowB.url);
    const htpasswd = await htpasswdLines(USERS);
    // Both gateways in front of both servers, as behind a load balancer.
    const upstreams = [mlflowA.url, mlflowB.url];
    [a, b] = await Promise.all([startGatewayProcess('A', upstreams, htpasswd), startGatewayProcess('B', upstreams, htpasswd)]);
  }, 240_000);
  afterAll(async () => {
    await Promise.all([a, b].filter(Boolean).map((gw) => stopCli(gw.cli)));
    for (const dir of gatewayDirs) rmSync(dir, { recursive: true, force: true });
    await Promise.all([mlflowA?.close(), mlflowB?.close()]);
    await Promise.all([redis?.stop(), postgres?.stop()]);
    if (artifacts) rmSync(artifacts, { recursive: true, force: true });
  }, 60_000);

  describe(`two gateways sharing Redis, two MLflow ${mlflow.version} servers on one PostgreSQL`, () => {
    it('a run logged through A is read through B, and both MLflow servers hold it', async () => {
      const name = unique('shared-store');
      const made = await api(a, 'alice', 'POST', 'experiments/create', { name });
      expect(made.status, made.text).toBe(200);
      const experimentId = made.json<{ experiment_id: string }>().experiment_id;
      const run = await api(a, 'alice', 'POST', 'runs/create', { experiment_id: experimentId, start_time: Date.now() });
      expect(run.status, run.text).toBe(200);
      const runId = run.json<{ run: { info: { run_id: string } } }>().run.info.run_id;
      expect((await api(a, 'alice', 'POST', 'runs/log-metric', { run_id: runId, key: 'loss', value: 0.25, timestamp: Date.now(), step: 0 })).status).toBe(200);

      const read = await b.request(`/api/2.0/mlflow/runs/get?run_id=${runId}`, { auth: as('bob') });
      expect(read.status, read.text).toBe(200);
      const got = read.json<{ run: { info: { user_id: string }; data: { metrics: { key: string; value: number }[] } } }>().run;
      expect(got.info.user_id).toBe('alice');
      expect(got.data.metrics).toEqual([expect.objectContaining({ key: 'loss', value: 0.25 })]);
      for (const direct of [directA, directB]) {
        const { run: stored } = await direct.api<{ run: { data: { metrics: { key: string }[] } } }>('GET', 'runs/get', { run_id: runId });
        expect(stored.data.metrics.map((metric) => metric.key)).toEqual(['loss']);
      }
      // Grants live in MLflow too: B knows alice owns it, so bob (READ) may not write to it.
      const refused = await api(b, 'bob', 'POST', 'runs/log-metric', { run_id: runId, key: 'loss', value: 9, timestamp: Date.now(), step: 1 });
      expect(refused.status, refused.text).toBe(403);
      expect(await metricSteps(runId, 'loss')).toEqual([0]);
    });

    it('a sign-out on A is refused on B by the next request after it returns', async () => {
      const cookie = await signIn(asPages(a), 'carol', USERS.carol);
      const before = unique('cookie-before-sign-out');
      const allowed = await withCookie(b, cookie, 'experiments/create', { name: before });
      expect(allowed.status, allowed.text).toBe(200);
      expect(await experimentExists(before)).toBe(true);

      await signOut(asPages(a), cookie);
      const after = unique('cookie-after-sign-out');
      const refused = await withCookie(b, cookie, 'experiments/create', { name: after });
      expect(refused.status, refused.text).toBe(401);
      expect(await experimentExists(after)).toBe(false);
      expect((await withCookie(a, cookie, 'experiments/create', { name: after })).status).toBe(401);
      expect(await experimentExists(after)).toBe(false);
    });

    it('a lockout earned on A holds on B', async () => {
      // dave's password has not been verified on B (a password verified a moment ago passes any lockout, by design).
      for (const ip of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) {
        expect((await api(a, ['dave', 'guess'], 'POST', 'experiments/search', { max_results: 1 }, { 'x-forwarded-for': ip })).status).toBe(401);
      }
      const name = unique('locked-out');
      const refused = await api(b, 'dave', 'POST', 'experiments/create', { name }, { 'x-forwarded-for': '10.1.0.9' });
      expect(refused.status).toBe(401);
      expect(refused.json<{ message: string }>().message).toMatch(/^too many failed sign-ins for user "dave"; try again in \d+ seconds$/);
      expect(await experimentExists(name)).toBe(false);
      // Someone else, from the same address, is not locked out.
      const other = unique('not-locked-out');
      expect((await api(b, 'erin', 'POST', 'experiments/create', { name: other }, { 'x-forwarded-for': '10.1.0.9' })).status).toBe(200);
      expect(await experimentExists(other)).toBe(true);
    });

    it('a grant made through A is in force on B by the next request after it returns, and so is its revocation', async () => {
      const name = unique('granted');
      const made = await api(a, 'alice', 'POST', 'experiments/create', { name });
      expect(made.status, made.text).toBe(200);
      const experimentId = made.json<{ experiment_id: string }>().experiment_id;
      const runsOf = async () => (await directA.api<{ runs?: unknown[] }>('POST', 'runs/search', { experiment_ids: [experimentId] })).runs ?? [];

      // B reads alice's grants now and keeps them (authz.cacheTtl: 10m): bob has READ.
      const before = await api(b, 'bob', 'POST', 'runs/create', { experiment_id: experimentId });
      expect(before.status, before.text).toBe(403);
      expect(await runsOf()).toHaveLength(0);

      const grant = await a.request(`/-/api/permissions/experiments/${experimentId}/grants/users/bob`, { method: 'PUT', auth: as('alice'), headers: JSON_HEADERS, body: JSON.stringify({ level: 'EDIT' }) });
      expect(grant.status, grant.text).toBe(200);
      const granted = await api(b, 'bob', 'POST', 'runs/create', { experiment_id: experimentId });
      expect(granted.status, granted.text).toBe(200);
      expect(await runsOf()).toHaveLength(1);

      const revoke = await a.request(`/-/api/permissions/experiments/${experimentId}/grants/users/bob`, { method: 'DELETE', auth: as('alice') });
      expect(revoke.status, revoke.text).toBe(200);
      const revoked = await api(b, 'bob', 'POST', 'runs/create', { experiment_id: experimentId });
      expect(revoked.status, revoked.text).toBe(403);
      expect(await runsOf()).toHaveLength(1);
    });

    it('a token made through A works on B, and once revoked through B is refused on A', async () => {
      const made = await a.request('/-/api/tokens', { method: 'POST', auth: as('frank'), headers: JSON_HEADERS, body: JSON.stringify({ name: 'scale-out', expires: '1d' }) });
      expect(made.status, made.text).toBe(201);
      const { token, id } = made.json<{ token: string; id: string }>();
      const bearer = (gw: GatewayProcess, name: string) => byBearer(gw, token, name);

      const onB = unique('token-on-b');
      const used = await bearer(b, onB);
      expect(used.status, used.text).toBe(200);
      const { experiment } = await directA.api<{ experiment: { tags?: { key: string; value: string }[] } }>('GET', 'experiments/get-by-name', { experiment_name: onB });
      expect(experiment.tags).toEqual(expect.arrayContaining([{ key: 'mlgate.owner', value: 'frank' }]));
      // A has used the token too, so a revocation must reach what A already knows.
      const onA = unique('token-on-a');
      expect((await bearer(a, onA)).status).toBe(200);

      const revoked = await b.request(`/-/api/tokens/${id}`, { method: 'DELETE', auth: as('frank') });
      expect(revoked.status, revoked.text).toBe(200);
      const after = unique('token-after-revocation');
      const refused = await bearer(a, after);
      expect(refused.status, refused.text).toBe(401);
      expect(await experimentExists(after)).toBe(false);
    });

    it('Redis stopped: Basic works, cookie sessions and tokens are refused naming the store, lockouts are counted per gateway, readyz is degraded; back: shared again', async () => {
      const cookie = await signIn(asPages(b), 'carol', USERS.carol);
      const made = await a.request('/-/api/tokens', { method: 'POST', auth: as('erin'), headers: JSON_HEADERS, body: JSON.stringify({ name: 'through-the-outage', expires: '1d' }) });
      expect(made.status, made.text).toBe(201);
      const { token } = made.json<{ token: string }>();
      for (const gw of [a, b]) {
        expect((await withCookie(gw, cookie, 'experiments/create', { name: unique('cookie-before-outage') })).status).toBe(200);
        expect((await byBearer(gw, token, unique('token-before-outage'))).status).toBe(200);
      }
      const outputs = [a.outputLength(), b.outputLength()];

      await redis.stop();
      for (const gw of [a, b]) {
        const basicMade = unique(`basic-during-outage-${gw.name}`);
        expect((await api(gw, 'alice', 'POST', 'experiments/create', { name: basicMade })).status).toBe(200);
        expect(await experimentExists(basicMade)).toBe(true);
        // Tokens live in Redis, and a revocation made on another gateway could not be seen: refused, to retry.
        const tokenMade = unique(`token-during-outage-${gw.name}`);
        const byToken = await byBearer(gw, token, tokenMade);
        expect(byToken.status, byToken.text).toBe(503);
        expect(byToken.headers['retry-after']).toBe('1');
        expect(byToken.json<{ error_code: string; message: string }>()).toMatchObject({ error_code: 'TEMPORARILY_UNAVAILABLE', message: expect.stringContaining('shared state store (Redis) is unreachable') });
        expect(await experimentExists(tokenMade)).toBe(false);

        const cookieMade = unique(`cookie-during-outage-${gw.name}`);
        const refused = await withCookie(gw, cookie, 'experiments/create', { name: cookieMade });
        expect(refused.status).toBe(401);
        expect(refused.text).toContain('shared state store (Redis) is unreachable');
        expect(await experimentExists(cookieMade)).toBe(false);

        const ready = await gw.request('/-/readyz');
        expect(ready.status).toBe(200);
        expect(ready.json()).toMatchObject({ status: 'degraded' });
        expect((await gw.request('/-/readyz', { auth: as('admin') })).json()).toMatchObject({ status: 'degraded', stateStore: { redis: 'unreachable' } });
      }
      // Nor can a token be made meanwhile (a 503, as documented).
      const refusedToken = await a.request('/-/api/tokens', { method: 'POST', auth: as('erin'), headers: JSON_HEADERS, body: JSON.stringify({ name: 'during-the-outage', expires: '1d' }) });
      expect(refusedToken.status, refusedToken.text).toBe(503);
      await a.waitForOutput(/shared state store \(Redis\) unreachable/, outputs[0]!);
      await b.waitForOutput(/shared state store \(Redis\) unreachable/, outputs[1]!);
      // Counted by A alone meanwhile: heidi (whose password neither gateway has verified yet, which
      // would pass any lockout) is locked out on A, not on B.
      for (const ip of ['10.5.0.1', '10.5.0.2', '10.5.0.3']) expect((await api(a, ['heidi', 'wrong'], 'POST', 'experiments/search', { max_results: 1 }, { 'x-forwarded-for': ip })).status).toBe(401);
      const lockedOnA = await api(a, 'heidi', 'POST', 'experiments/search', { max_results: 1 }, { 'x-forwarded-for': '10.5.0.4' });
      expect(lockedOnA.json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "heidi"/);
      expect((await api(b, 'heidi', 'POST', 'experiments/search', { max_results: 1 }, { 'x-forwarded-for': '10.5.0.4' })).status).toBe(200);

      await redis.start();
      await a.waitForOutput(/shared state store \(Redis\) reachable again/, outputs[0]!);
      await b.waitForOutput(/shared state store \(Redis\) reachable again/, outputs[1]!);
      for (const gw of [a, b]) {
        const cookieMade = unique(`cookie-after-outage-${gw.name}`);
        expect((await withCookie(gw, cookie, 'experiments/create', { name: cookieMade })).status).toBe(200);
        expect(await experimentExists(cookieMade)).toBe(true);
        expect((await gw.request('/-/readyz')).json()).toMatchObject({ status: 'ready' });
      }
      // This Redis keeps nothing on disk (test/helpers/redis.ts): the tokens it held are gone, as documented.
      const lost = await byBearer(a, token, unique('token-after-restart'));
      expect(lost.status, lost.text).toBe(401);
      // Shared again: a sign-out on B is refused on A, a lockout earned on B holds on A.
      await signOut(asPages(b), cookie);
      expect((await withCookie(a, cookie, 'experiments/create', { name: unique('after-sign-out') })).status).toBe(401);
      for (const ip of ['10.6.0.1', '10.6.0.2', '10.6.0.3']) expect((await api(b, ['grace', 'wrong'], 'POST', 'experiments/search', { max_results: 1 }, { 'x-forwarded-for': ip })).status).toBe(401);
      const lockedName = unique('locked-after-outage');
      const locked = await api(a, 'grace', 'POST', 'experiments/create', { name: lockedName }, { 'x-forwarded-for': '10.6.0.4' });
      expect(locked.json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "grace"/);
      expect(await experimentExists(lockedName)).toBe(false);
    }, 120_000);

    it('one MLflow server killed mid-load: requests continue through the other, and none that had not been sent gets a 5xx', async () => {
      const made = await api(a, 'alice', 'POST', 'experiments/create', { name: unique('under-load') });
      const experimentId = made.json<{ experiment_id: string }>().experiment_id;
      const runId = (await api(a, 'alice', 'POST', 'runs/create', { experiment_id: experimentId })).json<{ run: { info: { run_id: string } } }>().run.info.run_id;

      // Four clients per gateway, each one request at a time: a kill finds at most eight in flight.
      const CLIENTS = 4;
      let step = 0;
      let killedAt = Infinity;
      let stopAt = Infinity;
      const outcomes: LoadOutcome[] = [];
      const client = async (gw: GatewayProcess) => {
        while (Date.now() < stopAt) {
          const mine = step++;
          const sentAt = Date.now();
          const res = await api(gw, 'alice', 'POST', 'runs/log-metric', { run_id: runId, key: 'load', value: mine, timestamp: sentAt, step: mine })
            .catch((error: Error) => ({ status: 0, text: String(error) }));
          outcomes.push({ gateway: gw.name, step: mine, sentAt, endedAt: Date.now(), status: res.status, text: res.text, kind: outcomeKind(res.status, res.text) });
        }
      };
      const clients = [a, b].flatMap((gw) => Array.from({ length: CLIENTS }, () => client(gw)));
      // Both servers busy first, then B's whole process group (uvicorn and its worker) killed without warning.
      while (outcomes.filter((outcome) => outcome.kind === 'ok').length < 40) await new Promise((resolve) => setTimeout(resolve, 20));
      // uvicorn's access log: B really was taking its share of the load.
      expect(mlflowB.log()).toContain('POST /api/2.0/mlflow/runs/log-metric');
      process.kill(-mlflowB.pid, 'SIGKILL');
      // Dead once its port refuses connections: what the gateway sends from then on is refused, never half-sent.
      while (await isListening(mlflowB.port)) await new Promise((resolve) => setTimeout(resolve, 5));
      killedAt = Date.now();
      // Past the health check's interval and thresholds, so that requests run both before and after B is out of rotation.
      stopAt = killedAt + 4000;
      await Promise.all(clients);

      const summary: Record<string, number> = {};
      for (const outcome of outcomes) summary[outcome.kind] = (summary[outcome.kind] ?? 0) + 1;
      // Only a request sent before B died may fail, and then only as one that reached it; at most one per client.
      const inFlight = outcomes.filter((outcome) => (outcome.kind === 'in-flight' || outcome.kind === 'cut-off') && outcome.sentAt <= killedAt);
      const strange = outcomes.filter((outcome) => outcome.kind !== 'ok' && !inFlight.includes(outcome));
      expect(strange.length, JSON.stringify({ summary, first: strange.slice(0, 3) })).toBe(0);
      expect(inFlight.length, JSON.stringify(summary)).toBeLessThanOrEqual(2 * CLIENTS);
      for (const gw of [a, b]) expect(outcomes.filter((outcome) => outcome.gateway === gw.name && outcome.kind === 'ok' && outcome.sentAt > killedAt + 2000).length).toBeGreaterThan(0);

      // MLflow holds every value it acknowledged, once.
      const stored = await metricSteps(runId, 'load');
      const acknowledged = outcomes.filter((outcome) => outcome.kind === 'ok').map((outcome) => outcome.step);
      expect(new Set(stored).size).toBe(stored.length);
      expect(stored).toEqual(expect.arrayContaining(acknowledged));
    }, 120_000);
  });
}
