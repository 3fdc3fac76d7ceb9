import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { pinnedAgent } from './helpers/tls-client.ts';

interface Echo {
  headers: Record<string, string | string[] | undefined>;
  body: string;
  bytes: number;
}

let upstream: MlflowUpstream;
/** Defaults: no trusted proxies, X-Forwarded-User, Authorization not forwarded. */
let gw: TestGateway;
/** Everything configurable set: the peer (127.0.0.1) is a trusted proxy. */
let configured: TestGateway;

const ALICE: [string, string] = ['alice', 'alice-password'];

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-password', 'zoë': 'zoë-password' } });
  configured = await startTestGateway({
    upstream: upstream.url,
    config: {
      proxy: { userHeader: 'X-MLflow-User', stripHeaders: ['X-Team-Role'], trustedProxies: ['127.0.0.1'] },
      auth: { forwardAuthorization: true },
    },
  });
});
afterAll(async () => {
  await gw?.close();
  await configured?.close();
  await upstream?.close();
});

async function echoed(target: TestGateway, headers: Record<string, string | string[]>, path = '/echo'): Promise<{ seen: Echo['headers']; responseHeaders: Record<string, unknown> }> {
  // The pinned agent lets the Host header differ from the address dialled, as behind a DNS name.
  const res = await target.request(path, { auth: ALICE, headers, agent: pinnedAgent(target.ca!) });
  expect(res.status).toBe(200);
  return { seen: res.json<Echo>().headers, responseHeaders: res.headers };
}

