// Several MLflow servers behind one gateway (docs/operations.md "Several MLflow servers"): requests
// balanced by least outstanding requests, servers health-checked out of rotation and back, a request
// retried on another server only when nothing of it can have been sent, /-/readyz and the metrics
// per server. Real servers on real sockets: the MLflow-shaped fake, and small raw ones that misbehave
// on purpose.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../src/config/schema.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { openWebSocket, roundTrip } from './helpers/websocket-client.ts';
import { freePort } from './helpers/tls.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password' };
const ADMIN: [string, string] = ['admin', 'admin-password'];
const ALICE: [string, string] = ['alice', 'alice-password'];
const METRICS_TOKEN = 'several-upstreams-metrics-token';
/** Fast checks, so a test waits for a server to go out and come back in a fraction of a second. */
const HEALTH_CHECK = { interval: '100ms', timeout: '100ms', fails: 2, passes: 1 };


/** Polls until `check` holds (the health checks run on their own timer). */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface ServerState { url: string; state: 'up' | 'down'; checked: boolean; lastError?: string; outstanding: number }

async function serverStates(gw: TestGateway): Promise<Map<string, ServerState>> {
  const res = await gw.request('/-/readyz', { auth: ADMIN });
  return new Map(res.json<{ servers: ServerState[] }>().servers.map((server) => [server.url, server]));
}

