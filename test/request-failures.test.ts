// A bug costs one request: a throw (or a rejected promise) anywhere on a request's path through the
// pipeline answers that one request 500 in MLflow's JSON with its request id, logs it once, and the
// server keeps serving everyone else. And whatever the outcome, each request gets exactly one
// access-log line, each WebSocket upgrade one line when its socket closes.
//
// The one deliberate fault injection in this file: the first part builds the pipeline with every
// real collaborator but the authenticator, a stand-in that throws (or rejects) when a request asks it
// to with `X-Test-Fault`. The containment of src/server/request-pipeline.ts (decide) cannot be
// reached otherwise: no real input makes a step of the path throw. The second part uses no
// stand-ins at all (startTestGateway).
import { mkdtempSync, rmSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Authenticator, AuthOutcome } from '../src/auth/authenticate.ts';
import { createAuthorizer } from '../src/authz/authorize-request.ts';
import { PolicyStore } from '../src/authz/policy.ts';
import { BodyBudget } from '../src/authz/read-body.ts';
import { Resolver } from '../src/authz/resolver.ts';
import { configSchema, IDENTITY_HEADERS } from '../src/config/schema.ts';
import { trustedProxies } from '../src/context/client-ip.ts';
import { GatewayRequest } from '../src/context/request-context.ts';
import { compileRoutes } from '../src/context/upstream-routes.ts';
import { createControlApp } from '../src/control/app.ts';
import { createLogger } from '../src/log/logger.ts';
import { UpstreamPool } from '../src/proxy/upstream-pool.ts';
import { createForwarder } from '../src/proxy/forwarder.ts';
import { WebSocketTunnels } from '../src/proxy/websocket-tunnels.ts';
import { createConnectionGuard } from '../src/server/connection-guard.ts';
import { createRequestPipeline } from '../src/server/request-pipeline.ts';
import { createSlowRequestWatch } from '../src/server/slow-requests.ts';
import { VERSION } from '../src/version.ts';
import { captureLogs, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic, request, type TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { closeEvent, openWebSocket, roundTrip, upgradeRefusal } from './helpers/websocket-client.ts';

type LogLine = Record<string, unknown>;

const ERROR = 50;
const INTERNAL_ERROR_LOG = 'internal error while handling a request';

/** The access-log lines of one request or upgrade. */
function accessLines(logs: LogLine[], reqId: string): LogLine[] {
  return logs.filter((line) => line.reqId === reqId && (line.msg === 'request' || line.msg === 'websocket'));
}

/**
 * Exactly one access-log line for `reqId`, checked after a pause long enough for a second one to
 * show (a response's 'close' and a socket's 'close' both come within a few ms of the answer).
 */
async function theOneAccessLine(logs: LogLine[], reqId: string): Promise<LogLine> {
  await waitForLog(logs, (line) => accessLines([line], reqId).length === 1);
  await new Promise((resolve) => setTimeout(resolve, 150));
  const lines = accessLines(logs, reqId);
  expect(lines, `access-log lines of ${reqId}`).toHaveLength(1);
  return lines[0]!;
}

async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a bug in the request path costs that one request a 500 (pipeline with a faulty authenticator)', () => {
  let upstream: MlflowUpstream;
  let server: http.Server;
  let url: string;
  let dir: string;
  let logs: LogLine[];
  let stop: () => void;

  /** Throws for `X-Test-Fault: sync`, rejects for `async`, otherwise alice (Basic); nothing else about it is real. */
  const faultyAuthenticator: Authenticator = {
    challenge: 'Basic realm="MLflow", charset="UTF-8"',
    authenticate(req: IncomingMessage): AuthOutcome | Promise<AuthOutcome> {
      const fault = req.headers['x-test-fault'];
      if (fault === 'sync') throw new Error('injected synchronous fault');
      if (fault === 'async') return Promise.reject(new Error('injected asynchronous fault'));
      return { ok: true, principal: { user: 'alice', method: 'basic', groups: [] } };
    },
    verifyPassword: () => ({ ok: false, status: 401, message: 'not used in this test' }),
  };

  beforeAll(async () => {
    upstream = await startMlflowUpstream();
    dir = mkdtempSync(join(tmpdir(), 'mlgate-failures-'));
    // The configuration startGateway would get, with its defaults; no policy file: the built-in policy.
    const config = configSchema.parse({ host: '127.0.0.1', port: 0, upstream: upstream.url, tls: { enabled: false }, authz: { policyFile: join(dir, 'policy.yaml') } });
    const captured = captureLogs();
    logs = captured.logs;
    const logger = createLogger({ ...config.log, level: 'debug' }, captured.stream);

    // As startGateway builds them (src/server/gateway.ts), the authenticator aside.
    const policy = new PolicyStore({ path: config.authz.policyFile, watchIntervalMs: config.watchInterval }, logger);
    const routes = compileRoutes(config);
    const tunnels = new WebSocketTunnels(logger);
    const forwarders = new Map(routes.map((route) => [route, createForwarder({
      pool: UpstreamPool.of(route.upstreams),
      timeoutMs: config.proxy.timeout,
      maxBodySize: config.proxy.maxBodySize,
      keepAliveSockets: config.proxy.keepAliveSockets,
      preserveHost: !route.mlflow,
      onTunnel: (client, upstreamSocket) => tunnels.connected(client, upstreamSocket),
    })] as const));
    const proxies = trustedProxies([]);
    server = http.createServer({ IncomingMessage: GatewayRequest });
    const connections = createConnectionGuard(config.limits, proxies, logger);
    connections.attach(server);
    const slowRequests = createSlowRequestWatch(config.limits, logger);
    const resolver = new Resolver({ upstream: config.upstream, cacheTtlMs: config.authz.cacheTtl, timeoutMs: Math.min(config.proxy.timeout, 30_000), userHeader: config.proxy.userHeader });
    const authorizer = createAuthorizer({
      policy, resolver, allowUnknownRoutes: config.authz.allowUnknownRoutes, maxCheckedBody: config.authz.maxCheckedBody, maxLookupsPerRequest: config.authz.maxLookupsPerRequest,
      maxDecompressedBody: config.authz.maxDecompressedBody, bodyBudget: new BodyBudget(config.limits.checkedBodyBudget), logger,
      workspacesEnabled: async () => false,
    });
    const control = createControlApp({ upstreamReady: async () => ({ ready: true, detail: upstream.url }), version: VERSION, logger });
    const userHeader = config.proxy.userHeader.toLowerCase();
    const pipeline = createRequestPipeline({
      logger,
      proxies,
      authenticator: faultyAuthenticator,
      routes,
      forwarders,
      policy,
      tunnels,
      control,
      identity: {
        strip: [...new Set([...IDENTITY_HEADERS, ...config.proxy.stripHeaders.map((name) => name.toLowerCase()), userHeader])],
        userHeader,
        forwardAuthorization: config.auth.forwardAuthorization,
      },
      tls: false,
      hsts: false,
      authorizer,
      trustedOrigins: new Set(config.auth.trustedOrigins),
      slowRequests,
      connections,
    });
    server.on('request', pipeline.handleRequest);
    server.on('upgrade', pipeline.handleUpgrade);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    stop = () => {
      tunnels.closeAll(1001, 'test over');
      slowRequests.close();
      for (const forwarder of forwarders.values()) forwarder.close();
      resolver.close();
      policy.stop();
    };
  });

  afterAll(async () => {
    if (server) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    stop?.();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function get(path: string, headers: Record<string, string> = {}): Promise<TestResponse> {
    return request(url + path, { headers });
  }

  function upstreamSaw(path: string): number {
    return upstream.requests.filter((seen) => seen.url === path).length;
  }

  /** A target on MLflow's API (answered in MLflow's JSON) that names the test, for finding it at the upstream. */
  function apiTarget(name: string): string {
    return `/api/2.0/mlflow/experiments/get?experiment_id=${name}`;
  }

  /** What a faulted request must have got, and left in the log and at the upstream. */
  async function expectContained(res: TestResponse, target: string): Promise<string> {
    expect(res.status).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const reqId = res.headers['x-request-id'];
    expect(typeof reqId).toBe('string');
    expect(res.json()).toEqual({ error_code: 'INTERNAL_ERROR', message: `the gateway failed to handle this request (request id ${reqId})` });
    expect(upstreamSaw(target)).toBe(0);
    expect(upstream.requests.some((seen) => seen.headers['x-request-id'] === reqId)).toBe(false);
    const access = await theOneAccessLine(logs, reqId as string);
    expect(access).toMatchObject({ msg: 'request', status: 500, path: target.split('?')[0] });
    expect(access.user, 'no one was authenticated').toBeUndefined();
    const errors = logs.filter((line) => line.reqId === reqId && line.level === ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ msg: INTERNAL_ERROR_LOG });
    return reqId as string;
  }

  it('a synchronous throw in admission: 500 with the request id, logged once, never forwarded', async () => {
    const res = await get(apiTarget('sync-fault'), { 'x-test-fault': 'sync' });
    await expectContained(res, apiTarget('sync-fault'));
    const error = logs.find((line) => line.msg === INTERNAL_ERROR_LOG && line.reqId === res.headers['x-request-id'])!;
    expect(JSON.stringify(error.err)).toContain('injected synchronous fault');
  });

  it('a rejected promise in admission: 500 with the request id, logged once, never forwarded', async () => {
    const res = await get(apiTarget('async-fault'), { 'x-test-fault': 'async' });
    await expectContained(res, apiTarget('async-fault'));
    const error = logs.find((line) => line.msg === INTERNAL_ERROR_LOG && line.reqId === res.headers['x-request-id'])!;
    expect(JSON.stringify(error.err)).toContain('injected asynchronous fault');
  });

  it('a client-given request id is the one in the answer, its header and the log', async () => {
    const res = await get(apiTarget('own-id'), { 'x-test-fault': 'sync', 'x-request-id': 'failures-own-id-1' });
    expect(res.headers['x-request-id']).toBe('failures-own-id-1');
    expect(await expectContained(res, apiTarget('own-id'))).toBe('failures-own-id-1');
  });

  it('the next request, and one among 20 faulting ones at the same time, gets the upstream\'s answer', async () => {
    const after = await get('/echo/after-fault');
    expect(after.status).toBe(200);
    expect(after.json()).toMatchObject({ method: 'GET', url: '/echo/after-fault' });
    expect(after.json<{ headers: Record<string, string> }>().headers['x-forwarded-user']).toBe('alice');
    expect((await theOneAccessLine(logs, after.headers['x-request-id'] as string))).toMatchObject({ status: 200, user: 'alice' });

    const faulting = Array.from({ length: 20 }, (_, i) => get(apiTarget(`crowd-${i}`), { 'x-test-fault': i % 2 ? 'async' : 'sync' }));
    const good = get('/echo/among-faults');
    const [goodRes, ...faulted] = await Promise.all([good, ...faulting]);
    expect(goodRes!.status).toBe(200);
    expect(goodRes!.json()).toMatchObject({ url: '/echo/among-faults' });
    expect(upstreamSaw('/echo/among-faults')).toBe(1);
    expect(await theOneAccessLine(logs, goodRes!.headers['x-request-id'] as string)).toMatchObject({ status: 200, user: 'alice', path: '/echo/among-faults' });
    const ids = await Promise.all(faulted.map((res, i) => expectContained(res, apiTarget(`crowd-${i}`))));
    expect(new Set(ids).size).toBe(20);
    expect(await get('/echo/after-crowd')).toMatchObject({ status: 200 });
  });

  it('an upgrade with a synchronous throw gets a raw 500 with the id, its socket is closed, the upstream sees nothing; the next upgrade echoes', async () => {
    const port = (server.address() as AddressInfo).port;
    const socket = net.connect(port, '127.0.0.1');
    let raw = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => { raw += chunk; });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write([
      'GET /ws/sync-fault HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'X-Test-Fault: sync',
      'X-Request-Id: failures-ws-sync-1',
      '', '',
    ].join('\r\n'));
    await closed; // the gateway ends the connection after its answer
    const [head, body] = raw.split('\r\n\r\n');
    expect(head!.split('\r\n')[0]).toBe('HTTP/1.1 500 Internal Server Error');
    expect(head).toMatch(/^X-Request-Id: failures-ws-sync-1$/im);
    expect(head).toMatch(/^Content-Type: application\/json$/im);
    expect(JSON.parse(body!)).toEqual({ error_code: 'INTERNAL_ERROR', message: 'the gateway failed to handle this request (request id failures-ws-sync-1)' });
    expect(upstreamSaw('/ws/sync-fault')).toBe(0);
    const access = await theOneAccessLine(logs, 'failures-ws-sync-1');
    expect(access).toMatchObject({ msg: 'request', status: 500, upgrade: true, path: '/ws/sync-fault' });
    const errors = logs.filter((line) => line.reqId === 'failures-ws-sync-1' && line.level === ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ msg: INTERNAL_ERROR_LOG });

    // The same through a WebSocket client, asynchronously.
    const refused = await upgradeRefusal({ url }, '/ws/async-fault', { 'x-test-fault': 'async', 'x-request-id': 'failures-ws-async-1' });
    expect(refused.status).toBe(500);
    expect(JSON.parse(refused.body)).toEqual({ error_code: 'INTERNAL_ERROR', message: 'the gateway failed to handle this request (request id failures-ws-async-1)' });
    expect(upstreamSaw('/ws/async-fault')).toBe(0);
    expect(await theOneAccessLine(logs, 'failures-ws-async-1')).toMatchObject({ msg: 'request', status: 500, upgrade: true });

    const ws = await openWebSocket({ url }, '/ws/after-fault', { 'x-request-id': 'failures-ws-good-1' });
    try {
      expect(await roundTrip(ws, 'still here')).toBe('echo:still here');
    } finally {
      const closedWs = closeEvent(ws);
      ws.close();
      await closedWs;
    }
    expect(await theOneAccessLine(logs, 'failures-ws-good-1')).toMatchObject({ msg: 'websocket', status: 101, user: 'alice', upgrade: true });
  });
});

