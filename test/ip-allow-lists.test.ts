// IP allow-lists (issue 17): access.allowCidrs for the whole gateway, routes[].allowCidrs per route,
// checked in admission before authentication, on the client address the request context works out
// (behind proxy.trustedProxies, the forwarded client). Other loopback addresses (127.0.0.x, as
// `localAddress`) play other clients.
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const USERS = { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password' };
const LOCKOUT = { window: '10s', maxUserFailures: 3, maxIpFailures: 5, backoff: '5s', backoffMax: '5s' };
const SEARCH = '/api/2.0/mlflow/experiments/search';

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string }

/** One request on its own connection from `from` (a 127.0.0.x address). */
function send(gw: TestGateway, path: string, from: string, options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gw.port, path, method: options.method ?? 'GET', headers: options.headers, localAddress: from, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function search(gw: TestGateway, from: string, user: string, password: string, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> {
  return send(gw, SEARCH, from, { method: 'POST', headers: { authorization: basic(user, password), 'content-type': 'application/json', ...headers }, body: '{"max_results":10}' });
}

/** The upgrade's answer: 101 (then closed), or the refusal's status and body. */
function upgrade(gw: TestGateway, path: string, from: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`, { headers, localAddress: from });
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.once('unexpected-response', (_req, res: http.IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

let upstream: MlflowUpstream;
beforeAll(async () => {
  upstream = await startMlflowUpstream();
});
afterAll(async () => {
  await upstream?.close();
});

describe('access.allowCidrs and routes[].allowCidrs, the peer being the client', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      upstream: upstream.url,
      tls: false,
      users: USERS,
      config: {
        // 127.0.0.3 written as an IPv4-mapped IPv6 address: the same client.
        access: { allowCidrs: ['127.0.0.1', '::ffff:127.0.0.3/128', '10.0.0.0/8', '::1/128'] },
        lockout: LOCKOUT,
        routes: [
          { path: '/', mlflow: true },
          { path: '/app', upstream: upstream.url, stripPrefix: true, allow: ['*'], allowCidrs: ['127.0.0.3'] },
          // A route's list only narrows: 127.0.0.2 is outside access.allowCidrs, so still refused here.
          { path: '/wide', upstream: upstream.url, stripPrefix: true, allow: ['*'], allowCidrs: ['127.0.0.0/8'] },
        ],
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('lets an allowed address through, IPv4-mapped entries included', async () => {
    expect((await search(gw, '127.0.0.1', 'alice', 'alice-password')).status).toBe(200);
    expect((await search(gw, '127.0.0.3', 'alice', 'alice-password')).status).toBe(200);
  });

  it('refuses another address with 403 before authentication: no password checked, no lockout counted, nothing upstream', async () => {
    const verifications = gw.gateway.passwordChecker.verifications;
    const upstreamRequests = upstream.requests.length;
    // More wrong passwords for bob than lockout.maxUserFailures, from a refused address.
    for (let i = 0; i < 5; i++) {
      const res = await search(gw, '127.0.0.2', 'bob', `guess-${i}`);
      expect(res.status).toBe(403);
      expect(res.headers['www-authenticate']).toBeUndefined();
      expect(JSON.parse(res.body)).toEqual({ error_code: 'PERMISSION_DENIED', message: 'requests from this address (127.0.0.2) are not allowed here' });
    }
    // The right password from a refused address is refused the same way.
    expect((await search(gw, '127.0.0.2', 'alice', 'alice-password')).status).toBe(403);
    expect(gw.gateway.passwordChecker.verifications).toBe(verifications);
    expect(upstream.requests.length).toBe(upstreamRequests);
    // bob is not locked out: none of those attempts counted.
    expect((await search(gw, '127.0.0.1', 'bob', 'bob-password')).status).toBe(200);

    // The same guesses from an allowed address do lock carol out (the lockout is on here).
    for (let i = 0; i < 3; i++) expect((await search(gw, '127.0.0.1', 'carol', `guess-${i}`)).status).toBe(401);
    const locked = await search(gw, '127.0.0.1', 'carol', 'carol-password');
    expect(locked.status).toBe(401);
    expect(locked.body).toContain('too many failed sign-ins for user \\"carol\\"');
  });

  it('logs the refusal at info with the address; the access line has it too', async () => {
    await send(gw, '/api/2.0/mlflow/runs/get?run_id=1', '127.0.0.2');
    const refusal = await waitForLog(gw.logs, (l) => l.msg === 'client address not in access.allowCidrs: refused' && l.path === '/api/2.0/mlflow/runs/get');
    expect(refusal).toMatchObject({ level: 30, ip: '127.0.0.2' });
    await waitForLog(gw.logs, (l) => l.msg === 'request' && l.path === '/api/2.0/mlflow/runs/get' && l.ip === '127.0.0.2' && l.status === 403);
  });

  it('answers a browser with a readable page that does not reveal the list', async () => {
    const res = await send(gw, '/', '127.0.0.2', { headers: { accept: 'text/html' } });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.body).toContain('<h1>Access denied</h1>');
    expect(res.body).toContain('requests from this address (127.0.0.2) are not allowed here');
    for (const entry of ['127.0.0.1', '127.0.0.3', '10.0.0.0', 'allowCidrs']) expect(res.body).not.toContain(entry);
    // No sign-in redirect either: the session step never ran.
    expect((await send(gw, '/-/login', '127.0.0.2', { headers: { accept: 'text/html' } })).status).toBe(403);
  });

  it('still answers the orchestrator\'s probes from any address, without checking credentials there', async () => {
    expect((await send(gw, '/-/healthz', '127.0.0.2')).status).toBe(200);
    const verifications = gw.gateway.passwordChecker.verifications;
    const ready = await send(gw, '/-/readyz', '127.0.0.2', { headers: { authorization: basic('alice', 'alice-password') } });
    expect(ready.status).toBe(200);
    // An admin's details need an address allowed to sign in; the password was not even checked.
    expect(ready.body).not.toContain(upstream.url);
    expect(gw.gateway.passwordChecker.verifications).toBe(verifications);
  });

  it('a route\'s list narrows the gateway\'s: both must allow', async () => {
    const auth = { authorization: basic('alice', 'alice-password') };
    // Refused before authentication: no credentials, yet a 403 rather than a 401.
    expect((await send(gw, '/app/echo', '127.0.0.1')).status).toBe(403);
    expect((await send(gw, '/app/echo', '127.0.0.1', { headers: auth })).status).toBe(403);
    // The bare prefix gets no redirect either.
    expect((await send(gw, '/app', '127.0.0.1')).status).toBe(403);
    await waitForLog(gw.logs, (l) => l.msg === 'client address not in routes[].allowCidrs of /app: refused' && l.ip === '127.0.0.1' && l.route === '/app');
    expect((await send(gw, '/app/echo', '127.0.0.3', { headers: auth })).status).toBe(200);
    // Within 127.0.0.0/8, but outside access.allowCidrs.
    expect((await send(gw, '/wide/echo', '127.0.0.2', { headers: auth })).status).toBe(403);
    expect((await send(gw, '/wide/echo', '127.0.0.1', { headers: auth })).status).toBe(200);
  });

  it('refuses a WebSocket upgrade from a refused address, and lets an allowed one through', async () => {
    const auth = { authorization: basic('alice', 'alice-password') };
    const seen = () => upstream.requests.filter((r) => r.url === '/ws/allow-list').length;
    const refused = await upgrade(gw, '/ws/allow-list', '127.0.0.2', auth);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toEqual({ error_code: 'PERMISSION_DENIED', message: 'requests from this address (127.0.0.2) are not allowed here' });
    expect(seen()).toBe(0);
    // The route's list applies to upgrades too.
    expect((await upgrade(gw, '/app/ws', '127.0.0.1', auth)).status).toBe(403);
    expect((await upgrade(gw, '/ws/allow-list', '127.0.0.1', auth)).status).toBe(101);
    expect(seen()).toBe(1);
  });
});

describe('behind a trusted proxy: the forwarded client is checked', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      upstream: upstream.url,
      tls: false,
      users: USERS,
      config: { access: { allowCidrs: ['10.1.0.0/16'] }, proxy: { trustedProxies: ['127.0.0.9'] } },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  const viaProxy = (forwardedFor: string | undefined) => search(gw, '127.0.0.9', 'alice', 'alice-password', forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor });

  it('lets in a client the proxy names in the list (also IPv4-mapped), refuses one outside it', async () => {
    expect((await viaProxy('10.1.2.3')).status).toBe(200);
    expect((await viaProxy('::ffff:10.1.2.3')).status).toBe(200);
    const refused = await viaProxy('10.2.0.1');
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ message: 'requests from this address (10.2.0.1) are not allowed here' });
    await waitForLog(gw.logs, (l) => l.msg === 'client address not in access.allowCidrs: refused' && l.ip === '10.2.0.1' && l.peer === '127.0.0.9');
  });

  it('a client cannot get in by forging X-Forwarded-For through the proxy: the proxy\'s own (right-most) entry counts', async () => {
    // The client sent "X-Forwarded-For: 10.1.2.3"; the proxy appended the address it saw.
    expect((await viaProxy('10.1.2.3, 10.2.0.1')).status).toBe(403);
    // The proxy's own requests (no X-Forwarded-For) are the proxy's address, not in the list.
    expect((await viaProxy(undefined)).status).toBe(403);
  });

  it('an untrusted peer sending X-Forwarded-For is checked on its own address', async () => {
    const res = await search(gw, '127.0.0.2', 'alice', 'alice-password', { 'x-forwarded-for': '10.1.2.3' });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ message: 'requests from this address (127.0.0.2) are not allowed here' });
  });
});

describe('configuration', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'mlgate-allow-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function problemsOf(text: string): string[] {
    writeFileSync(join(dir, 'mlgate.yaml'), text);
    try {
      loadConfig({ configPath: 'mlgate.yaml', env: {}, cwd: dir });
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems;
    }
  }

  it('names each bad entry with its file, line and key', () => {
    expect(problemsOf([
      'access:',
      '  allowCidrs:',
      '    - 10.0.0.0/8',
      '    - 10.0.0.0/33',
      '    - mlflow.example.com',
      'routes:',
      '  - path: /',
      '    mlflow: true',
      '    allowCidrs: ["::1/129"]',
      '',
    ].join('\n'))).toEqual([
      'mlgate.yaml:4: access.allowCidrs[1]: must be an IP address or CIDR range, e.g. 10.0.0.0/8, got "10.0.0.0/33"',
      'mlgate.yaml:5: access.allowCidrs[2]: must be an IP address or CIDR range, e.g. 10.0.0.0/8, got "mlflow.example.com"',
      'mlgate.yaml:9: routes[0].allowCidrs[0]: must be an IP address or CIDR range, e.g. 10.0.0.0/8, got "::1/129"',
    ]);
  });

  it('takes IPv4, IPv6 and IPv4-mapped entries; absent is everyone', () => {
    expect(problemsOf('access:\n  allowCidrs: [10.0.0.0/8, 192.168.1.7, "::1/128", "::ffff:10.1.2.3"]\n')).toEqual([]);
    writeFileSync(join(dir, 'mlgate.yaml'), '{}\n');
    expect(loadConfig({ configPath: 'mlgate.yaml', env: {}, cwd: dir }).config.access.allowCidrs).toEqual([]);
  });
});