/** A server whose /health answers 200 or 500 as the test says; anything else is answered by `handle`. */
async function startServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; healthy: boolean; seen: string[]; server: http.Server; close(): Promise<void> }> {
  const state = {
    url: '', healthy: true, seen: [] as string[], server: undefined as unknown as http.Server,
    close: () => new Promise<void>((resolve) => {
      state.server.closeAllConnections();
      state.server.close(() => resolve());
    }),
  };
  state.server = http.createServer((req, res) => {
    if (req.url === '/health') return void res.writeHead(state.healthy ? 200 : 500).end(state.healthy ? 'OK' : 'sick');
    state.seen.push(`${req.method} ${req.url}`);
    handle(req, res);
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(state.server.address() as AddressInfo).port}`;
  return state;
}

const seenOn = (upstream: MlflowUpstream, marker: string) => upstream.requests.some((request) => request.url.includes(marker));

describe('two MLflow servers: balance, health checks, readyz, metrics', () => {
  let a: MlflowUpstream;
  let b: MlflowUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    [a, b] = await Promise.all([startMlflowUpstream(), startMlflowUpstream()]);
    gw = await startTestGateway({
      upstream: [a.url, b.url],
      users: USERS,
      tls: false,
      config: { proxy: { healthCheck: HEALTH_CHECK }, metrics: { token: METRICS_TOKEN } },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  it('spreads requests over both, and sends a request to the server with fewer outstanding', async () => {
    for (let i = 0; i < 6; i++) expect((await gw.request(`/echo?spread=${i}`, { auth: ALICE })).status).toBe(200);
    const onA = a.requests.filter((request) => request.url.startsWith('/echo?spread=')).length;
    expect(onA).toBe(3); // idle servers: round-robin
    // One server busy with a slow request: every quick request meanwhile goes to the other.
    const slow = gw.request('/slow?ms=600&marker=slow', { auth: ALICE });
    await eventually(async () => seenOn(a, 'marker=slow') || seenOn(b, 'marker=slow'), 'the slow request reaching a server');
    const busy = seenOn(a, 'marker=slow') ? a : b;
    const idle = busy === a ? b : a;
    for (let i = 0; i < 4; i++) expect((await gw.request(`/echo?quick=${i}`, { auth: ALICE })).status).toBe(200);
    expect(busy.requests.filter((request) => request.url.includes('quick=')).length).toBe(0);
    expect(idle.requests.filter((request) => request.url.includes('quick=')).length).toBe(4);
    expect((await slow).status).toBe(200);
  });

  it('readyz: anyone gets the state and counts, an admin each server; metrics per server', async () => {
    expect((await gw.request('/-/readyz')).json()).toEqual({ status: 'ready', upstreams: 2, answering: 2 });
    const admin = (await gw.request('/-/readyz', { auth: ADMIN })).json<{ servers: ServerState[] }>();
    expect(admin.servers).toEqual([
      { url: a.url, state: 'up', checked: true, outstanding: 0 },
      { url: b.url, state: 'up', checked: true, outstanding: 0 },
    ]);
    // alice is signed in but no admin: no addresses.
    const alice = await gw.request('/-/readyz', { auth: ALICE });
    expect(alice.json()).toEqual({ status: 'ready', upstreams: 2, answering: 2 });
    expect(alice.text).not.toContain('127.0.0.1');
    const metrics = (await gw.request('/-/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text;
    for (const upstream of [a, b]) {
      expect(metrics).toContain(`mlgate_upstream_up{upstream="${upstream.url}"} 1`);
      expect(metrics).toContain(`mlgate_upstream_outstanding_requests{upstream="${upstream.url}"} 0`);
    }
  });
});

describe('a server the health checks take out and put back', () => {
  let a: MlflowUpstream;
  let sick: Awaited<ReturnType<typeof startServer>>;
  let gw: TestGateway;

  beforeAll(async () => {
    a = await startMlflowUpstream();
    sick = await startServer((_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    gw = await startTestGateway({ upstream: [a.url, sick.url], users: USERS, tls: false, config: { proxy: { healthCheck: HEALTH_CHECK }, metrics: { token: METRICS_TOKEN } } });
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.all([a?.close(), sick?.close()]);
  });

  it('out after `fails` failed checks: no request reaches it, readyz is degraded, the metric 0; back after `passes` good ones', async () => {
    sick.healthy = false;
    await eventually(async () => (await serverStates(gw)).get(sick.url)!.state === 'down', 'the failing server going out of rotation');
    expect((await serverStates(gw)).get(sick.url)).toMatchObject({ state: 'down', checked: true, lastError: 'answered 500 to GET /health' });
    const before = sick.seen.length;
    for (let i = 0; i < 6; i++) expect((await gw.request(`/echo?while-out=${i}`, { auth: ALICE })).status).toBe(200);
    expect(sick.seen.length).toBe(before);
    expect(a.requests.filter((request) => request.url.includes('while-out=')).length).toBe(6);
    // Still serving: degraded (200), and anyone sees only the counts.
    const anonymous = await gw.request('/-/readyz');
    expect(anonymous.status).toBe(200);
    expect(anonymous.json()).toEqual({ status: 'degraded', upstreams: 2, answering: 1 });
    const metrics = (await gw.request('/-/metrics', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text;
    expect(metrics).toContain(`mlgate_upstream_up{upstream="${sick.url}"} 0`);
    expect(metrics).toContain(`mlgate_upstream_up{upstream="${a.url}"} 1`);
    await waitForLog(gw.logs, (line) => line.upstream === new URL(sick.url).origin && String(line.msg).includes('out of rotation'));
    // A WebSocket picks its server the same way, and counts as outstanding on it while open.
    const sockets = await Promise.all([1, 2].map((i) => openWebSocket(gw, `/ws/while-out-${i}`, { authorization: basic(...ADMIN) })));
    expect(await roundTrip(sockets[0]!, 'hello')).toBe('echo:hello');
    expect(a.requests.filter((request) => request.url.startsWith('/ws/while-out-')).length).toBe(2);
    expect((await serverStates(gw)).get(a.url)!.outstanding).toBe(2);
    for (const socket of sockets) socket.close();
    await eventually(async () => (await serverStates(gw)).get(a.url)!.outstanding === 0, 'the tunnels ending');

    sick.healthy = true;
    await eventually(async () => (await serverStates(gw)).get(sick.url)!.state === 'up', 'the server coming back');
    expect((await gw.request('/-/readyz')).json()).toEqual({ status: 'ready', upstreams: 2, answering: 2 });
    for (let i = 0; i < 4; i++) expect((await gw.request(`/echo?after=${i}`, { auth: ALICE })).status).toBe(200);
    expect(sick.seen.filter((line) => line.includes('after=')).length).toBe(2);
  });
});

describe('retries', () => {
  let a: MlflowUpstream;
  let deadUrl: string;
  let cutter: Awaited<ReturnType<typeof startServer>>;
  let refusedFirst: TestGateway;
  let bodySent: TestGateway;

  beforeAll(async () => {
    a = await startMlflowUpstream({ defaultExperiment: true });
    deadUrl = `http://127.0.0.1:${await freePort()}`;
    // Reads the whole request with a body, then drops the connection without an answer: it has
    // been sent. Look-ups (GET) find nothing, as MLflow would answer for a new name.
    cutter = await startServer((req, res) => {
      if (req.method === 'GET') return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"not found"}');
      req.resume();
      req.on('end', () => req.socket.destroy());
    });
    // The dead server first: the first request goes to it, before its checks can take it out
    // (two failures needed, an interval apart: long here).
    refusedFirst = await startTestGateway({ upstream: [deadUrl, a.url], users: USERS, tls: false, config: { proxy: { healthCheck: { ...HEALTH_CHECK, interval: '1h', timeout: '1s' } } } });
    bodySent = await startTestGateway({ upstream: [cutter.url, a.url], users: USERS, tls: false, config: { proxy: { healthCheck: { ...HEALTH_CHECK, interval: '1h', timeout: '1s' } } } });
  });
  afterAll(async () => {
    await Promise.all([refusedFirst?.close(), bodySent?.close()]);
    await Promise.all([a?.close(), cutter?.close()]);
  });

  it('a refused connection: the request (no body) goes to the other server, and the refusing one is out at once', async () => {
    const res = await refusedFirst.request('/echo?refused-first=1', { auth: ALICE });
    expect(res.status).toBe(200);
    expect(seenOn(a, 'refused-first=1')).toBe(true);
    const retried = await waitForLog(refusedFirst.logs, (line) => line.retriedOn === new URL(a.url).origin);
    expect(retried).toMatchObject({ upstream: deadUrl, problem: 'ECONNREFUSED' });
    expect((await serverStates(refusedFirst)).get(deadUrl)).toMatchObject({ state: 'down', lastError: 'ECONNREFUSED' });
  });

  it('a body the gateway holds (read by the authorizer) is sent again after a refusal', async () => {
    // A fresh gateway, so the dead server is still in rotation and first in turn.
    const gw = await startTestGateway({ upstream: [deadUrl, a.url], users: USERS, tls: false, config: { proxy: { healthCheck: { ...HEALTH_CHECK, interval: '1h', timeout: '1s' } } } });
    try {
      const body = JSON.stringify({ max_results: 7, filter: "name = 'held-body'" });
      const res = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: ALICE, headers: { 'content-type': 'application/json' }, body });
      expect(res.status).toBe(200);
      expect(a.requests.some((request) => request.body.includes('held-body'))).toBe(true);
      await waitForLog(gw.logs, (line) => line.upstream === deadUrl && line.retriedOn === new URL(a.url).origin && line.problem === 'ECONNREFUSED');
    } finally {
      await gw.close();
    }
  });

  it('a request whose body reached a server is not retried, held or streamed: 502 naming that server, and the other never sees it', async () => {
    // Idle servers take turns: the cutter (listed first) gets the 1st, 3rd and 5th request, a the others.
    expect((await bodySent.request('/echo?warm=1', { auth: ALICE })).status).toBe(404);
    expect((await bodySent.request('/echo?between=1', { auth: ALICE })).status).toBe(200);
    // On the kept-alive connection the first request left. alice is no admin: the authorizer read
    // this body and the gateway holds it; its bytes were written, so it is not sent again.
    const body = JSON.stringify({ name: 'cut-experiment' });
    const create = await bodySent.request('/api/2.0/mlflow/experiments/create', { method: 'POST', auth: ALICE, headers: { 'content-type': 'application/json' }, body });
    expect(create.status).toBe(502);
    expect(create.json()).toMatchObject({ error_code: 'TEMPORARILY_UNAVAILABLE' });
    expect(create.json<{ message: string }>().message).toContain(`${cutter.url} (ECONNRESET)`);
    expect(cutter.seen).toContain('POST /api/2.0/mlflow/experiments/create');
    expect(a.requests.some((request) => request.body.includes('cut-experiment'))).toBe(false);
    expect((await bodySent.request('/echo?between=2', { auth: ALICE })).status).toBe(200);
    // A streamed body (an artifact upload).
    const upload = await bodySent.request('/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/cut.txt', { method: 'PUT', auth: ADMIN, body: 'x'.repeat(100_000) });
    expect(upload.status).toBe(502);
    expect(upload.json<{ message: string }>().message).toContain(`${cutter.url} (ECONNRESET)`);
    expect(cutter.seen).toContain('PUT /api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/cut.txt');
    expect(a.artifacts.has('1/run/artifacts/cut.txt')).toBe(false);
    expect(bodySent.logs.some((line) => line.retriedOn !== undefined)).toBe(false);
    // A connection that broke after the request was written proves nothing about the server: it stays in rotation.
    expect((await serverStates(bodySent)).get(cutter.url)!.state).toBe('up');
  });

  it('a reused kept-alive connection the server reset before the gateway wrote a byte: retried on the other server', async () => {
    // E answers on kept-alive connections; the test resets the one the gateway keeps to it.
    let kept: net.Socket | undefined;
    const e = await startServer((req, res) => {
      kept = req.socket;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"server":"E"}');
    });
    const gw = await startTestGateway({ upstream: [e.url, a.url], users: USERS, tls: false, config: { proxy: { healthCheck: { ...HEALTH_CHECK, interval: '1h', timeout: '1s' } } } });
    const client = net.connect(gw.port, '127.0.0.1');
    try {
      await new Promise((resolve) => client.once('connect', resolve));
      let received = '';
      client.on('data', (chunk: Buffer) => { received += chunk.toString('latin1'); });
      const requestFor = (marker: string) => `GET /echo?${marker} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${basic(...ALICE)}\r\n\r\n`;
      const answers = () => [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]));
      // Idle servers take turns: E, then the fake; the gateway now keeps one idle connection to E.
      client.write(requestFor('reuse=1'));
      await eventually(async () => answers().length === 1, 'the first answer');
      client.write(requestFor('reuse=2'));
      await eventually(async () => answers().length === 2, 'the second answer');
      expect(e.seen).toEqual(['GET /echo?reuse=1']);
      expect(seenOn(a, 'reuse=2')).toBe(true);
      // The third request (E's turn) reaches the gateway before E's reset does: the gateway takes
      // the kept connection from its pool and its first write fails on the reset.
      client.write(requestFor('reuse=3'));
      const until = Date.now() + 30;
      while (Date.now() < until); // both land in the gateway's kernel buffers, in this order
      kept!.resetAndDestroy();
      await eventually(async () => answers().length === 3, 'the third answer');
      expect(answers()).toEqual([200, 200, 200]);
      expect(seenOn(a, 'reuse=3')).toBe(true);
      expect(e.seen).toEqual(['GET /echo?reuse=1']);
      const retried = await waitForLog(gw.logs, (line) => line.retriedOn === new URL(a.url).origin);
      expect(retried).toMatchObject({ upstream: e.url, reusedConnection: true });
      expect(['ECONNRESET', 'EPIPE']).toContain(retried.problem);
    } finally {
      client.destroy();
      await gw.close();
      await e.close();
    }
  });
});

