// `workers: auto` (the default) runs one gateway process per core on one port, like nginx's
// worker_processes. Without Redis the workers share lockouts, sign-outs, grant changes and revoked
// tokens through their primary, divide the connection limits, and one scrape of /-/metrics reports
// them all: a user's limits mean the same with one process or several.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuQuota, workerCount } from '../src/server/cluster.ts';
import { jsonLogLines, listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines, type TestGateway } from './helpers/gateway.ts';
import { request, type RequestOptions, type TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { signIn, signOut } from './helpers/sign-in.ts';

let upstream: MlflowUpstream;
let dir: string;
let cli: RunningCli;
let url: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  dir = mkdtempSync(join(tmpdir(), 'mlgate-workers-'));
  writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
  cli = spawnCli(['serve', '--workers', '2', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
    cwd: dir,
    env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
  });
  url = await listeningUrl(cli);
  await cli.waitFor(/"msg":"mlgate listening"[^\n]*\n[^]*"msg":"mlgate listening"/);
});
afterAll(async () => {
  if (cli) await stopCli(cli);
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('several worker processes', () => {
  it('serve the same port from two processes, each authenticating', async () => {
    const listening = jsonLogLines(cli.output().stdout).filter((line) => line.msg === 'mlgate listening');
    expect(new Set(listening.map((line) => line.pid)).size).toBe(2);
    expect(new Set(listening.map((line) => line.url))).toEqual(new Set([url]));

    // A new connection per request: the primary hands connections to the workers in turn.
    for (let i = 0; i < 8; i++) {
      expect((await request(`${url}/echo`, { auth: ['alice', 'alice-password'] })).status).toBe(200);
      expect((await request(`${url}/echo`, { auth: ['alice', 'wrong'] })).status).toBe(401);
    }
    await cli.waitFor(/(?:"msg":"request"[^]*){16}/);
    const served = jsonLogLines(cli.output().stdout).filter((line) => line.msg === 'request');
    expect(new Set(served.map((line) => line.pid)).size).toBe(2);
  });

  it('stop together on SIGTERM and exit 0', async () => {
    expect(await stopCli(cli)).toBe(0);
    const stopped = jsonLogLines(cli.output().stdout).filter((line) => line.msg === 'mlgate stopped');
    expect(stopped.length).toBe(3); // two workers and the primary
  });
});

describe('workers that cannot start', () => {
  it('stop the primary with the reason when the port is taken, instead of restarting them forever', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const blocked = spawnCli(['serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: dir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
    });
    try {
      expect(await blocked.exited).toBe(1);
      const output = blocked.output().stdout + blocked.output().stderr;
      // Once, as from one process: the primary finds the port taken before it forks anyone.
      expect(output.split(`port ${port} on 127.0.0.1 is already in use`)).toHaveLength(2);
      expect(output).not.toContain('mlgate primary started its workers');
      expect(output).not.toContain('worker died; starting another');
    } finally {
      if (blocked.child.exitCode === null) blocked.child.kill('SIGKILL');
      taken.close();
    }
  });

  it('stop the primary with the reason when every worker fails, instead of restarting them forever', async () => {
    // The primary does not read a configured certificate; each worker does, and fails on it.
    writeFileSync(join(dir, 'not-a-certificate.pem'), 'garbage\n');
    const broken = spawnCli(['serve', '--workers', '2', '--port', '0', '--host', '127.0.0.1', '--tls-cert', 'not-a-certificate.pem', '--tls-key', 'not-a-certificate.pem', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: dir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
    });
    try {
      expect(await broken.exited).toBe(1);
      const output = broken.output().stdout + broken.output().stderr;
      expect(output).toContain('not-a-certificate.pem is not a PEM certificate');
      expect(output).toContain('a worker failed to start');
      expect(output).not.toContain('worker died; starting another');
    } finally {
      if (broken.child.exitCode === null) broken.child.kill('SIGKILL');
    }
  });
});

/** A kept-alive connection to one worker process (by pid). */
interface Worker { pid: unknown; agent: http.Agent }

/** Requests to chosen workers of the gateway `cli` runs at `base`, each checked to be answered by that worker. */
function workerConnections(cli: () => RunningCli, base: () => string) {
  /** Which process answered: the access-log line with the response's request id names its pid. */
  async function pidOf(res: TestResponse): Promise<unknown> {
    const id = String(res.headers['x-request-id']);
    const line = (await cli().waitFor(new RegExp(`\\{[^\\n]*"reqId":"${id.replace(/[^\w-]/g, '.')}"[^\\n]*\\}`)))[0];
    return (JSON.parse(line) as { pid: unknown }).pid;
  }

  /** A request on the worker's connection; fails if another process answered (the connection was re-made). */
  async function via(worker: Worker, path: string, options: RequestOptions = {}): Promise<TestResponse> {
    const res = await request(`${base()}${path}`, { ...options, agent: worker.agent });
    expect(await pidOf(res), `${path} was answered by the worker it was sent to`).toBe(worker.pid);
    return res;
  }

  /** New connections until one lands on a worker not in `known` (the primary hands them out in turn). */
  async function connectToAnotherWorker(known: readonly Worker[]): Promise<Worker> {
    for (let i = 0; i < 20; i++) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const pid = await pidOf(await request(`${base()}/-/whoami`, { agent }));
      if (!known.some((worker) => worker.pid === pid)) return { pid, agent };
      agent.destroy();
    }
    throw new Error('every new connection landed on a worker already known');
  }

  return { via, connectToAnotherWorker };
}