describe('one access-log line per request, whatever its outcome (real gateway)', () => {
  let upstream: MlflowUpstream;
  let gw: TestGateway;
  const alice = basic('alice', 'alice-password');

  beforeAll(async () => {
    upstream = await startMlflowUpstream();
    gw = await startTestGateway({
      upstream: upstream.url,
      users: { alice: 'alice-password' },
      config: { routes: [{ path: '/mlflow', mlflow: true, stripPrefix: true }] },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('200 forwarded', async () => {
    const res = await gw.request('/mlflow/echo/one-line', { headers: { authorization: alice, 'x-request-id': 'one-line-200' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-request-id']).toBe('one-line-200');
    expect(await theOneAccessLine(gw.logs, 'one-line-200')).toMatchObject({ msg: 'request', status: 200, user: 'alice', path: '/mlflow/echo/one-line' });
  });

  it('401 without credentials', async () => {
    const res = await gw.request('/mlflow/echo/one-line', { headers: { 'x-request-id': 'one-line-401' } });
    expect(res.status).toBe(401);
    expect(await theOneAccessLine(gw.logs, 'one-line-401')).toMatchObject({ msg: 'request', status: 401 });
  });

  it('403 from the authorization step (a non-admin on an admin-only route)', async () => {
    const res = await gw.request('/mlflow/api/2.0/mlflow/webhooks', { headers: { authorization: alice, 'x-request-id': 'one-line-403' } });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error_code: 'PERMISSION_DENIED' });
    expect(upstream.requests.some((seen) => seen.url === '/api/2.0/mlflow/webhooks')).toBe(false);
    expect(await theOneAccessLine(gw.logs, 'one-line-403')).toMatchObject({ msg: 'request', status: 403, user: 'alice', decision: 'deny' });
  });

  it('308 to the slash form of a stripped route', async () => {
    const res = await gw.request('/mlflow', { headers: { 'x-request-id': 'one-line-308' } });
    expect(res.status).toBe(308);
    expect(res.headers.location).toBe('/mlflow/');
    expect(await theOneAccessLine(gw.logs, 'one-line-308')).toMatchObject({ msg: 'request', status: 308, path: '/mlflow' });
  });

  it('a WebSocket: one "websocket" line, only once its socket closed', async () => {
    const opened = upstream.openWebSockets();
    const ws = await openWebSocket(gw, '/mlflow/ws/one-line', { authorization: alice, 'x-request-id': 'one-line-ws' });
    expect(await roundTrip(ws, 'hi')).toBe('echo:hi');
    await until(() => upstream.openWebSockets() === opened + 1, 'the upstream holding the WebSocket');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(accessLines(gw.logs, 'one-line-ws')).toEqual([]);
    const closed = closeEvent(ws);
    ws.close();
    await closed;
    expect(await theOneAccessLine(gw.logs, 'one-line-ws')).toMatchObject({ msg: 'websocket', status: 101, user: 'alice', upgrade: true, path: '/mlflow/ws/one-line' });
  });

  it('a refused upgrade: one "request" line with upgrade: true and its 401', async () => {
    const refused = await upgradeRefusal(gw, '/mlflow/ws/one-line-refused', { 'x-request-id': 'one-line-ws-401' });
    expect(refused.status).toBe(401);
    expect(refused.headers['x-request-id']).toBe('one-line-ws-401');
    expect(upstream.requests.some((seen) => seen.url === '/ws/one-line-refused')).toBe(false);
    expect(await theOneAccessLine(gw.logs, 'one-line-ws-401')).toMatchObject({ msg: 'request', status: 401, upgrade: true });
  });
});