describe("a route's own health check path, or none", () => {
  it('healthCheckPath is what the route\'s servers are asked; false: never checked, never taken out', async () => {
    const answering = (alive: boolean) => startServer((req, res) => void res.writeHead(req.url === '/alive' && !alive ? 500 : 200).end('app'));
    const [sick, well, other1, other2] = await Promise.all([answering(false), answering(true), answering(false), answering(false)]);
    const mlflow = await startMlflowUpstream();
    const gw = await startTestGateway({
      upstream: mlflow.url, users: USERS, tls: false,
      config: {
        proxy: { healthCheck: HEALTH_CHECK },
        routes: [
          { path: '/mlflow', mlflow: true, stripPrefix: true },
          { path: '/app', upstream: [sick.url, well.url], healthCheckPath: '/alive', stripPrefix: true },
          { path: '/other', upstream: [other1.url, other2.url], healthCheckPath: false, stripPrefix: true },
        ],
      },
    });
    try {
      await eventually(async () => (await serverStates(gw)).get(sick.url)!.state === 'down', 'the app server failing /alive going out');
      const states = await serverStates(gw);
      expect(states.get(sick.url)).toMatchObject({ checked: true, lastError: 'answered 500 to GET /alive' });
      expect(states.get(well.url)).toMatchObject({ state: 'up', checked: true });
      // MLflow alone: never checked (probed when asked), as before.
      expect(states.get(mlflow.url)).toMatchObject({ state: 'up', checked: false });
      expect(states.get(other1.url)).toMatchObject({ state: 'up', checked: false });
      expect(states.get(other2.url)).toMatchObject({ state: 'up', checked: false });
      for (let i = 0; i < 4; i++) expect((await gw.request(`/app/page?${i}`, { auth: ADMIN })).status).toBe(200);
      expect(sick.seen.filter((line) => line.startsWith('GET /page')).length).toBe(0);
      expect(well.seen.filter((line) => line.startsWith('GET /page')).length).toBe(4);
      // Never checked: /alive was never asked of them.
      expect([...other1.seen, ...other2.seen].filter((line) => line.includes('/alive'))).toEqual([]);
    } finally {
      await gw.close();
      await Promise.all([sick, well, other1, other2, mlflow].map((server) => server.close()));
    }
  });
});