describe('workers sharing lockouts and sign-outs through the primary (no Redis)', () => {
  let shared: RunningCli;
  let sharedDir: string;
  let sharedUrl: string;
  /** Kept-alive connections, one per worker process (by pid). */
  let workers: Worker[];
  const { via, connectToAnotherWorker } = workerConnections(() => shared, () => sharedUrl);

  /** What reached MLflow of the requests `api` sends (not the gateway's own start-up checks). */
  const searches = () => upstream.requests.filter((received) => received.url.startsWith('/api/2.0/mlflow/experiments/search')).length;
  const api = (worker: Worker, user: string, password: string, ip: string) =>
    via(worker, '/api/2.0/mlflow/experiments/search', { method: 'POST', auth: [user, password], headers: { 'x-forwarded-for': ip }, body: '{"max_results":10}' });
  const asGateway = (worker: Worker) => ({ url: sharedUrl, request: (path: string, options?: RequestOptions) => via(worker, path, options) }) as Pick<TestGateway, 'url' | 'request'> as TestGateway;
  const whoami = (worker: Worker, cookie: string) => via(worker, '/-/whoami', { headers: { cookie } });

  beforeAll(async () => {
    sharedDir = mkdtempSync(join(tmpdir(), 'mlgate-workers-shared-'));
    const users = { carol: 'carol-password', dave: 'dave-password', erin: 'erin-password', frank: 'frank-password', gina: 'gina-password' };
    writeFileSync(join(sharedDir, 'htpasswd'), await htpasswdLines(users), { mode: 0o600 });
    // The revocations file is re-read once a minute here: a sign-out reaches the other worker only
    // through the primary within these tests.
    writeFileSync(join(sharedDir, 'mlgate.yaml'), [
      'watchInterval: 1m',
      'lockout: { window: 1m, maxUserFailures: 4, maxIpFailures: 1000, backoff: 1m, backoffMax: 2m }',
      "proxy: { trustedProxies: ['127.0.0.1'] }",
    ].join('\n') + '\n');
    shared = spawnCli(['serve', '--config', 'mlgate.yaml', '--workers', '2', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: sharedDir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
    });
    sharedUrl = await listeningUrl(shared);
    await shared.waitFor(/"msg":"mlgate listening"[^\n]*\n[^]*"msg":"mlgate listening"/);
    const first = await connectToAnotherWorker([]);
    workers = [first, await connectToAnotherWorker([first])];
  });
  afterAll(async () => {
    for (const worker of workers ?? []) worker.agent.destroy();
    if (shared) await stopCli(shared);
    if (sharedDir) rmSync(sharedDir, { recursive: true, force: true });
  });

  it('count failed sign-ins through every worker toward one threshold', async () => {
    const [a, b] = workers as [Worker, Worker];
    const forwarded = searches();
    // maxUserFailures is 4: two guesses through each worker, from four addresses.
    for (const [worker, ip] of [[a, '10.7.0.1'], [b, '10.7.0.2'], [a, '10.7.0.3'], [b, '10.7.0.4']] as const) {
      expect((await api(worker, 'dave', 'guess', ip)).status).toBe(401);
    }
    for (const worker of [a, b]) {
      const res = await api(worker, 'dave', 'dave-password', '10.7.0.9');
      expect(res.status).toBe(401);
      expect(res.json<{ message: string }>().message).toMatch(/^too many failed sign-ins for user "dave"; try again in \d+ seconds$/);
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    }
    expect(searches()).toBe(forwarded);
  });

  it('hold a lock earned through one worker on the other by the next request', async () => {
    const [a, b] = workers as [Worker, Worker];
    const forwarded = searches();
    for (const ip of ['10.7.1.1', '10.7.1.2', '10.7.1.3', '10.7.1.4']) expect((await api(a, 'erin', 'guess', ip)).status).toBe(401);
    const res = await api(b, 'erin', 'erin-password', '10.7.1.9');
    expect(res.status).toBe(401);
    expect(res.json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "erin"/);
    expect(searches()).toBe(forwarded);
    // The worker that counted the last failure logs it, once.
    await shared.waitFor(/"user":"erin"[^\n]*"msg":"sign-in lockout started: too many failed sign-ins for one user"/);
    const started = jsonLogLines(shared.output().stdout).filter((line) => line.user === 'erin' && String(line.msg).startsWith('sign-in lockout started'));
    expect(started.map((line) => line.pid)).toEqual([a.pid]);
  });

  it("exempt the addresses a user signed in from on every worker, as one process does", async () => {
    const [a, b] = workers as [Worker, Worker];
    expect((await api(a, 'frank', 'frank-password', '10.7.2.1')).status).toBe(200);
    for (const ip of ['10.7.2.2', '10.7.2.3', '10.7.2.4', '10.7.2.5']) expect((await api(b, 'frank', 'guess', ip)).status).toBe(401);
    expect((await api(b, 'frank', 'frank-password', '10.7.2.6')).json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "frank"/);
    // The address frank signed in from through A passes on B, where his password was not checked yet.
    expect((await api(b, 'frank', 'frank-password', '10.7.2.1')).status).toBe(200);
  });

  it('refuse a session signed out through one worker on the other by the next request', async () => {
    const [a, b] = workers as [Worker, Worker];
    const cookie = await signIn(asGateway(a), 'carol', 'carol-password');
    expect((await whoami(b, cookie)).status).toBe(200);
    expect((await whoami(a, cookie)).status).toBe(200);
    await signOut(asGateway(a), cookie);
    const res = await whoami(b, cookie);
    expect(res.status, res.text).toBe(401);
    expect((await whoami(a, cookie)).status).toBe(401);
  });

  it('give a worker that restarts the locks and sign-outs in force', async () => {
    const [a, b] = workers as [Worker, Worker];
    const cookie = await signIn(asGateway(a), 'gina', 'gina-password');
    expect((await whoami(b, cookie)).status).toBe(200);
    await signOut(asGateway(b), cookie);
    process.kill(Number(b.pid), 'SIGKILL');
    b.agent.destroy();
    await shared.waitFor(/"msg":"worker died; starting another"/);
    await shared.waitFor(/(?:"msg":"mlgate listening"[^]*){3}/);
    const restarted = await connectToAnotherWorker([a, b]);
    workers.push(restarted);
    const forwarded = searches();
    expect((await api(restarted, 'dave', 'dave-password', '10.7.3.1')).json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "dave"/);
    expect((await api(restarted, 'erin', 'erin-password', '10.7.3.1')).json<{ message: string }>().message).toMatch(/too many failed sign-ins for user "erin"/);
    expect(searches()).toBe(forwarded);
    expect((await whoami(restarted, cookie)).status).toBe(401);
  });
});

