// Several upstreams behind one port, chosen by path prefix (routes: in mlgate.yaml): MLflow under
// /mlflow/ with its prefix stripped, another app under /app/ and at /, each with its own access rule.
import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { effectiveConfigYaml } from '../src/config/effective-config.ts';
import { compileRoutes } from '../src/context/upstream-routes.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { basic, type TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const USERS = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password' };
const APP_TOKEN = 'app-secret-token-1234';

let mlflow: MlflowUpstream;
let app: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mlflow = await startMlflowUpstream();
  app = await startMlflowUpstream();
  gw = await startTestGateway({
    upstream: mlflow.url,
    users: USERS,
    env: { APP_TOKEN },
    policy: { groups: { viewers: ['alice'] }, admins: ['admin'] },
    config: {
      routes: [
        { path: '/mlflow/', mlflow: true, stripPrefix: true },
        { path: '/app', upstream: app.url, stripPrefix: true, allow: ['@viewers'], upstreamHeaders: { Authorization: 'token ${APP_TOKEN}', 'X-App-Tenant': 'research' } },
        { path: '/', upstream: app.url },
      ],
    },
  });
});
afterAll(async () => {
  await gw?.close();
  await mlflow?.close();
  await app?.close();
});

const as = (user: keyof typeof USERS) => ({ authorization: basic(user, USERS[user]) });

/** A request with the path exactly as written (an http client's URL parser would resolve dot segments). */
function rawRequest(target: TestGateway, path: string, headers: Record<string, string> = {}): Promise<TestResponse> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: target.port, path, ca: target.ca, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function lastSeenBy(upstream: MlflowUpstream, predicate: (url: string) => boolean) {
  return [...upstream.requests].reverse().find((r) => predicate(r.url));
}

describe('routing by path prefix', () => {
  it('sends /mlflow/... to MLflow without the prefix, and nothing of it to the other app', async () => {
    const before = app.requests.length;
    const res = await gw.request('/mlflow/api/2.0/mlflow/experiments/search?max_results=5', { headers: as('bob') });
    expect(res.status, res.text).toBe(200);
    expect(lastSeenBy(mlflow, (url) => url.includes('experiments/search'))?.url).toBe('/api/2.0/mlflow/experiments/search?max_results=5');
    expect(app.requests.slice(before).some((r) => r.url.includes('experiments/search'))).toBe(false);
  });

  it('picks the longest prefix, on whole segments only', async () => {
    const under = await gw.request('/app/echo/x?q=1', { headers: as('alice') });
    expect(under.status, under.text).toBe(200);
    expect(under.json().url).toBe('/echo/x?q=1');
    // "/application" is not under "/app": the catch-all "/" takes it, unstripped (and only for admins).
    const sibling = await gw.request('/application/echo', { headers: as('admin') });
    expect(sibling.status).toBe(404);
    expect(lastSeenBy(app, (url) => url.startsWith('/application'))?.url).toBe('/application/echo');
    const root = await gw.request('/echo/root', { headers: as('admin') });
    expect(root.json().url).toBe('/echo/root');
  });

  it('redirects the bare prefix of a stripped route to its slash form, keeping the query', async () => {
    for (const [path, location] of [['/mlflow', '/mlflow/'], ['/mlflow?o=1', '/mlflow/?o=1'], ['/app', '/app/']] as const) {
      const res = await gw.request(path, { headers: as('admin') });
      expect(res.status, path).toBe(308);
      expect(res.headers.location).toBe(location);
    }
  });

  it('serves the MLflow UI page at /mlflow/', async () => {
    const res = await gw.request('/mlflow/', { headers: as('bob') });
    expect(res.status).toBe(200);
    expect(lastSeenBy(mlflow, (url) => url === '/')).toBeDefined();
  });

  it('keeps the client Host for other apps and sends MLflow its own', async () => {
    const other = (await gw.request('/app/echo', { headers: as('alice') })).json<{ headers: Record<string, string> }>();
    expect(other.headers.host).toBe(`127.0.0.1:${gw.port}`);
    expect(other.headers['x-forwarded-user']).toBe('alice');
    await gw.request('/mlflow/echo', { headers: as('bob') });
    expect(lastSeenBy(mlflow, (url) => url === '/echo')!.headers.host).toBe(`127.0.0.1:${mlflow.port}`);
  });
});