describe('every server down', () => {
  let gw: TestGateway;
  let dead: string[];

  beforeAll(async () => {
    dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
    gw = await startTestGateway({ upstream: dead, users: USERS, tls: false, config: { proxy: { healthCheck: HEALTH_CHECK } } });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('503 in MLflow\'s JSON naming each server and why; readyz unavailable', async () => {
    await eventually(async () => [...(await serverStates(gw)).values()].every((server) => server.state === 'down'), 'both servers going out');
    // An admin's request is forwarded unchecked: the forwarder finds no server.
    const res = await gw.request('/api/2.0/mlflow/experiments/get?experiment_id=0', { auth: ADMIN });
    expect(res.status).toBe(503);
    const error = res.json<{ error_code: string; message: string }>();
    expect(error.error_code).toBe('TEMPORARILY_UNAVAILABLE');
    for (const url of dead) expect(error.message).toContain(`${url} (ECONNREFUSED`);
    // alice's needs a look-up first (the experiment's grants), which finds none either.
    const lookup = await gw.request('/api/2.0/mlflow/experiments/get?experiment_id=0', { auth: ALICE });
    expect(lookup.status).toBe(502);
    expect(lookup.json()).toMatchObject({ error_code: 'TEMPORARILY_UNAVAILABLE' });
    for (const url of dead) expect(lookup.json<{ message: string }>().message).toContain(url);
    const ready = await gw.request('/-/readyz');
    expect(ready.status).toBe(503);
    expect(ready.json()).toEqual({ status: 'unavailable', upstreams: 2, answering: 0 });
  });
});

describe('one MLflow server killed mid-load', () => {
  let a: MlflowUpstream;
  let b: MlflowUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    [a, b] = await Promise.all([startMlflowUpstream(), startMlflowUpstream()]);
    gw = await startTestGateway({ upstream: [a.url, b.url], users: USERS, tls: false, config: { proxy: { healthCheck: HEALTH_CHECK } } });
  });
  afterAll(async () => {
    await gw?.close();
    await b?.close();
  });

  it('requests continue through the other; none sent after the kill, or refused, gets a 5xx', async () => {
    const outcomes: { index: number; marker: string; status: number; message: string }[] = [];
    let sent = 0;
    /** Requests numbered from here were sent to the gateway once the server was gone. */
    let sentAfterKill = Infinity;
    // 8 clients, each sending one request after the other; the server is killed after 100 answers
    // (its listener closed and every connection cut at once, as a crashed process's are).
    const client = async (id: number) => {
      while (sent < 400) {
        const index = sent++;
        const marker = `load-${id}-${index}`;
        const res = await gw.request(`/echo?${marker}`, { auth: ALICE, headers: { accept: 'application/json' } });
        outcomes.push({ index, marker, status: res.status, message: res.status >= 500 ? res.text : '' });
        if (outcomes.length === 100 && sentAfterKill === Infinity) {
          sentAfterKill = sent;
          void a.close();
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, id) => client(id)));
    expect(outcomes.length).toBe(400);
    const failed = outcomes.filter((outcome) => outcome.status >= 500);
    // Only requests in flight on the killed server may fail, and only as broken off once sent:
    // a refused connection is always retried on the other server.
    expect(failed.length).toBeLessThanOrEqual(8);
    for (const outcome of failed) {
      expect(outcome.index, outcome.marker).toBeLessThan(sentAfterKill);
      expect(outcome.message, outcome.marker).toContain('ECONNRESET');
    }
    const afterKill = outcomes.filter((outcome) => outcome.index >= sentAfterKill);
    expect(afterKill.length).toBeGreaterThan(250);
    expect(afterKill.filter((outcome) => outcome.status !== 200)).toEqual([]);
    expect(afterKill.every((outcome) => seenOn(b, outcome.marker))).toBe(true);
    await eventually(async () => (await serverStates(gw)).get(a.url)!.state === 'down', 'the killed server going out of rotation');
    expect((await gw.request('/-/readyz')).json()).toEqual({ status: 'degraded', upstreams: 2, answering: 1 });
  });
});