describe('workers by default (no `workers` set): grants, tokens and metrics of the whole gateway (no Redis)', () => {
  let gateway: RunningCli;
  let gatewayDir: string;
  let gatewayUrl: string;
  let workers: Worker[];
  /** alice owns it (MANAGE); bob has READ from the policy until granted more. */
  let experiment: string;
  const { via, connectToAnotherWorker } = workerConnections(() => gateway, () => gatewayUrl);
  const ALICE = { auth: ['alice', 'alice-password'] as [string, string] };
  const JSON_BODY = { 'content-type': 'application/json' };

  beforeAll(async () => {
    gatewayDir = mkdtempSync(join(tmpdir(), 'mlgate-workers-default-'));
    writeFileSync(join(gatewayDir, 'htpasswd'), await htpasswdLines({ admin: 'admin-password', alice: 'alice-password', bob: 'bob-password' }), { mode: 0o600 });
    writeFileSync(join(gatewayDir, 'policy.yaml'), JSON.stringify({ admins: ['admin'], default: 'READ' }) + '\n');
    experiment = upstream.store.addExperiment('workers/grants', [{ key: 'mlgate.owner', value: 'alice' }]).experiment_id;
    // Files re-read and permissions cached for a minute: within these tests a change reaches the
    // other worker only through the primary.
    writeFileSync(join(gatewayDir, 'mlgate.yaml'), [
      'watchInterval: 1m',
      'authz: { policyFile: policy.yaml, cacheTtl: 1m }',
      'tokens: { file: tokens.json }',
      "metrics: { allowCidrs: ['127.0.0.1'] }",
    ].join('\n') + '\n');
    gateway = spawnCli(['serve', '--config', 'mlgate.yaml', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: gatewayDir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4' },
    });
    gatewayUrl = await listeningUrl(gateway);
    await gateway.waitFor(new RegExp(`(?:"msg":"mlgate listening"[^]*){${availableParallelism()}}`));
    const first = await connectToAnotherWorker([]);
    workers = [first, await connectToAnotherWorker([first])];
  });
  afterAll(async () => {
    for (const worker of workers ?? []) worker.agent.destroy();
    if (gateway) await stopCli(gateway);
    if (gatewayDir) rmSync(gatewayDir, { recursive: true, force: true });
  });

  it('fork one worker per core (availableParallelism)', () => {
    const lines = jsonLogLines(gateway.output().stdout);
    expect(lines.find((line) => line.msg === 'mlgate primary started its workers')?.workers).toBe(availableParallelism());
    expect(new Set(lines.filter((line) => line.msg === 'mlgate listening').map((line) => line.pid)).size).toBe(availableParallelism());
  });

  /** bob's EDIT request; its tag key is unique, so whether it reached MLflow is plain to see. */
  const bobTags = (worker: Worker, key: string) => via(worker, '/api/2.0/mlflow/experiments/set-experiment-tag', {
    method: 'POST', auth: ['bob', 'bob-password'], headers: JSON_BODY, body: JSON.stringify({ experiment_id: experiment, key, value: 'x' }),
  });
  const reachedUpstream = (key: string) => upstream.requests.some((received) => received.url.endsWith('/set-experiment-tag') && received.body.includes(`"${key}"`));
  const bobsGrant = () => `/-/api/permissions/experiments/${experiment}/grants/users/bob`;

  it('hold a grant or revocation made through one worker on the other by the next request', async () => {
    const [a, b] = workers as [Worker, Worker];
    // Both workers have bob's READ cached before each change.
    expect((await bobTags(a, 'w-primed-a')).status).toBe(403);
    expect((await bobTags(b, 'w-primed-b')).status).toBe(403);
    for (const [from, to, round] of [[a, b, 1], [b, a, 2]] as const) {
      expect((await via(from, bobsGrant(), { ...ALICE, method: 'PUT', headers: JSON_BODY, body: '{"level":"EDIT"}' })).status).toBe(200);
      const granted = await bobTags(to, `w-granted-${round}`);
      expect(granted.status, granted.text).toBe(200);
      expect((await via(from, bobsGrant(), { ...ALICE, method: 'DELETE' })).status).toBe(200);
      const refused = await bobTags(to, `w-revoked-${round}`);
      expect(refused.status, refused.text).toBe(403);
      expect(reachedUpstream(`w-revoked-${round}`)).toBe(false);
    }
  });

  it('refuse a token revoked through one worker on the other at once', async () => {
    const [a, b] = workers as [Worker, Worker];
    const made = await via(a, '/-/api/tokens', { ...ALICE, method: 'POST', headers: JSON_BODY, body: '{"name":"workers-test"}' });
    expect(made.status, made.text).toBe(201);
    const { token, id } = made.json<{ token: string; id: string }>();
    const search = (worker: Worker) => via(worker, '/api/2.0/mlflow/experiments/search', { method: 'POST', headers: { authorization: `Bearer ${token}`, ...JSON_BODY }, body: '{"max_results":10}' });
    expect((await search(b)).status).toBe(200);
    expect((await search(a)).status).toBe(200);
    expect((await via(a, `/-/api/tokens/${id}`, { ...ALICE, method: 'DELETE' })).status).toBe(200);
    const searches = upstream.requests.length;
    const refused = await search(b);
    expect(refused.status, refused.text).toBe(401);
    expect(upstream.requests.length).toBe(searches);
  });

  it('report every worker in one scrape of /-/metrics', async () => {
    const [a, b] = workers as [Worker, Worker];
    // A series only these requests make: three through each worker.
    for (const worker of [a, b, a, b, a, b]) expect((await via(worker, '/-/whoami', { method: 'PATCH' })).status).not.toBe(200);
    const scrape = await request(`${gatewayUrl}/-/metrics`);
    expect(scrape.status, scrape.text).toBe(200);
    const series = scrape.text.split('\n').filter((line) => line.startsWith('mlgate_requests_total{') && line.includes('method="PATCH"'));
    expect(series.reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)).toBe(6);
    // One gateway, one version: not a sum over the workers.
    expect(scrape.text).toMatch(/^mlgate_build_info\{version="[^"]+"\} 1$/m);
  });
});

