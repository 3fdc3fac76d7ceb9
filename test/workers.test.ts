// `workers: auto` runs one gateway process per core on one port, like nginx's worker_processes.
// Without Redis the workers share lockouts and sign-outs through their primary: a user's limits mean
// the same with one process or several.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
      expect(output).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(output).toContain('a worker failed to start');
      expect(output).not.toContain('worker died; starting another');
    } finally {
      if (blocked.child.exitCode === null) blocked.child.kill('SIGKILL');
      taken.close();
    }
  });
});

describe('workers sharing lockouts and sign-outs through the primary (no Redis)', () => {
  let shared: RunningCli;
  let sharedDir: string;
  let sharedUrl: string;
  /** Kept-alive connections, one per worker process (by pid). */
  let workers: Worker[];

  interface Worker { pid: unknown; agent: http.Agent }

  /** Which process answered: the access-log line with the response's request id names its pid. */
  async function pidOf(res: TestResponse): Promise<unknown> {
    const id = String(res.headers['x-request-id']);
    const line = (await shared.waitFor(new RegExp(`\\{[^\\n]*"reqId":"${id.replace(/[^\w-]/g, '.')}"[^\\n]*\\}`)))[0];
    return (JSON.parse(line) as { pid: unknown }).pid;
  }

  /** A request on the worker's connection; fails if another process answered (the connection was re-made). */
  async function via(worker: Worker, path: string, options: RequestOptions = {}): Promise<TestResponse> {
    const res = await request(`${sharedUrl}${path}`, { ...options, agent: worker.agent });
    expect(await pidOf(res), `${path} was answered by the worker it was sent to`).toBe(worker.pid);
    return res;
  }

  /** New connections until one lands on a worker not in `known` (the primary hands them out in turn). */
  async function connectToAnotherWorker(known: readonly Worker[]): Promise<Worker> {
    for (let i = 0; i < 20; i++) {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const pid = await pidOf(await request(`${sharedUrl}/-/whoami`, { agent }));
      if (!known.some((worker) => worker.pid === pid)) return { pid, agent };
      agent.destroy();
    }
    throw new Error('every new connection landed on a worker already known');
  }

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