describe('readiness with routes', () => {
  it('/-/readyz tells anyone the state and counts, and only an admin which upstream answered', async () => {
    const ready = await gw.request('/-/readyz');
    expect(ready.status).toBe(200);
    // Two distinct upstreams (MLflow, and the app behind /app and /): no addresses without an admin's credentials.
    expect(ready.json()).toEqual({ status: 'ready', upstreams: 2, answering: 2 });
    expect(ready.text).not.toContain('127.0.0.1');
    for (const [user, password] of [['alice', 'alice-password'], ['admin', 'wrong-password']] as const) {
      const res = await gw.request('/-/readyz', { auth: [user, password] });
      expect(res.json(), user).toEqual({ status: 'ready', upstreams: 2, answering: 2 });
    }
    const asAdmin = await gw.request('/-/readyz', { auth: ['admin', 'admin-password'] });
    expect(asAdmin.status).toBe(200);
    expect(asAdmin.json()).toEqual({
      status: 'ready', upstreams: 2, answering: 2,
      upstream: `${mlflow.url} answered 200`,
      routes: { '/mlflow': `${mlflow.url} answered 200`, '/app': `${app.url} answered 200`, '/': `${app.url} answered 200` },
      mlflow: { version: '3.11.1', workspaces: false, newestKnown: '3.16' },
    });
    const halfDown = await startTestGateway({ upstream: mlflow.url, users: USERS, config: { routes: [{ path: '/mlflow', mlflow: true, stripPrefix: true }, { path: '/', upstream: 'http://127.0.0.1:1' }] } });
    try {
      const res = await halfDown.request('/-/readyz');
      expect(res.status).toBe(503);
      expect(res.json()).toEqual({ status: 'unavailable', upstreams: 2, answering: 1 });
      const detailed = await halfDown.request('/-/readyz', { auth: ['admin', 'admin-password'] });
      expect(detailed.status).toBe(503);
      expect(detailed.json()).toMatchObject({ status: 'unavailable', routes: { '/mlflow': `${mlflow.url} answered 200`, '/': 'http://127.0.0.1:1: ECONNREFUSED' } });
    } finally {
      await halfDown.close();
    }
  });
});

describe('Location headers of a stripped route', () => {
  it('puts a path back under the prefix', async () => {
    const res = await gw.request('/mlflow/redirect', { headers: as('bob') });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/mlflow/echo');
  });

  it('turns a URL on the upstream itself into a path under the prefix, and leaves other sites alone', async () => {
    const own = await gw.request(`/app/response-headers?Location=${encodeURIComponent(`${app.url}/tree?x=1`)}`, { headers: as('alice') });
    expect(own.headers.location).toBe('/app/tree?x=1');
    const elsewhere = await gw.request(`/app/response-headers?Location=${encodeURIComponent('https://example.org/a')}`, { headers: as('alice') });
    expect(elsewhere.headers.location).toBe('https://example.org/a');
    const relative = await gw.request('/app/response-headers?Location=next', { headers: as('alice') });
    expect(relative.headers.location).toBe('next');
  });

  it('leaves Location alone on a route that does not strip', async () => {
    const res = await gw.request('/redirect', { headers: as('admin') });
    expect(res.headers.location).toBe('/echo');
  });
});

describe('who may use a route (allow)', () => {
  it('lets a listed @group in, refuses others with 403 naming the route, admins always', async () => {
    expect((await gw.request('/app/echo', { headers: as('alice') })).status).toBe(200);
    expect((await gw.request('/app/echo', { headers: as('admin') })).status).toBe(200);
    const before = app.requests.length;
    const refused = await gw.request('/app/echo', { headers: { ...as('bob'), accept: 'application/json' } });
    expect(refused.status).toBe(403);
    expect(refused.json()).toEqual({ error_code: 'PERMISSION_DENIED', message: 'user bob may not use /app (routes: allow: admins and @viewers)' });
    expect(app.requests.length).toBe(before);
  });

  it('keeps a route that is not MLflow for admins when allow is not set', async () => {
    const refused = await gw.request('/tree', { headers: { ...as('alice'), accept: 'text/html' } });
    expect(refused.status).toBe(403);
    expect(refused.headers['content-type']).toContain('text/html');
    expect(refused.text).toContain('may not use / (routes: allow: admins only)');
    expect((await gw.request('/tree', { headers: as('admin') })).status).toBe(404); // the app's own answer
  });

  it('asks for credentials before anything else, on every route', async () => {
    for (const path of ['/app/echo', '/tree', '/mlflow/api/2.0/mlflow/experiments/search']) {
      const res = await gw.request(path);
      expect(res.status, path).toBe(401);
      expect(res.headers['www-authenticate']).toContain('Basic');
    }
  });
});