describe('Host and X-Forwarded-* toward the upstream', () => {
  it('rewrites Host to the upstream (MLflow 3.5+ rejects other hosts) and keeps the original in X-Forwarded-Host', async () => {
    const { seen } = await echoed(gw, { host: 'mlflow.example.org' });
    expect(seen.host).toBe(`127.0.0.1:${upstream.port}`);
    expect(seen['x-forwarded-host']).toBe('mlflow.example.org');
    expect(seen['x-forwarded-proto']).toBe('https');
  });

  it('overwrites what an untrusted client claims instead of appending to it', async () => {
    const { seen } = await echoed(gw, {
      host: 'mlflow.example.org',
      'x-forwarded-for': '203.0.113.9, 10.1.1.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'evil.example',
      forwarded: 'for=203.0.113.9;proto=http',
      'x-real-ip': '203.0.113.9',
      'x-forwarded-port': '80',
      'x-forwarded-prefix': '/evil',
    });
    // http-proxy's own xfwd would have sent "203.0.113.9, 10.1.1.1,127.0.0.1".
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-host']).toBe('mlflow.example.org');
    for (const name of ['forwarded', 'x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix']) expect(seen[name], name).toBeUndefined();
  });

  it('extends the chain of a trusted proxy with that proxy\'s address and keeps its proto and host', async () => {
    const { seen } = await echoed(configured, {
      host: '127.0.0.1',
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'mlflow.example.org',
      'x-request-id': 'trusted-chain-1',
    });
    expect(seen['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('https');
    expect(seen['x-forwarded-host']).toBe('mlflow.example.org');
    // The log names the client the trusted proxy vouched for, not the proxy.
    const line = await waitForLog(configured.logs, (l) => l.reqId === 'trusted-chain-1' && l.msg === 'request');
    expect(line.ip).toBe('203.0.113.9');
  });

  it('starts the chain at a trusted proxy that sent none', async () => {
    const { seen } = await echoed(configured, { host: 'mlflow.example.org' });
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-forwarded-host']).toBe('mlflow.example.org');
  });
});

describe('identity toward the upstream', () => {
  it('strips every identity header a client sends, in any case and spelling, and names the authenticated user once', async () => {
    const { seen } = await echoed(gw, {
      'X-Forwarded-User': ['mallory', 'eve'],
      'x-REMOTE-user': 'mallory',
      'Remote-User': 'mallory',
      'X-Auth-Request-Email': 'mallory@example.org',
      'X-Forwarded-Groups': 'admins',
      'X-MLGATE-USER': 'mallory',
      // WSGI servers read this as HTTP_X_FORWARDED_USER, the same variable as X-Forwarded-User.
      'X_Forwarded_User': 'mallory',
      'X_Forwarded_For': '203.0.113.9',
    });
    expect(seen['x-forwarded-user']).toBe('alice');
    for (const name of ['x-remote-user', 'remote-user', 'x-auth-request-email', 'x-forwarded-groups', 'x-mlgate-user', 'x_forwarded_user', 'x_forwarded_for']) {
      expect(seen[name], name).toBeUndefined();
    }
    expect(JSON.stringify(seen)).not.toContain('mallory');
  });

  it('does not forward the client\'s Authorization header by default', async () => {
    const { seen } = await echoed(gw, {});
    expect(seen.authorization).toBeUndefined();
    expect(seen['x-forwarded-user']).toBe('alice');
  });

  it('sends a user name outside ASCII percent-encoded, as header values are Latin-1', async () => {
    const res = await gw.request('/echo', { auth: ['zoë', 'zoë-password'] });
    expect(res.status).toBe(200);
    expect(res.json<Echo>().headers['x-forwarded-user']).toBe('zo%C3%AB');
  });

  it('uses the configured user header, strips configured extra headers and forwards Authorization when asked to', async () => {
    const { seen } = await echoed(configured, {
      'X-MLflow-User': 'mallory',
      'X-Forwarded-User': 'mallory',
      'x-team-ROLE': 'admin',
      'X_Team_Role': 'admin',
    });
    expect(seen['x-mlflow-user']).toBe('alice');
    expect(seen['x-forwarded-user']).toBeUndefined();
    expect(seen['x-team-role']).toBeUndefined();
    expect(seen.x_team_role).toBeUndefined();
    expect(seen.authorization).toBe(basic(...ALICE));
  });
});

describe('hop-by-hop headers', () => {
  it('removes hop-by-hop headers and those the client names in Connection, keeping the rest', async () => {
    const { seen } = await echoed(gw, {
      connection: 'keep-alive, X-Custom, x-other',
      'x-custom': 'private to this hop',
      'x-other': 'also private',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'proxy-authorization': basic('proxy', 'secret'),
      'proxy-connection': 'keep-alive',
      // Without "upgrade" in Connection this is no upgrade; the header still must not travel on.
      upgrade: 'h2c',
      'x-kept': 'yes',
    });
    for (const name of ['x-custom', 'x-other', 'keep-alive', 'te', 'proxy-authorization', 'proxy-connection', 'upgrade']) {
      expect(seen[name], name).toBeUndefined();
    }
    expect(seen['x-kept']).toBe('yes');
  });

  it('keeps the body\'s framing when the client names Content-Length in Connection', async () => {
    const body = JSON.stringify({ name: 'framing' });
    const res = await gw.request('/echo', { method: 'POST', auth: ALICE, headers: { connection: 'content-length', 'content-type': 'application/json' }, body });
    expect(res.status).toBe(200);
    const echo = res.json<Echo>();
    expect(echo.body).toBe(body);
    expect(echo.headers['content-length']).toBe(String(Buffer.byteLength(body)));
  });

  it('removes the upstream\'s hop-by-hop response headers, including those it names in Connection', async () => {
    const res = await gw.request('/response-headers?Connection=x-upstream-private&X-Upstream-Private=secret&Keep-Alive=timeout%3D2&X-Visible=1', { auth: ALICE });
    expect(res.status).toBe(200);
    expect(res.text).toBe('headers');
    expect(res.headers['x-visible']).toBe('1');
    expect(res.headers['x-upstream-private']).toBeUndefined();
    // The gateway manages its own connection with the client.
    expect(res.headers.connection).not.toContain('x-upstream-private');
    expect(res.headers['keep-alive']).not.toBe('timeout=2');
  });
});

describe('X-Request-Id', () => {
  it('passes a sane client request id to the upstream and back', async () => {
    const { seen, responseHeaders } = await echoed(gw, { 'x-request-id': 'trace-42.a:b@c_d' });
    expect(seen['x-request-id']).toBe('trace-42.a:b@c_d');
    expect(responseHeaders['x-request-id']).toBe('trace-42.a:b@c_d');
  });

  it.each([
    ['with spaces', 'an id with spaces'],
    ['300 characters long', 'a'.repeat(300)],
    ['with a quote', 'id"<script>'],
  ])('replaces a request id %s with one of its own, the same upstream and back', async (_label, given) => {
    const { seen, responseHeaders } = await echoed(gw, { 'x-request-id': given });
    const id = responseHeaders['x-request-id'];
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen['x-request-id']).toBe(id);
  });

  it('makes one when the client sends none', async () => {
    const { seen, responseHeaders } = await echoed(gw, {});
    expect(responseHeaders['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen['x-request-id']).toBe(responseHeaders['x-request-id']);
  });
});