describe('limits that hold for the whole gateway, not per worker', () => {
  it.each([
    ['limits.maxConnections', 'MLGATE_LIMITS_MAX_CONNECTIONS'],
    ['limits.maxConnectionsPerIp', 'MLGATE_LIMITS_MAX_CONNECTIONS_PER_IP'],
  ])('%s is divided among the workers: its N+1th connection is refused', async (_setting, variable) => {
    const limitsDir = mkdtempSync(join(tmpdir(), 'mlgate-workers-limits-'));
    writeFileSync(join(limitsDir, 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
    const limited = spawnCli(['serve', '--workers', '2', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: limitsDir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1', [variable]: '4' },
    });
    const sockets: net.Socket[] = [];
    try {
      const base = new URL(await listeningUrl(limited));
      await limited.waitFor(/"msg":"mlgate listening"[^\n]*\n[^]*"msg":"mlgate listening"/);
      /** A new connection and one request on it: the status line, or undefined when the connection was refused. */
      const connect = () => new Promise<string | undefined>((resolve) => {
        const socket = net.connect(Number(base.port), base.hostname, () => socket.write('GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
        sockets.push(socket);
        socket.once('data', (chunk) => resolve(chunk.toString('latin1').split('\r\n')[0]));
        socket.once('error', () => resolve(undefined));
        socket.once('close', () => resolve(undefined));
      });
      // Handed to the workers in turn, each connection kept open: two each.
      const answered: (string | undefined)[] = [];
      for (let i = 0; i < 4; i++) answered.push(await connect());
      expect(answered).toEqual(Array(4).fill('HTTP/1.1 200 OK'));
      expect(await connect()).toBeUndefined();
      expect(await connect()).toBeUndefined();
    } finally {
      for (const socket of sockets) socket.destroy();
      await stopCli(limited);
      rmSync(limitsDir, { recursive: true, force: true });
    }
  });
});

describe('ACME without `workers` set', () => {
  it('runs one gateway process and says why', async () => {
    const acmeDir = mkdtempSync(join(tmpdir(), 'mlgate-workers-acme-'));
    writeFileSync(join(acmeDir, 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
    // No CA answers: the gateway serves a temporary certificate meanwhile, which is all this test needs.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const caPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    writeFileSync(join(acmeDir, 'mlgate.yaml'), `acme: { domains: [mlflow.workers.test], directory: 'https://127.0.0.1:${caPort}/dir' }\n`);
    const single = spawnCli(['serve', '--config', 'mlgate.yaml', '--port', '0', '--host', '127.0.0.1', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: acmeDir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
    });
    try {
      await single.waitFor(/"msg":"acme\.domains: one gateway process \(ACME with several is not supported yet\)"/);
      const lines = jsonLogLines(single.output().stdout);
      expect(lines.filter((line) => line.msg === 'mlgate listening').map((line) => line.pid)).toEqual([single.child.pid]);
      expect(lines.some((line) => line.msg === 'mlgate primary started its workers')).toBe(false);
    } finally {
      await stopCli(single);
      rmSync(acmeDir, { recursive: true, force: true });
    }
  });
});

describe('workers: auto in a container', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mlgate-cgroup-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A cgroup tree and a /proc/self/cgroup as the kernel shows them, in a folder of their own. */
  const tree = (name: string, self: string, files: Record<string, string>) => {
    const root = join(dir, name);
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), `${text}\n`);
    }
    writeFileSync(join(dir, `${name}.cgroup`), self);
    return cpuQuota(root, join(dir, `${name}.cgroup`));
  };

  it("count the CPUs of cgroup v2's cpu.max, rounded up, in the process's cgroup or at the root", () => {
    expect(tree('v2-pod', '0::/kubepods/pod1/c1\n', { 'kubepods/pod1/c1/cpu.max': '150000 100000' })).toBe(2);
    expect(tree('v2-container', '0::/\n', { 'cpu.max': '50000 100000' })).toBe(1);
    // A container whose /proc/self/cgroup names the host's path, with its own cgroup mounted at the root.
    expect(tree('v2-mounted', '0::/system.slice/docker-1.scope\n', { 'cpu.max': '400000 100000' })).toBe(4);
    expect(tree('v2-none', '0::/\n', { 'cpu.max': 'max 100000' })).toBeUndefined();
  });

  it("count cgroup v1's cfs quota over its period", () => {
    expect(tree('v1', '4:memory:/x\n3:cpu,cpuacct:/docker/abc\n', { 'cpu,cpuacct/cpu.cfs_quota_us': '300000', 'cpu,cpuacct/cpu.cfs_period_us': '100000' })).toBe(3);
    expect(tree('v1-none', '1:cpu:/\n', { 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' })).toBeUndefined();
  });

  it('find no quota where there is no cgroup file to read', () => {
    expect(tree('nothing', '0::/\n', {})).toBeUndefined();
    expect(cpuQuota(join(dir, 'missing'), join(dir, 'missing.cgroup'))).toBeUndefined();
  });

  it('leave a number of workers as it is', () => {
    expect(workerCount({ workers: 3, acme: { domains: [] } } as unknown as Parameters<typeof workerCount>[0])).toBe(3);
  });
});