describe('headers added for the upstream (upstreamHeaders)', () => {
  it('sends the configured headers with values from the environment, in place of what the client sent', async () => {
    const res = await gw.request('/app/echo', { headers: { ...as('alice'), 'x-app-tenant': 'mallory' } });
    const seen = res.json<{ headers: Record<string, string> }>().headers;
    expect(seen.authorization).toBe(`token ${APP_TOKEN}`);
    expect(seen['x-app-tenant']).toBe('research');
    // Only on that route.
    await gw.request('/mlflow/echo', { headers: as('bob') });
    expect(lastSeenBy(mlflow, (url) => url === '/echo')!.headers.authorization).toBeUndefined();
  });
});

describe('MLflow behaviour on the MLflow route only', () => {
  it('answers the MLflow client in JSON under the prefix, whatever it accepts', async () => {
    const res = await gw.request('/mlflow/api/2.0/mlflow/experiments/search', { headers: { accept: '*/*' } });
    expect(res.status).toBe(401);
    expect(res.json()).toMatchObject({ error_code: 'UNAUTHENTICATED' });
  });

  it('checks MLflow permissions under the prefix: unknown API routes and other users\' experiments are refused', async () => {
    const unknown = await gw.request('/mlflow/api/2.0/mlflow/no-such-route', { headers: as('bob') });
    expect(unknown.status).toBe(403);
    expect(unknown.json().message).toContain('no-such-route');
    const created = await gw.request('/mlflow/api/2.0/mlflow/experiments/create', { method: 'POST', headers: { ...as('admin'), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'routes-admin-only' }) });
    expect(created.status, created.text).toBe(200);
    const id = created.json().experiment_id as string;
    const deleted = await gw.request('/mlflow/api/2.0/mlflow/experiments/delete', { method: 'POST', headers: { ...as('bob'), 'content-type': 'application/json' }, body: JSON.stringify({ experiment_id: id }) });
    expect(deleted.status).toBe(403);
    expect(deleted.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining(`experiment ${id}`) });
  });

  it('passes /api/ paths of another app through without MLflow\'s route table', async () => {
    // alice is no admin: on the MLflow route this path is an unknown API route (403).
    const res = await gw.request('/app/api/2.0/mlflow/no-such-route', { headers: as('alice') });
    expect(res.status).not.toBe(403);
    expect(lastSeenBy(app, (url) => url === '/api/2.0/mlflow/no-such-route')).toBeDefined();
  });
});

describe('paths that could reach one route through another\'s prefix', () => {
  it.each([
    ['/mlflow/../tree', 'segment'],
    ['/app/%2e%2e/tree', 'segment'],
    ['/ml%66low/api/2.0/mlflow/experiments/search', 'reads differently'],
    ['//mlflow/api/2.0/mlflow/experiments/search', 'reads differently'],
    ['/app%2Fecho', 'reads differently'],
    ['/app/%E0%A4%A', 'malformed'],
  ])('refuses %s with 400', async (path, why) => {
    const before = app.requests.length + mlflow.requests.length;
    const res = await rawRequest(gw, path, as('admin'));
    expect(res.status, res.text).toBe(400);
    expect(res.text).toContain(why);
    expect(app.requests.length + mlflow.requests.length).toBe(before);
  });

  it('answers an unrouted path with 404 only once signed in', async () => {
    const only = await startTestGateway({ upstream: mlflow.url, users: USERS, config: { routes: [{ path: '/mlflow', mlflow: true, stripPrefix: true }] } });
    try {
      expect((await only.request('/elsewhere')).status).toBe(401);
      const res = await only.request('/elsewhere', { headers: { ...as('bob'), accept: 'application/json' } });
      expect(res.status).toBe(404);
      expect(res.json()).toEqual({ error_code: 'ENDPOINT_NOT_FOUND', message: 'no route serves /elsewhere; routes: /mlflow' });
    } finally {
      await only.close();
    }
  });
});

