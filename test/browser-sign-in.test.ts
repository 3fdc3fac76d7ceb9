// Browser sign-in at the HTTP level: the redirect of UI pages to /-/login, the session cookie and
// what it authenticates, cross-site refusals, sign-out (remembered across restarts), sliding expiry,
// and key rotation. The browser itself drives the same flow in browser-chromium.test.ts.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { openWebSocket, upgradeRefusal } from './helpers/websocket-client.ts';
import type { RequestOptions, TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const COOKIE = '__Host-mlgate-session';
const SEARCH = '/ajax-api/2.0/mlflow/experiments/search';
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

let upstream: MlflowUpstream;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-password', bob: 'bob-password' } });
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

interface SetCookie {
  name: string;
  value: string;
  /** Attribute names lower-cased; flags map to true. */
  attributes: Map<string, string | true>;
}

function parseSetCookie(header: string): SetCookie {
  const [pair, ...rest] = header.split(';');
  const at = pair!.indexOf('=');
  const attributes = new Map<string, string | true>();
  for (const part of rest) {
    const [name, ...value] = part.trim().split('=');
    attributes.set(name!.toLowerCase(), value.length ? value.join('=') : true);
  }
  return { name: pair!.slice(0, at).trim(), value: pair!.slice(at + 1).trim(), attributes };
}

/** The session cookie a response sets (or clears), if any. */
function sessionCookieOf(res: TestResponse): SetCookie | undefined {
  const found = (res.headers['set-cookie'] ?? []).map(parseSetCookie).filter((cookie) => cookie.name === COOKIE);
  expect(found.length).toBeLessThanOrEqual(1);
  return found[0];
}

function form(fields: Record<string, string>): RequestOptions {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: HTML },
    body: new URLSearchParams(fields).toString(),
  };
}

/** Posts the sign-in form as a browser on the gateway's own page does (Origin: the gateway). */
function postSignIn(target: TestGateway, fields: Record<string, string>, headers: Record<string, string> = { origin: target.url }): Promise<TestResponse> {
  const options = form(fields);
  return target.request('/-/login', { ...options, headers: { ...options.headers, ...headers } });
}

/** Signs in and returns the cookie as a browser would send it back ("name=value"). */
async function signIn(target: TestGateway, user = 'alice', password = `${user}-password`): Promise<string> {
  const res = await postSignIn(target, { username: user, password, next: '/' });
  expect(res.status, res.text).toBe(303);
  const cookie = sessionCookieOf(res);
  expect(cookie).toBeDefined();
  return `${COOKIE}=${cookie!.value}`;
}

/** An MLflow UI call as the UI's own script makes it: a same-origin POST with the cookie. */
function uiCall(target: TestGateway, cookie: string, headers: Record<string, string> = { origin: target.url }): Promise<TestResponse> {
  return target.request(SEARCH, { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: '{"max_results":10}' });
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const sleepUntil = (epochSeconds: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, epochSeconds * 1000 - Date.now() + 50)));