describe('configuration', () => {
  const parse = (input: Record<string, unknown>) => configSchema.safeParse(input);
  const messages = (input: Record<string, unknown>) => {
    const result = parse(input);
    return result.success ? [] : result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  };

  it('one URL is a list of one; a list keeps its order', () => {
    expect(configSchema.parse({}).upstream).toEqual(['http://127.0.0.1:5000']);
    expect(configSchema.parse({ upstream: 'http://10.0.0.5:5000' }).upstream).toEqual(['http://10.0.0.5:5000']);
    expect(configSchema.parse({ upstream: ['http://10.0.0.6:5000', 'http://10.0.0.5:5000'] }).upstream).toEqual(['http://10.0.0.6:5000', 'http://10.0.0.5:5000']);
    expect(configSchema.parse({}).proxy.healthCheck).toEqual({ path: '/health', interval: 5000, timeout: 2000, fails: 2, passes: 1 });
  });

  it('refuses repeated servers, mixed schemes, an empty list, and an mlflow route with other servers', () => {
    expect(messages({ upstream: ['http://10.0.0.5:5000', 'http://10.0.0.5:5000/'] })).toEqual(['upstream.1: repeats [0] (http://10.0.0.5:5000); each server is listed once']);
    expect(messages({ upstream: ['http://10.0.0.5:5000', 'https://10.0.0.6:5000'] })).toEqual(['upstream: mixes http:// and https:// servers; the servers of one upstream share a scheme']);
    expect(messages({ upstream: [] })).toEqual(['upstream: must name at least one server']);
    const upstream = ['http://10.0.0.5:5000', 'http://10.0.0.6:5000'];
    expect(messages({ upstream, routes: [{ path: '/mlflow', mlflow: true, upstream: ['http://10.0.0.6:5000', 'http://10.0.0.5:5000'] }] })).toEqual([]);
    expect(messages({ upstream, routes: [{ path: '/mlflow', mlflow: true, upstream: 'http://10.0.0.5:5000' }] })).toEqual([
      'routes.0.upstream: must be the top-level upstream ([http://10.0.0.5:5000, http://10.0.0.6:5000]) on an mlflow route: grants and owners are read from that MLflow server; leave it out to use it',
    ]);
    expect(messages({ upstream, routes: [{ path: '/mlflow', mlflow: true, healthCheckPath: '/x' }] })).toEqual([
      'routes.0.healthCheckPath: is not for an mlflow route: MLflow\'s servers are checked at proxy.healthCheck.path',
    ]);
    expect(messages({ proxy: { healthCheck: { interval: '1s', timeout: '2s' } } })).toEqual(['proxy.healthCheck.timeout: must not be longer than proxy.healthCheck.interval (1000 ms)']);
  });
});

