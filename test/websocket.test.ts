import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { nextMessage, openWebSocket as connect, upgradeRefusal as refusal } from './helpers/websocket-client.ts';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url });
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

function upgradesSeen(path: string): number {
  return upstream.requests.filter((r) => r.url === path && r.headers.upgrade === 'websocket').length;
}

async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('WebSockets through the gateway', () => {
  it('carries text and binary messages both ways for an authenticated user', async () => {
    const ws = await connect(gw, '/ws/echo', { authorization: basic('alice', 'alice-password') });
    try {
      const text = nextMessage(ws);
      ws.send('hello');
      expect(await text).toEqual({ data: 'echo:hello', isBinary: false });
      const payload = Buffer.from([0, 1, 2, 250, 251, 252]);
      const binary = nextMessage(ws);
      ws.send(payload);
      expect(await binary).toEqual({ data: payload, isBinary: true });
    } finally {
      ws.close();
    }
    await waitForLog(gw.logs, (l) => l.msg === 'websocket' && l.path === '/ws/echo' && l.user === 'alice');
  });

  it('refuses an upgrade without credentials with 401 and a Basic challenge; the upstream never sees it', async () => {
    const res = await refusal(gw, '/ws/anonymous');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="MLflow", charset="UTF-8"');
    expect(JSON.parse(res.body)).toMatchObject({ error_code: 'UNAUTHENTICATED' });
    expect(upgradesSeen('/ws/anonymous')).toBe(0);
  });

  it('refuses an upgrade with a wrong password with 401; the upstream never sees it', async () => {
    const res = await refusal(gw, '/ws/wrong', { authorization: basic('alice', 'not-her-password') });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toEqual({ error_code: 'UNAUTHENTICATED', message: 'invalid user name or password' });
    expect(upgradesSeen('/ws/wrong')).toBe(0);
  });

  it('strips identity headers from the upgrade and names the authenticated user, like any request', async () => {
    const ws = await connect(gw, '/ws/identity', {
      authorization: basic('alice', 'alice-password'),
      'X-Forwarded-User': 'mallory',
      'X-Remote-User': 'mallory',
      'X_Forwarded_User': 'mallory',
      'X-Forwarded-For': '203.0.113.9',
    });
    ws.close();
    const seen = upstream.requests.find((r) => r.url === '/ws/identity')!;
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers['x-remote-user']).toBeUndefined();
    expect(seen.headers.x_forwarded_user).toBeUndefined();
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers.host).toBe(`127.0.0.1:${upstream.port}`);
    expect(JSON.stringify(seen.headers)).not.toContain('mallory');
  });

  it('bounds the wait for the upgrade by proxy.timeout, but not the open WebSocket', async () => {
    const quick = await startTestGateway({ upstream: upstream.url, config: { proxy: { timeout: '300ms' } } });
    try {
      const ws = await connect(quick, '/ws/idle', { authorization: basic('alice', 'alice-password') });
      await new Promise((resolve) => setTimeout(resolve, 700));
      const reply = nextMessage(ws);
      ws.send('still there');
      expect(await reply).toEqual({ data: 'echo:still there', isBinary: false });
      ws.close();
    } finally {
      await quick.close();
    }
    // An upstream that takes the connection and never answers the upgrade.
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const stuck = await startTestGateway({ upstream: `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, config: { proxy: { timeout: '300ms' } } });
    try {
      const res = await refusal(stuck, '/ws/silent', { authorization: basic('alice', 'alice-password') });
      expect(res.status).toBe(504);
      expect(JSON.parse(res.body).message).toContain('proxy.timeout');
    } finally {
      await stuck.close();
      silent.close();
    }
  });

  it('answers 502 when the upstream is not running', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as AddressInfo;
        server.close(() => resolve(free));
      });
    });
    const orphan = await startTestGateway({ upstream: `http://127.0.0.1:${port}` });
    try {
      const res = await refusal(orphan, '/ws/down', { authorization: basic('alice', 'alice-password') });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body)).toMatchObject({ error_code: 'TEMPORARILY_UNAVAILABLE' });
      expect(JSON.parse(res.body).message).toContain(`127.0.0.1:${port}`);
    } finally {
      await orphan.close();
    }
  });

  it('closes the upstream side of open WebSockets when the gateway shuts down', async () => {
    const closing = await startTestGateway({ upstream: upstream.url });
    const before = upstream.openWebSockets();
    const ws = await connect(closing, '/ws/shutdown', { authorization: basic('alice', 'alice-password') });
    const closed = new Promise((resolve) => ws.once('close', resolve));
    await until(() => upstream.openWebSockets() === before + 1, 'the upstream accepting the WebSocket');
    await closing.close(200);
    await closed;
    await until(() => upstream.openWebSockets() === before, 'the upstream WebSocket closing');
  });
});