describe('routes in the configuration file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mlgate-routes-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function load(routes: unknown[], env: NodeJS.ProcessEnv = {}) {
    const configPath = join(dir, 'mlgate.yaml');
    writeFileSync(configPath, stringify({ upstream: 'http://127.0.0.1:5000', routes }));
    return loadConfig({ configPath, env, cwd: dir });
  }

  function problems(routes: unknown[], env: NodeJS.ProcessEnv = {}): string[] {
    try {
      load(routes, env);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    throw new Error('the configuration loaded');
  }

  it('names the file, line and field of each mistake', () => {
    expect(problems([
      { path: '/mlflow', mlflow: true, upstream: 'http://127.0.0.1:5001' },
      { path: '/mlflow/', upstream: 'http://127.0.0.1:8889' },
      { path: 'jupyter', upstream: 'http://127.0.0.1:8889/lab' },
      { path: '/a', upstreamHeaders: { Host: 'x', 'Bad Name': 'y' } },
    ])).toEqual([
      'mlgate.yaml:5: routes[0].upstream: must be the top-level upstream (http://127.0.0.1:5000) on an mlflow route: grants and owners are read from that MLflow server; leave it out to use it',
      'mlgate.yaml:6: routes[1].path: repeats routes[0].path (/mlflow); each prefix goes to one upstream',
      'mlgate.yaml:8: routes[2].path: must be a path such as / or /mlflow: segments of letters, digits and -._~ with no "..", "//", "%" or "?", got "jupyter"',
      'mlgate.yaml:9: routes[2].upstream: must be an origin such as http://127.0.0.1:8889 (the request path is forwarded as is, after stripPrefix), got "http://127.0.0.1:8889/lab"',
      'mlgate.yaml:12: routes[3].upstreamHeaders.Host: is framed by the gateway itself and cannot be set per route',
      'mlgate.yaml:13: routes[3].upstreamHeaders.Bad Name: must be an HTTP header name',
    ]);
  });

  it('refuses a header that names an unset variable, without printing any value', () => {
    const found = problems([{ path: '/', upstream: 'http://127.0.0.1:8889', upstreamHeaders: { Authorization: 'token ${JUPYTER_TOKEN}' } }], { OTHER: 'x' });
    expect(found).toEqual(['mlgate.yaml:6: routes[0].upstreamHeaders.Authorization: names ${JUPYTER_TOKEN}, which is not set in the environment']);
    const newline = problems([{ path: '/', upstream: 'http://127.0.0.1:8889', upstreamHeaders: { Authorization: 'token ${JUPYTER_TOKEN}' } }], { JUPYTER_TOKEN: 'abc\r\nX-Evil: 1' });
    expect(newline.join('\n')).toContain('control character');
    expect(newline.join('\n')).not.toContain('abc');
  });

  it('loads the notebook-host recipe (config/notebook-host.example.yaml) as docs/jupyter.md describes it', () => {
    const configPath = fileURLToPath(new URL('../config/notebook-host.example.yaml', import.meta.url));
    const { config } = loadConfig({ configPath, env: { JUPYTER_TOKEN: 'abc123' }, cwd: dir });
    expect(compileRoutes(config).map(({ path, upstreams, stripPrefix, mlflow, allow, headers }) => ({ path, upstream: upstreams[0]!.origin, stripPrefix, mlflow, allow, headers }))).toEqual([
      { path: '/mlflow', upstream: 'http://127.0.0.1:5000', stripPrefix: true, mlflow: true, allow: ['*'], headers: [] },
      { path: '/', upstream: 'http://127.0.0.1:8889', stripPrefix: false, mlflow: false, allow: ['admin', '@data-science'], headers: [['authorization', 'token abc123']] },
    ]);
    expect(() => loadConfig({ configPath, env: {}, cwd: dir })).toThrow('names ${JUPYTER_TOKEN}, which is not set in the environment');
  });

  it('fills variables in, and prints the configuration with the values redacted', () => {
    const { config } = load([{ path: '/', upstream: 'http://127.0.0.1:8889', upstreamHeaders: { Authorization: 'token ${JUPYTER_TOKEN}' } }], { JUPYTER_TOKEN: 's3cret' });
    expect(config.routes[0]!.upstreamHeaders.Authorization).toBe('token s3cret');
    const printed = effectiveConfigYaml(config);
    expect(printed).toContain('Authorization: (redacted)');
    expect(printed).not.toContain('s3cret');
  });
});
