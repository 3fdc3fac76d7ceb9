// WebSockets through a route prefix (Jupyter's kernels and terminals live on them): authenticated
// with each kind of credential like HTTP, kept open past proxy.timeout, and closed with a proper
// close frame when the session is signed out or the gateway shuts down.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { runCli } from './helpers/cli.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { signIn, signOut } from './helpers/sign-in.ts';
import { closeEvent, openWebSocket as connect, roundTrip as echo, upgradeRefusal } from './helpers/websocket-client.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password' };
const ROUTES = [
  { path: '/mlflow', mlflow: true, stripPrefix: true },
  { path: '/app', upstream: '', stripPrefix: true, allow: ['alice'], upstreamHeaders: { 'X-App-Token': '${APP_TOKEN}' } },
];

let mlflow: MlflowUpstream;
let app: MlflowUpstream;
let gw: TestGateway;

async function gatewayFor(config: Record<string, unknown> = {}): Promise<TestGateway> {
  return startTestGateway({
    upstream: mlflow.url,
    users: USERS,
    env: { APP_TOKEN: 'from-the-environment' },
    config: { routes: ROUTES.map((route) => (route.upstream === '' ? { ...route, upstream: app.url } : route)), ...config },
  });
}

beforeAll(async () => {
  mlflow = await startMlflowUpstream();
  app = await startMlflowUpstream();
  gw = await gatewayFor();
});
afterAll(async () => {
  await gw?.close();
  await mlflow?.close();
  await app?.close();
});

const upgradesTo = (upstream: MlflowUpstream, url: string) => upstream.requests.filter((r) => r.url === url && r.headers.upgrade === 'websocket');

describe('a WebSocket through a route prefix', () => {
  it('reaches the route\'s upstream without the prefix, with the route\'s headers, for Basic credentials', async () => {
    const ws = await connect(gw, '/app/ws/basic', { authorization: basic('alice', USERS.alice) });
    expect(await echo(ws, 'hi')).toBe('echo:hi');
    ws.close();
    const [seen] = upgradesTo(app, '/ws/basic');
    expect(seen!.headers['x-app-token']).toBe('from-the-environment');
    expect(seen!.headers['x-forwarded-user']).toBe('alice');
    expect(seen!.headers.authorization).toBeUndefined();
    expect(upgradesTo(mlflow, '/ws/basic')).toHaveLength(0);
  });

  it('takes an API token (Bearer)', async () => {
    const issued = runCli(['token', 'issue', 'alice', '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir });
    expect(issued.status, issued.stderr).toBe(0);
    const secret = issued.stdout.trim();
    // The tokens file is re-read every watchInterval (50 ms here).
    let ws: WebSocket | undefined;
    for (let attempt = 0; !ws && attempt < 40; attempt++) {
      ws = await connect(gw, '/app/ws/bearer', { authorization: `Bearer ${secret}` }).catch(async () => {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return undefined;
      });
    }
    expect(ws).toBeDefined();
    expect(await echo(ws!, 'token')).toBe('echo:token');
    ws!.close();
  });

  it('takes the session cookie from a page of this site, and refuses it from any other', async () => {
    const cookie = await signIn(gw, 'alice', USERS.alice);
    const ws = await connect(gw, '/app/ws/cookie', { cookie, origin: gw.url });
    expect(await echo(ws, 'cookie')).toBe('echo:cookie');
    ws.close();
    expect(upgradesTo(app, '/ws/cookie')[0]!.headers.cookie).toBeUndefined(); // the session cookie stays here

    const foreign = await upgradeRefusal(gw, '/app/ws/foreign', { cookie, origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body).message).toContain('cross-site WebSocket refused');
    expect((await upgradeRefusal(gw, '/app/ws/no-origin', { cookie })).status).toBe(403);
    expect(upgradesTo(app, '/ws/foreign')).toHaveLength(0);
  });

  it('refuses without credentials (401) and users the route does not allow (403)', async () => {
    const anonymous = await upgradeRefusal(gw, '/app/ws/anon', {});
    expect(anonymous.status).toBe(401);
    const bob = await upgradeRefusal(gw, '/app/ws/bob', { authorization: basic('bob', USERS.bob) });
    expect(bob.status).toBe(403);
    expect(JSON.parse(bob.body)).toEqual({ error_code: 'PERMISSION_DENIED', message: 'user bob may not use /app (routes: allow: admins and alice)' });
    expect(upgradesTo(app, '/ws/anon').length + upgradesTo(app, '/ws/bob').length).toBe(0);
  });

  it('is closed with code 1008 when its session is signed out', async () => {
    const cookie = await signIn(gw, 'alice', USERS.alice);
    const ws = await connect(gw, '/app/ws/signed-out', { cookie, origin: gw.url });
    expect(await echo(ws, 'before')).toBe('echo:before');
    const closing = closeEvent(ws);
    await signOut(gw, cookie);
    expect(await closing).toEqual({ code: 1008, reason: 'session signed out' });
    await waitForLog(gw.logs, (line) => line.msg === 'WebSocket closed: its session ended' && line.user === 'alice');
  });

  it('outlives proxy.timeout, then is closed with code 1001 when the gateway shuts down', async () => {
    const quick = await gatewayFor({ proxy: { timeout: '300ms' } });
    let ws: WebSocket | undefined;
    try {
      ws = await connect(quick, '/app/ws/long', { authorization: basic('alice', USERS.alice) });
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(await echo(ws, 'still here')).toBe('echo:still here');
      const closing = closeEvent(ws);
      await quick.close(200);
      expect(await closing).toEqual({ code: 1001, reason: 'mlgate is shutting down' });
    } finally {
      ws?.terminate();
      await quick.close();
    }
  });
});