describe('a browser without credentials', () => {
  it('is sent from a UI page to /-/login with the page to return to', async () => {
    const res = await gw.request('/experiments/1?tab=runs', { headers: { accept: HTML } });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/-/login?next=%2Fexperiments%2F1%3Ftab%3Druns');
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(res.headers['cache-control']).toBe('no-store');

    const root = await gw.request('/', { method: 'HEAD', headers: { accept: HTML } });
    expect(root.status).toBe(302);
    expect(root.headers.location).toBe('/-/login?next=%2F');

    // The gateway's own permissions page too, but never its API or health checks.
    const permissions = await gw.request('/-/permissions', { headers: { accept: HTML } });
    expect(permissions.status).toBe(302);
    expect(permissions.headers.location).toBe('/-/login?next=%2F-%2Fpermissions');
    expect((await gw.request('/-/api/permissions/mine', { headers: { accept: HTML } })).status).toBe(401);
    expect((await gw.request('/-/healthz', { headers: { accept: HTML } })).status).toBe(200);
  });

  it('gets 401 JSON, never a redirect or a page, on /api/ and /ajax-api/', async () => {
    const before = upstream.requests.length;
    const api = await gw.request('/api/2.0/mlflow/experiments/search', { headers: { accept: HTML } });
    expect(api.status).toBe(401);
    expect(api.headers['content-type']).toBe('application/json');
    expect(api.json()).toMatchObject({ error_code: 'UNAUTHENTICATED' });
    expect(api.headers['www-authenticate']).toMatch(/^Basic /); // the MLflow client's path keeps its challenge

    const ajax = await gw.request('/ajax-api/2.0/mlflow/experiments/search', { headers: { accept: HTML } });
    expect(ajax.status).toBe(401);
    expect(ajax.headers['content-type']).toBe('application/json');
    expect(ajax.json()).toMatchObject({ error_code: 'UNAUTHENTICATED', message: expect.stringContaining('/-/login') });
    // No Basic challenge behind the UI's back: a browser would pop a password prompt over the page.
    expect(ajax.headers['www-authenticate']).toBeUndefined();
    expect(upstream.requests.length).toBe(before);
  });

  it('gets no Basic challenge for a page script\'s fetch (Sec-Fetch-Mode), on any path', async () => {
    for (const path of ['/api/2.0/mlflow/experiments/search', '/static-files/app.js', '/']) {
      const fetched = await gw.request(path, { headers: { accept: '*/*', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' } });
      expect(fetched.status, path).toBe(401);
      expect(fetched.headers['www-authenticate'], path).toBeUndefined();
      expect(fetched.text, path).toContain('reload the page to sign in (/-/login)');
    }
    // A navigation is still sent to sign in; a client without the header still gets the challenge.
    expect((await gw.request('/', { headers: { accept: HTML, 'sec-fetch-mode': 'navigate' } })).status).toBe(302);
    expect((await gw.request('/static-files/app.js')).headers['www-authenticate']).toMatch(/^Basic /);
  });

  it('is not redirected for anything but a GET or HEAD of a page', async () => {
    expect((await gw.request('/', { method: 'POST', headers: { accept: HTML } })).status).toBe(401);
    expect((await gw.request('/static-files/app.js', { headers: { accept: '*/*' } })).status).toBe(401);
    expect((await gw.request('/-/whoami', { headers: { accept: HTML } })).status).toBe(401);
  });

  it('sees a self-contained, accessible sign-in page', async () => {
    const res = await gw.request('/-/login?next=%2Fexperiments%2F1', { headers: { accept: HTML } });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(res.text).toContain('<html lang="en">');
    expect(res.text).toMatch(/<form method="post" action="\/-\/login">/);
    expect(res.text).toContain('<label for="username">');
    expect(res.text).toContain('<label for="password">');
    expect(res.text).toMatch(/<input id="username" name="username" autocomplete="username"/);
    expect(res.text).toMatch(/<input id="password" name="password" type="password" autocomplete="current-password"/);
    expect(res.text).toContain('<input type="hidden" id="next" name="next" value="/experiments/1">');
    expect(res.text).not.toMatch(/(src|href)="(https?:)?\/\//); // nothing loaded from elsewhere
  });
});

describe('signing in', () => {
  it('sets an HttpOnly, Secure, SameSite=Lax session cookie for the whole site and returns to the page', async () => {
    const res = await postSignIn(gw, { username: 'alice', password: 'alice-password', next: '/experiments/1?tab=runs' });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/experiments/1?tab=runs');
    const cookie = sessionCookieOf(res)!;
    expect(cookie.attributes.get('httponly')).toBe(true);
    expect(cookie.attributes.get('secure')).toBe(true);
    expect(cookie.attributes.get('samesite')).toBe('Lax');
    expect(cookie.attributes.get('path')).toBe('/');
    expect(cookie.attributes.has('domain')).toBe(false);
    expect(Number(cookie.attributes.get('max-age'))).toBeGreaterThan(12 * 3600 - 5);
    expect(Number(cookie.attributes.get('max-age'))).toBeLessThanOrEqual(12 * 3600);

    const claims = decodeJwt(cookie.value);
    expect(claims).toMatchObject({ sub: 'alice', iss: 'mlgate', aud: 'mlgate-session' });
    expect(claims.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(claims.exp! - claims.iat!).toBe(12 * 3600);
    expect(claims.auth_time).toBe(claims.iat);
    expect(JSON.stringify(claims)).not.toContain('alice-password');
    await waitForLog(gw.logs, (line) => line.msg === 'signed in' && line.user === 'alice');
  });

  it('re-shows the form with one message and a 401 for a wrong password or an unknown user', async () => {
    for (const [username, password] of [['alice', 'wrong'], ['mallory', 'alice-password']] as const) {
      const res = await postSignIn(gw, { username, password, next: '/experiments/2' });
      expect(res.status).toBe(401);
      expect(res.headers['www-authenticate']).toBeUndefined();
      expect(sessionCookieOf(res)).toBeUndefined();
      expect(res.text).toContain('<p id="error" class="error" role="alert">Invalid user name or password.</p>');
      expect(res.text).toContain(`value="${username}" aria-invalid="true"`);
      expect(res.text).toContain('name="next" value="/experiments/2"');
      expect(res.text).not.toContain(password === 'wrong' ? 'value="wrong"' : 'value="alice-password"');
    }
    const empty = await postSignIn(gw, { username: 'alice', password: '' });
    expect(empty.status).toBe(400);
    expect(empty.text).toContain('Enter your user name and password.');
  });

  it('refuses a sign-in form posted from another site', async () => {
    const res = await postSignIn(gw, { username: 'alice', password: 'alice-password' }, { origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(sessionCookieOf(res)).toBeUndefined();
    const noOrigin = await postSignIn(gw, { username: 'alice', password: 'alice-password' }, {});
    expect(noOrigin.status).toBe(403);
    const viaReferer = await postSignIn(gw, { username: 'alice', password: 'alice-password' }, { referer: `${gw.url}/-/login?next=%2F` });
    expect(viaReferer.status).toBe(303);
  });

  it('never sends the browser to another site afterwards, whatever next says', async () => {
    const attempts = [
      '//evil.example/', '///evil.example', '/\\evil.example', '\\\\evil.example', '/\\/evil.example', 'https://evil.example/',
      'http:evil.example', 'javascript:alert(1)', 'evil.example', '/\t/evil.example', ' //evil.example', '/%0d%0aSet-Cookie:x=1', '',
    ];
    for (const next of attempts) {
      const res = await postSignIn(gw, { username: 'alice', password: 'alice-password', next });
      expect(res.status, next).toBe(303);
      expect(res.headers.location, next).toBe(next === '/%0d%0aSet-Cookie:x=1' ? next : '/');
      const page = await gw.request(`/-/login?next=${encodeURIComponent(next)}`);
      expect(page.text, next).toContain(`name="next" value="${next === '/%0d%0aSet-Cookie:x=1' ? next : '/'}"`);
    }
    // An absolute-form request target names another host: no redirect at all, let alone there.
    const raw = await rawRequest(gw, 'GET https://evil.example/x HTTP/1.1\r\nHost: evil.example\r\nAccept: text/html\r\nConnection: close\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1\.1 401 /);
    expect(raw).not.toMatch(/^location:/im);
  });
});

describe('form bodies sent chunked (Transfer-Encoding: chunked, no Content-Length)', () => {
  /** The body in several chunks: the client sends it chunked, as a browser may behind some proxies. */
  const chunked = (text: string | Buffer, parts = 3): Readable => {
    const bytes = Buffer.from(text);
    const size = Math.ceil(bytes.length / parts);
    return Readable.from(Array.from({ length: parts }, (_, i) => bytes.subarray(i * size, (i + 1) * size)));
  };
  const plainHeaders = (target: TestGateway) => ({ 'content-type': 'application/x-www-form-urlencoded', accept: HTML, origin: target.url });
  const formHeaders = (target: TestGateway, extra: Record<string, string> = {}) => ({ ...plainHeaders(target), 'transfer-encoding': 'chunked', ...extra });

  it('signs in with a chunked form, as with a Content-Length', async () => {
    const body = new URLSearchParams({ username: 'alice', password: 'alice-password', next: '/experiments/7' }).toString();
    const res = await gw.request('/-/login', { method: 'POST', headers: formHeaders(gw), body: chunked(body) });
    expect(res.status, res.text).toBe(303);
    expect(res.headers.location).toBe('/experiments/7');
    const cookie = sessionCookieOf(res);
    expect(decodeJwt(cookie!.value).sub).toBe('alice');
    expect((await uiCall(gw, `${COOKIE}=${cookie!.value}`)).status).toBe(200);

    const wrong = await gw.request('/-/login', { method: 'POST', headers: formHeaders(gw), body: chunked('username=alice&password=nope') });
    expect(wrong.status).toBe(401);
    expect(wrong.text).toContain('Invalid user name or password.');
  });

  it('signs in with a multipart form, chunked too', async () => {
    const boundary = 'mlgate-test-boundary';
    const part = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
    const body = `${part('username', 'bob')}${part('password', 'bob-password')}${part('next', '/models')}--${boundary}--\r\n`;
    const res = await gw.request('/-/login', { method: 'POST', headers: formHeaders(gw, { 'content-type': `multipart/form-data; boundary=${boundary}` }), body: chunked(body) });
    expect(res.status, res.text).toBe(303);
    expect(res.headers.location).toBe('/models');
    expect(decodeJwt(sessionCookieOf(res)!.value).sub).toBe('bob');
  });

  it('signs out with a chunked form', async () => {
    const cookie = await signIn(gw);
    const confirm = await gw.request('/-/logout', { headers: { cookie, accept: HTML } });
    const token = /name="token" value="([^"]+)"/.exec(confirm.text)![1]!;
    const res = await gw.request('/-/logout', { method: 'POST', headers: formHeaders(gw, { cookie }), body: chunked(new URLSearchParams({ token }).toString()) });
    expect(res.status, res.text).toBe(303);
    expect(res.headers.location).toBe('/-/login?signed-out');
    expect((await uiCall(gw, cookie)).status).toBe(401);
  });

  it('answers an oversized form with the 413 page, chunked or not, and logs no error', async () => {
    const errorsBefore = gw.logs.filter((line) => Number(line.level) >= 50).length;
    const big = `username=alice&password=alice-password&filler=${'x'.repeat(20 * 1024)}`;
    for (const [label, options] of [
      ['chunked', { headers: formHeaders(gw), body: chunked(big, 5) }],
      ['chunked, far larger', { headers: formHeaders(gw), body: chunked(Buffer.alloc(2 * 1024 * 1024, 'x'), 64) }],
      ['with Content-Length', { headers: plainHeaders(gw), body: big }],
    ] as const) {
      const res = await gw.request('/-/login', { method: 'POST', ...options });
      expect(res.status, `${label}: ${res.text.slice(0, 200)}`).toBe(413);
      expect(res.headers['content-type'], label).toMatch(/^text\/html/);
      expect(res.text, label).toContain('<title>Request too large');
      expect(res.text, label).toContain('The form sent was larger than a sign-in form can be.');
      expect(sessionCookieOf(res), label).toBeUndefined();
    }
    // The sign-out form has the same limit.
    const out = await gw.request('/-/logout', { method: 'POST', headers: formHeaders(gw), body: chunked(big) });
    expect(out.status).toBe(413);
    // A form just under the limit is still read.
    const justUnder = `username=alice&password=alice-password&next=%2F&filler=${'x'.repeat(16 * 1024 - 60)}`;
    expect(Buffer.byteLength(justUnder)).toBeLessThanOrEqual(16 * 1024);
    expect((await gw.request('/-/login', { method: 'POST', headers: formHeaders(gw), body: chunked(justUnder) })).status).toBe(303);
    expect(gw.logs.filter((line) => Number(line.level) >= 50).length).toBe(errorsBefore);
  });
});

describe('the session cookie', () => {
  let cookie: string;
  beforeAll(async () => {
    cookie = await signIn(gw);
  });

  it('authenticates the MLflow UI\'s /ajax-api/ calls, naming the user upstream, and stays with the gateway', async () => {
    const res = await uiCall(gw, `theme=dark; ${cookie}; _ga=GA1.1`);
    expect(res.status).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.url).toBe(SEARCH);
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers.cookie).toBe('theme=dark; _ga=GA1.1');
    expect(sessionCookieOf(res)).toBeUndefined(); // fresh: nothing to renew

    const page = await gw.request('/experiments/1', { headers: { accept: HTML, cookie } });
    expect(page.status).toBe(404); // the upstream's answer: the request got through
    expect(upstream.requests.at(-1)!.headers.cookie).toBeUndefined();

    const me = await gw.request('/-/whoami', { headers: { cookie } });
    expect(me.json()).toEqual({ user: 'alice', groups: [], method: 'session' });
    await waitForLog(gw.logs, (line) => line.msg === 'request' && line.path === SEARCH && line.auth === 'session' && line.user === 'alice');
  });

  it('opens a WebSocket only from a page of this site, and never travels through one', async () => {
    const foreign = await upgradeRefusal(gw, '/ws', { cookie, origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body).message).toContain('cross-site WebSocket refused');
    expect((await upgradeRefusal(gw, '/ws', { cookie })).status).toBe(403);
    const ws = await openWebSocket(gw, '/ws', { cookie: `theme=dark; ${cookie}`, origin: gw.url });
    ws.close();
    const seen = upstream.requests.filter((r) => r.url === '/ws').at(-1)!;
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(seen.headers.cookie).toBe('theme=dark');
  });

  it('needs a same-origin Origin (or Referer) on requests that change something', async () => {
    const before = upstream.requests.length;
    const evil = await uiCall(gw, cookie, { origin: 'https://evil.example' });
    expect(evil.status).toBe(403);
    expect(evil.json()).toEqual({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining('https://evil.example') });
    expect((await uiCall(gw, cookie, { origin: 'null' })).status).toBe(403);
    expect((await uiCall(gw, cookie, {})).status).toBe(403);
    expect((await uiCall(gw, cookie, { referer: 'https://evil.example/page' })).status).toBe(403);
    expect(upstream.requests.length).toBe(before);

    expect((await uiCall(gw, cookie, { origin: gw.url })).status).toBe(200);
    expect((await uiCall(gw, cookie, { referer: `${gw.url}/#/experiments/1` })).status).toBe(200);
    // Reading needs no Origin. A client that sends none (the MLflow client, curl) is not a browser's page.
    if (!upstream.store.experiments.has('1')) upstream.store.addExperiment('readable'); // experiment 1 exists: a missing one is a 403 for non-admins
    expect((await gw.request('/ajax-api/2.0/mlflow/experiments/get?experiment_id=1', { headers: { cookie } })).status).not.toBe(403);
    expect((await gw.request(SEARCH, { method: 'POST', auth: ['alice', 'alice-password'], body: '{"max_results":10}' })).status).toBe(200);
    // A browser's remembered Basic password on another site's request is refused like the cookie
    // (test/mlflow/cross-site-requests.test.ts shows it against the real MLflow).
    expect((await gw.request(SEARCH, { method: 'POST', auth: ['alice', 'alice-password'], headers: { origin: 'https://evil.example' }, body: '{}' })).status).toBe(403);
  });

  it('shows who is signed in, and how to sign out, on error pages and the gateway\'s pages', async () => {
    const refused = await gw.request('/some/form', { method: 'POST', headers: { cookie, accept: HTML, origin: 'https://evil.example' } });
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('Signed in as <strong>alice</strong>');
    expect(refused.text).toContain('<a href="/-/logout">Sign out</a>');

    const signInPage = await gw.request('/-/login', { headers: { cookie } });
    expect(signInPage.text).toContain('Signed in as <strong>alice</strong>');
    expect(signInPage.text).toContain('<a href="/-/logout">Sign out</a>');

    const anonymous = await gw.request('/', { method: 'POST', headers: { accept: HTML } });
    expect(anonymous.text).toContain('<a href="/-/login">Sign in</a>');
  });

  it('is refused when forged, altered or not a session cookie', async () => {
    const [header, payload, signature] = cookie.slice(COOKIE.length + 1).split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    const altered = Buffer.from(JSON.stringify({ ...claims, sub: 'bob' })).toString('base64url');
    for (const value of [`${header}.${altered}.${signature}`, 'not-a-jwt', `${header}.${payload}.`]) {
      const res = await uiCall(gw, `${COOKIE}=${value}`);
      expect(res.status, value).toBe(401);
      const cleared = sessionCookieOf(res)!;
      expect(cleared.value).toBe('');
      expect(cleared.attributes.get('max-age')).toBe('0');
    }
  });

  it('ends when the user is removed from the htpasswd file or their password changes', async () => {
    const bob = await signIn(gw, 'bob');
    const alice = await signIn(gw, 'alice');
    expect((await uiCall(gw, bob)).status).toBe(200);
    writeFileSync(gw.htpasswdPath, await htpasswdLines({ alice: 'alice-new-password' }));
    await eventually(async () => (await uiCall(gw, bob)).status === 401);
    await eventually(async () => (await uiCall(gw, alice)).status === 401);
    const fresh = await signIn(gw, 'alice', 'alice-new-password');
    expect((await uiCall(gw, fresh)).status).toBe(200);
    writeFileSync(gw.htpasswdPath, await htpasswdLines({ alice: 'alice-password', bob: 'bob-password' }));
    await eventually(async () => (await uiCall(gw, fresh)).status === 401);
    cookie = await signIn(gw);
  });
});

describe('signing out', () => {
  it('asks first, then clears the cookie and refuses it from then on', async () => {
    const cookie = await signIn(gw);
    const other = await signIn(gw); // another browser of the same user stays signed in
    const confirm = await gw.request('/-/logout', { headers: { cookie, accept: HTML } });
    expect(confirm.status).toBe(200);
    expect(confirm.text).toContain('Signed in as <strong>alice</strong>');
    expect(confirm.text).toMatch(/<form method="post" action="\/-\/logout">/);
    const token = /name="token" value="([^"]+)"/.exec(confirm.text)![1]!;

    // A page on another site cannot sign anyone out, nor can a form without this session's token.
    const forced = await gw.request('/-/logout', { ...form({ token }), headers: { cookie, origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' } });
    expect(forced.status).toBe(403);
    const stale = await gw.request('/-/logout', { ...form({ token: 'stale' }), headers: { cookie, origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' } });
    expect(stale.status).toBe(403);
    expect((await uiCall(gw, cookie)).status).toBe(200);

    const res = await gw.request('/-/logout', { ...form({ token }), headers: { cookie, origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/-/login?signed-out');
    const cleared = sessionCookieOf(res)!;
    expect(cleared.value).toBe('');
    expect(cleared.attributes.get('max-age')).toBe('0');
    expect(cleared.attributes.get('path')).toBe('/');

    expect((await uiCall(gw, cookie)).status).toBe(401);
    const page = await gw.request('/', { headers: { accept: HTML, cookie } });
    expect(page.status).toBe(302);
    expect(page.headers.location).toBe('/-/login?next=%2F');
    expect((await gw.request('/-/logout', { headers: { cookie } })).headers.location).toBe('/-/login');
    expect((await gw.request('/-/login?signed-out')).text).toContain('You have signed out.');
    expect((await uiCall(gw, other)).status).toBe(200);
    await waitForLog(gw.logs, (line) => line.msg === 'signed out' && line.user === 'alice');
  });
});

describe('sessions across restarts, sliding expiry and key rotation', () => {
  let dir: string;
  let htpasswd: string;
  const started: TestGateway[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mlgate-sessions-'));
    htpasswd = await htpasswdLines({ alice: 'alice-password' });
  });
  afterAll(async () => {
    await Promise.all(started.map((g) => g.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function start(session: Record<string, unknown> = {}): Promise<TestGateway> {
    const g = await startTestGateway({
      upstream: upstream.url,
      htpasswd,
      config: { session: { keyFile: join(dir, 'session.key'), revocationsFile: join(dir, 'session-revocations.json'), ...session } },
    });
    started.push(g);
    return g;
  }

  async function stop(g: TestGateway): Promise<void> {
    started.splice(started.indexOf(g), 1);
    await g.close();
  }

  it('keeps refusing a signed-out session after a restart on the same config directory, and no other', async () => {
    const first = await start();
    expect(statSync(join(dir, 'session.key')).mode & 0o777).toBe(0o600);
    const signedOut = await signIn(first);
    const kept = await signIn(first);
    const confirm = await first.request('/-/logout', { headers: { cookie: signedOut } });
    const token = /name="token" value="([^"]+)"/.exec(confirm.text)![1]!;
    const res = await first.request('/-/logout', { ...form({ token }), headers: { cookie: signedOut, origin: first.url, 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.status).toBe(303);

    const file = join(dir, 'session-revocations.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const { revoked } = JSON.parse(readFileSync(file, 'utf8')) as { revoked: Record<string, number> };
    expect(Object.keys(revoked)).toEqual([decodeJwt(signedOut.slice(COOKIE.length + 1)).jti]);
    await stop(first);

    const second = await start();
    expect((await uiCall(second, signedOut)).status).toBe(401);
    expect((await uiCall(second, kept)).status).toBe(200);
    await stop(second);
  });

  it('shares sign-outs between gateways using the same directory', async () => {
    const a = await start();
    const b = await start();
    const cookie = await signIn(a);
    expect((await uiCall(b, cookie)).status).toBe(200);
    const confirm = await a.request('/-/logout', { headers: { cookie } });
    const token = /name="token" value="([^"]+)"/.exec(confirm.text)![1]!;
    await a.request('/-/logout', { ...form({ token }), headers: { cookie, origin: a.url, 'content-type': 'application/x-www-form-urlencoded' } });
    await eventually(async () => (await uiCall(b, cookie)).status === 401);
    await stop(a);
    await stop(b);
  });

  it('renews the cookie while it is used, never past the absolute limit', async () => {
    const g = await start({ idleTimeout: '3s', absoluteTimeout: '5s' });
    const first = await signIn(g);
    const claims0 = decodeJwt(first.slice(COOKIE.length + 1));
    expect(claims0.exp! - claims0.iat!).toBe(3);

    await sleepUntil(claims0.iat! + 1);
    const used = await uiCall(g, first);
    expect(used.status).toBe(200);
    const renewed = sessionCookieOf(used)!;
    expect(renewed.attributes.get('httponly')).toBe(true);
    const claims1 = decodeJwt(renewed.value);
    expect(claims1.jti).toBe(claims0.jti);
    expect(claims1.auth_time).toBe(claims0.auth_time);
    expect(claims1.exp!).toBeGreaterThan(claims0.exp!);
    const second = `${COOKIE}=${renewed.value}`;

    await sleepUntil(claims0.exp!);
    expect((await uiCall(g, first)).status).toBe(401); // the old cookie expired on time
    const again = await uiCall(g, second);
    expect(again.status).toBe(200);
    const claims2 = decodeJwt(sessionCookieOf(again)!.value);
    expect(claims2.exp).toBe(claims0.auth_time as number + 5); // capped at sign-in + absoluteTimeout

    await sleepUntil(claims0.auth_time as number + 5);
    expect((await uiCall(g, `${COOKIE}=${sessionCookieOf(again)!.value}`)).status).toBe(401);
    await stop(g);
  });

  it('signs everyone out when the key file is replaced or deleted', async () => {
    const g = await start();
    const cookie = await signIn(g);
    expect((await uiCall(g, cookie)).status).toBe(200);
    writeFileSync(join(dir, 'session.key'), 'a-brand-new-session-key-of-enough-length-0123456789\n', { mode: 0o600 });
    await eventually(async () => (await uiCall(g, cookie)).status === 401);
    const after = await signIn(g);
    expect((await uiCall(g, after)).status).toBe(200);
    rmSync(join(dir, 'session.key'));
    await eventually(async () => (await uiCall(g, after)).status === 401);
    expect(readFileSync(join(dir, 'session.key'), 'utf8').trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await waitForLog(g.logs, (line) => String(line.msg).startsWith('session key changed'));
    await stop(g);
  });

  it('signs everyone out when session.secret changes', async () => {
    const secretA = 'secret-a-0123456789-0123456789-0123456789';
    const a = await start({ secret: secretA });
    const cookie = await signIn(a);
    await stop(a);
    const b = await start({ secret: 'secret-b-0123456789-0123456789-0123456789' });
    expect((await uiCall(b, cookie)).status).toBe(401);
    await stop(b);
    const again = await start({ secret: secretA });
    expect((await uiCall(again, cookie)).status).toBe(200);
    await stop(again);
  });
});

describe('password guessing on the sign-in form', () => {
  it('refuses a locked-out user without checking the password', async () => {
    const g = await startTestGateway({ upstream: upstream.url, config: { lockout: { maxUserFailures: 3 } } });
    try {
      for (let i = 0; i < 3; i++) expect((await postSignIn(g, { username: 'alice', password: `guess-${i}` })).status).toBe(401);
      const hashed = g.gateway.passwordChecker.verifications;
      const locked = await postSignIn(g, { username: 'alice', password: 'guess-4' });
      expect(locked.status).toBe(401);
      expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
      expect(locked.text).toContain('role="alert">Too many failed sign-ins');
      expect(g.gateway.passwordChecker.verifications).toBe(hashed);
    } finally {
      await g.close();
    }
  });
});

describe('with session.enabled: false', () => {
  it('keeps the browser\'s password prompt and has no sign-in page', async () => {
    const g = await startTestGateway({ upstream: upstream.url, config: { session: { enabled: false } } });
    try {
      const page = await g.request('/', { headers: { accept: HTML } });
      expect(page.status).toBe(401);
      expect(page.headers['www-authenticate']).toMatch(/^Basic /);
      expect((await g.request('/-/login')).status).toBe(404);
      expect(readdirOrEmpty(g.dir)).not.toContain('session.key');
    } finally {
      await g.close();
    }
  });
});

/** One request written by hand over TLS; resolves with the whole response. */
function rawRequest(target: TestGateway, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port: target.port, ca: target.ca, servername: 'localhost' }, () => socket.end(text));
    let response = '';
    socket.on('data', (chunk: Buffer) => { response += chunk.toString('utf8'); });
    socket.on('end', () => resolve(response));
    socket.on('error', reject);
  });
}

function readdirOrEmpty(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}
