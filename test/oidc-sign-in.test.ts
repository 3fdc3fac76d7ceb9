// Signing in with an OpenID Connect provider (docs/oidc.md): a real provider (oidc-provider over
// HTTPS with a test CA the gateway trusts through oidc.providers[].ca), the whole flow at the HTTP
// level and in headless Chromium, the provider's groups in an access-control decision, sign-out at
// both ends, the collision rule, and every failure refused with a readable page (never a 500).
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { chromiumProblem, launchChromium } from './helpers/chromium.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import type { TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import type { StoredExperiment, StoredRun } from './helpers/mlflow-tracking-store.ts';
import { IDP_CLIENT_ID, IDP_CLIENT_SECRET, signInAtIdp, startTestIdp, type TestIdp } from './helpers/oidc-provider.ts';

const COOKIE = '__Host-mlgate-session';
const FLOW_COOKIE = '__Secure-mlgate-oidc';
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const SECRET_VARIABLE = 'MLGATE_TEST_OIDC_CLIENT_SECRET';

let upstream: MlflowUpstream;
let idp: TestIdp;
let gw: TestGateway;
let teamA: StoredExperiment;
let runA: StoredRun;
/** Every gateway's callback and signed-out page, registered at the provider exactly. */
const gateways: TestGateway[] = [];

function providerConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { oidc: { providers: [{ name: 'test', label: 'Test IdP', issuer: idp.issuer, clientId: IDP_CLIENT_ID, clientSecretEnv: SECRET_VARIABLE, ca: idp.caFile, scopes: ['openid', 'profile', 'email', 'groups'], ...extra }] } };
}

function registerAtIdp(extraOrigins: string[] = []): void {
  const origins = [...gateways.map((g) => g.url), ...extraOrigins];
  idp.configureClient({ redirectUris: origins.map((o) => `${o}/-/oidc/callback`), postLogoutRedirectUris: origins.map((o) => `${o}/-/login?signed-out`) });
}

async function startGatewayWithIdp(extra: Record<string, unknown> = {}, users: Record<string, string> = { admin: 'admin-password', carol: 'carol-password' }): Promise<TestGateway> {
  const started = await startTestGateway({
    upstream: upstream.url,
    users,
    policy: { rules: [{ experiment: 'team-a/*', groups: ['team-a'], level: 'EDIT' }], default: 'READ' },
    config: providerConfig(extra),
  });
  gateways.push(started);
  registerAtIdp();
  return started;
}

beforeAll(async () => {
  process.env[SECRET_VARIABLE] = IDP_CLIENT_SECRET;
  upstream = await startMlflowUpstream();
  teamA = upstream.store.addExperiment('team-a/churn');
  runA = upstream.store.addRun(teamA.experiment_id, 'alice');
  idp = await startTestIdp();
  gw = await startGatewayWithIdp();
});
afterAll(async () => {
  for (const started of gateways) await started.close();
  await idp?.close();
  await upstream?.close();
  delete process.env[SECRET_VARIABLE];
});

function setCookies(res: TestResponse): Map<string, string> {
  const found = new Map<string, string>();
  for (const line of res.headers['set-cookie'] ?? []) {
    const [pair] = line.split(';');
    const at = pair!.indexOf('=');
    found.set(pair!.slice(0, at), line);
  }
  return found;
}

function cookieValueIn(line: string | undefined): string {
  return line!.split(';')[0]!.split('=').slice(1).join('=');
}

interface Started {
  authorizationUrl: string;
  /** The flow cookie as the browser sends it back ("name=value"). */
  flowCookie: string;
}

async function start(target: TestGateway, next = '/#/experiments/1'): Promise<Started> {
  const res = await target.request(`/-/oidc/start?provider=test&next=${encodeURIComponent(next)}`, { headers: { accept: HTML } });
  expect(res.status, res.text).toBe(302);
  const flow = setCookies(res).get(FLOW_COOKIE);
  expect(flow).toMatch(/; Max-Age=600; Path=\/-\/oidc\/; HttpOnly; SameSite=Lax; Secure$/);
  return { authorizationUrl: res.headers.location!, flowCookie: `${FLOW_COOKIE}=${cookieValueIn(flow)}` };
}

async function callback(target: TestGateway, location: string, flowCookie: string | undefined): Promise<TestResponse> {
  const url = new URL(location);
  expect(url.origin).toBe(target.url);
  expect(url.pathname).toBe('/-/oidc/callback');
  return target.request(url.pathname + url.search, { headers: { accept: HTML, ...(flowCookie ? { cookie: flowCookie } : {}) } });
}

/** The whole flow for a user: the gateway's start, the provider's sign-in, the gateway's callback. */
async function signIn(target: TestGateway, user: string, next?: string): Promise<TestResponse> {
  const started = await start(target, next);
  const back = await signInAtIdp(idp, started.authorizationUrl, user);
  return callback(target, back, started.flowCookie);
}

function sessionCookie(res: TestResponse): string {
  expect(res.status, res.text).toBe(303);
  const line = setCookies(res).get(COOKIE);
  expect(line).toBeDefined();
  return `${COOKIE}=${cookieValueIn(line)}`;
}

function refusedPage(res: TestResponse, status: number, text: string): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toMatch(/^text\/html/);
  expect(res.text).toContain(text);
  expect(setCookies(res).has(COOKIE)).toBe(false);
  expect(setCookies(res).get(FLOW_COOKIE)).toMatch(/Max-Age=0/);
}

describe('signing in with the provider', () => {
  it('offers the provider on the sign-in page, beside the password form', async () => {
    const res = await gw.request('/-/login?next=%2Fexperiments', { headers: { accept: HTML } });
    expect(res.status).toBe(200);
    expect(res.text).toContain('href="/-/oidc/start?provider=test&#38;next=%2Fexperiments">Sign in with Test IdP</a>');
    expect(res.text).toContain('name="password"');
  });

  it('goes to the provider with PKCE, state and nonce, and to the exact redirect URI', async () => {
    const { authorizationUrl } = await start(gw);
    const url = new URL(authorizationUrl);
    expect(url.origin).toBe(idp.issuer);
    const params = Object.fromEntries(url.searchParams);
    expect(params).toMatchObject({ client_id: IDP_CLIENT_ID, response_type: 'code', redirect_uri: `${gw.url}/-/oidc/callback`, code_challenge_method: 'S256', scope: 'openid profile email groups' });
    expect(params.state!.length).toBeGreaterThanOrEqual(40);
    expect(params.nonce!.length).toBeGreaterThanOrEqual(40);
    expect(params.code_challenge!.length).toBe(43);
  });

  it('comes back with the session cookie, the provider\'s groups, and to the page the user asked for', async () => {
    const res = await signIn(gw, 'alice', '/#/experiments/1');
    expect(res.headers.location).toBe('/#/experiments/1');
    const cookie = sessionCookie(res);
    expect(setCookies(res).get(COOKIE)).toMatch(/; Path=\/; HttpOnly; SameSite=Lax; Secure$/);
    const whoami = await gw.request('/-/whoami', { headers: { cookie } });
    expect(whoami.json()).toEqual({ user: 'alice', groups: ['team-a'], method: 'session' });
    const line = gw.logs.find((l) => l.msg === 'signed in' && l.provider === 'test' && l.user === 'alice');
    expect(line).toMatchObject({ groups: ['team-a'], subject: 'alice' });
  });

  it('applies the provider\'s groups to access control: team-a has EDIT on team-a/*, bob only READ', async () => {
    const alice = sessionCookie(await signIn(gw, 'alice'));
    const bob = sessionCookie(await signIn(gw, 'bob'));
    const logMetric = (cookie: string) => gw.request('/ajax-api/2.0/mlflow/runs/log-metric', {
      method: 'POST',
      headers: { cookie, origin: gw.url, 'content-type': 'application/json' },
      body: JSON.stringify({ run_id: runA.info.run_id, key: 'loss', value: 0.5, timestamp: 1 }),
    });
    const allowed = await logMetric(alice);
    expect(allowed.status, allowed.text).toBe(200);
    const forwarded = upstream.requests.filter((r) => r.url.endsWith('/runs/log-metric')).at(-1)!;
    expect(forwarded.headers['x-forwarded-user']).toBe('alice');
    const denied = await logMetric(bob);
    expect(denied.status, denied.text).toBe(403);
    expect(denied.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: `user bob has READ on experiment ${teamA.experiment_id}; runs/log-metric needs EDIT` });
  });

  it('never sends the browser elsewhere afterwards: a next that is not a path on this site becomes /', async () => {
    for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example']) {
      const res = await signIn(gw, 'alice', next);
      sessionCookie(res);
      expect(res.headers.location).toBe('/');
    }
  });

  it('signs out of mlgate and sends the browser to the provider\'s sign-out (RP-initiated logout)', async () => {
    const cookie = sessionCookie(await signIn(gw, 'alice'));
    const confirm = await gw.request('/-/logout', { headers: { cookie, accept: HTML } });
    const token = /name="token" value="([^"]+)"/.exec(confirm.text)![1]!;
    const out = await gw.request('/-/logout', {
      method: 'POST',
      headers: { cookie, origin: gw.url, 'content-type': 'application/x-www-form-urlencoded', accept: HTML },
      body: new URLSearchParams({ token }).toString(),
    });
    expect(out.status).toBe(303);
    const location = new URL(out.headers.location!);
    expect(location.origin + location.pathname).toBe(`${idp.issuer}/session/end`);
    expect(Object.fromEntries(location.searchParams)).toEqual({ client_id: IDP_CLIENT_ID, post_logout_redirect_uri: `${gw.url}/-/login?signed-out` });
    expect(setCookies(out).get(COOKIE)).toMatch(/Max-Age=0/);
    const after = await gw.request('/-/whoami', { headers: { cookie } });
    expect(after.status).toBe(401);
  });
});

describe('refusals: a readable page and a log line, never a session', () => {
  it('refuses a callback without the sign-in\'s state cookie (another browser, or expired)', async () => {
    const started = await start(gw);
    const back = await signInAtIdp(idp, started.authorizationUrl, 'alice');
    refusedPage(await callback(gw, back, undefined), 400, 'This sign-in was not started in this browser');
  });

  it('refuses a state that is not the one this browser\'s sign-in sent', async () => {
    const started = await start(gw);
    const back = new URL(await signInAtIdp(idp, started.authorizationUrl, 'alice'));
    back.searchParams.set('state', 'forged-state-value-forged-state-value-1234');
    refusedPage(await callback(gw, back.href, started.flowCookie), 401, 'failed a check (state, issuer or token)');
    expect(gw.logs.some((l) => l.msg === 'provider sign-in refused' && String(l.detail).includes('state'))).toBe(true);
  });

  it('refuses a code used twice (the provider refuses it; the page says to start again)', async () => {
    const started = await start(gw);
    const back = await signInAtIdp(idp, started.authorizationUrl, 'alice');
    sessionCookie(await callback(gw, back, started.flowCookie));
    refusedPage(await callback(gw, back, started.flowCookie), 401, 'refused the sign-in (invalid_grant');
  });

  it('shows the provider\'s own error (the user cancelled) as a page', async () => {
    const started = await start(gw);
    const state = new URL(started.authorizationUrl).searchParams.get('state')!;
    const res = await callback(gw, `${gw.url}/-/oidc/callback?error=access_denied&error_description=End-User+aborted+interaction&state=${state}&iss=${encodeURIComponent(idp.issuer)}`, started.flowCookie);
    refusedPage(res, 401, 'did not sign you in (access_denied: End-User aborted interaction)');
  });

  const misbehaviours = [
    ['wrong-nonce', 'does not belong to this sign-in (nonce mismatch)'],
    ['wrong-audience', 'meant for another application (aud)'],
    ['expired-id-token', 'The ID token has expired'],
    ['wrong-issuer', 'The ID token is from another issuer (iss)'],
    ['unknown-kid', 'signed with a key the provider does not publish (unknown kid)'],
  ] as const;
  for (const [misbehaviour, message] of misbehaviours) {
    it(`refuses an ID token with ${misbehaviour}`, async () => {
      idp.misbehave = misbehaviour;
      try {
        refusedPage(await signIn(gw, 'alice'), 401, message);
      } finally {
        idp.misbehave = 'none';
      }
    });
  }

  it('fetches the provider\'s keys again for an unknown kid at most once a minute', async () => {
    const before = idp.jwksFetches;
    idp.misbehave = 'unknown-kid';
    try {
      for (let i = 0; i < 3; i++) refusedPage(await signIn(gw, 'alice'), 401, 'unknown kid');
    } finally {
      idp.misbehave = 'none';
    }
    expect(idp.jwksFetches - before).toBeLessThanOrEqual(1);
  });

  it('does not trust the provider without its CA: the start is a 502 page and the TLS error is logged', async () => {
    const untrusted = await startGatewayWithIdp({ ca: gw.config.tls.cert ?? join(gw.dir, 'certs', 'mlgate.crt') });
    const res = await untrusted.request('/-/oidc/start?provider=test', { headers: { accept: HTML } });
    expect(res.status).toBe(502);
    expect(res.text).toContain('Test IdP cannot be reached right now');
    const line = untrusted.logs.find((l) => l.msg?.toString().startsWith('cannot start a sign-in'));
    expect(JSON.stringify(line)).toMatch(/certificate/i);
  });

  it('refuses users outside allowedDomains or requiredGroups with a page that says which rule', async () => {
    const restricted = await startGatewayWithIdp({ allowedDomains: ['example.com'] });
    sessionCookie(await signIn(restricted, 'alice'));
    refusedPage(await signIn(restricted, 'bob'), 403, 'only verified e-mail addresses at example.com are allowed');
    const grouped = await startGatewayWithIdp({ requiredGroups: ['team-a', 'team-b'] });
    sessionCookie(await signIn(grouped, 'alice'));
    refusedPage(await signIn(grouped, 'bob'), 403, 'it needs membership of team-a or team-b');
  });

  it('answers an unknown provider with a 404 page', async () => {
    const res = await gw.request('/-/oidc/start?provider=nope', { headers: { accept: HTML } });
    expect(res.status).toBe(404);
    expect(res.text).toContain('no identity provider by that name');
  });
});

describe('the same name from two sources', () => {
  it('refuses a provider name that is also an htpasswd user, unless a namePrefix or sameUsersAsHtpasswd says who they are', async () => {
    const clash = await startGatewayWithIdp({}, { alice: 'alice-password' });
    const refused = await signIn(clash, 'alice');
    refusedPage(refused, 403, 'is also a user of this gateway&#39;s password file');
    expect(clash.logs.some((l) => l.msg === 'provider sign-in refused' && l.detail === 'name collides with an htpasswd user')).toBe(true);

    const prefixed = await startGatewayWithIdp({ namePrefix: 'idp:' }, { alice: 'alice-password' });
    const cookie = sessionCookie(await signIn(prefixed, 'alice'));
    expect((await prefixed.request('/-/whoami', { headers: { cookie } })).json()).toMatchObject({ user: 'idp:alice', groups: ['team-a'] });

    const same = await startGatewayWithIdp({ sameUsersAsHtpasswd: true }, { alice: 'alice-password' });
    const sameCookie = sessionCookie(await signIn(same, 'alice'));
    expect((await same.request('/-/whoami', { headers: { cookie: sameCookie } })).json()).toMatchObject({ user: 'alice' });
  });
});

describe('the provider\'s JWTs as Bearer tokens (bearer: true): the same user as a sign-in', () => {
  /** A real ID token from the provider, for the gateway's client: the flow's code exchanged with the flow's PKCE verifier. */
  async function idTokenFor(target: TestGateway, user: string): Promise<string> {
    const started = await start(target);
    const back = new URL(await signInAtIdp(idp, started.authorizationUrl, user));
    const { verifier } = decodeJwt(started.flowCookie.split('=')[1]!) as { verifier: string };
    const res = await idp.request(`${idp.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: `${target.url}/-/oidc/callback`, code_verifier: verifier, client_id: IDP_CLIENT_ID, client_secret: IDP_CLIENT_SECRET }).toString(),
    });
    expect(res.status, res.text).toBe(200);
    return res.json<{ id_token: string }>().id_token;
  }

  it('names the same user with the same groups, through the same prefix and collision rule', async () => {
    const bearerGw = await startGatewayWithIdp({ bearer: true });
    const token = await idTokenFor(bearerGw, 'alice');
    const asBearer = await bearerGw.request('/-/whoami', { headers: { authorization: `Bearer ${token}` } });
    const asSession = await bearerGw.request('/-/whoami', { headers: { cookie: sessionCookie(await signIn(bearerGw, 'alice')) } });
    expect(asBearer.json()).toEqual({ user: 'alice', groups: ['team-a'], method: 'bearer' });
    expect(asSession.json()).toEqual({ user: 'alice', groups: ['team-a'], method: 'session' });

    const clash = await startGatewayWithIdp({ bearer: true }, { alice: 'alice-password' });
    const refused = await clash.request('/-/whoami', { headers: { authorization: `Bearer ${await idTokenFor(clash, 'bob')}` } });
    expect(refused.json()).toMatchObject({ user: 'bob', method: 'bearer' });
    const collides = await clash.request('/api/2.0/mlflow/experiments/search', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{}' });
    expect(collides.status).toBe(401);
    expect(collides.headers['www-authenticate']).toContain('error_description="name collides with an htpasswd user"');
  });

  it('records runs under the same user whether signed in or sending the token', async () => {
    const bearerGw = await startGatewayWithIdp({ bearer: true });
    const token = await idTokenFor(bearerGw, 'alice');
    const cookie = sessionCookie(await signIn(bearerGw, 'alice'));
    const create = (headers: Record<string, string>, prefix: string) => bearerGw.request(`${prefix}/2.0/mlflow/runs/create`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ experiment_id: teamA.experiment_id, user_id: 'jovyan', tags: [{ key: 'mlflow.user', value: 'jovyan' }] }),
    });
    for (const res of [await create({ cookie, origin: bearerGw.url }, '/ajax-api'), await create({ authorization: `Bearer ${token}` }, '/api')]) {
      expect(res.status, res.text).toBe(200);
      const run = res.json<{ run: { info: { user_id: string }; data: { tags: { key: string; value: string }[] } } }>().run;
      expect(run.info.user_id).toBe('alice');
      expect(run.data.tags).toContainEqual({ key: 'mlflow.user', value: 'alice' });
    }
  });

  it('refuses a token for another audience than bearerAudience', async () => {
    const bearerGw = await startGatewayWithIdp({ bearer: true, bearerAudience: ['some-api'] });
    const token = await idTokenFor(bearerGw, 'alice');
    const res = await bearerGw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{}' });
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('error_description="the token is meant for another audience (aud)"');
  });
});

describe('the session of a provider\'s user', () => {
  it('is renewed while used, keeping the provider and its groups', async () => {
    const renewing = await startTestGateway({
      upstream: upstream.url, users: { carol: 'carol-password' }, config: { ...providerConfig(), session: { idleTimeout: '10s' } },
    });
    gateways.push(renewing);
    registerAtIdp();
    const cookie = sessionCookie(await signIn(renewing, 'alice'));
    await new Promise((resolve) => setTimeout(resolve, 1100)); // a tenth of the idle window
    const used = await renewing.request('/-/whoami', { headers: { cookie } });
    expect(used.json()).toEqual({ user: 'alice', groups: ['team-a'], method: 'session' });
    const renewed = setCookies(used).get(COOKIE);
    expect(renewed).toBeDefined();
    const claims = decodeJwt(cookieValueIn(renewed));
    expect(claims).toMatchObject({ sub: 'alice', src: 'test', grp: ['team-a'] });
    expect(claims.exp! - claims.iat!).toBe(10);
    expect((await renewing.request('/-/whoami', { headers: { cookie: `${COOKIE}=${cookieValueIn(renewed)}` } })).json()).toMatchObject({ user: 'alice', groups: ['team-a'] });
  });
});

describe('password sign-in turned off (auth.passwordSignIn: false)', () => {
  it('shows only the provider, and refuses the password form', async () => {
    const off = await startTestGateway({ upstream: upstream.url, users: { carol: 'carol-password' }, config: { ...providerConfig(), auth: { passwordSignIn: false } } });
    gateways.push(off);
    registerAtIdp();
    const page = await off.request('/-/login', { headers: { accept: HTML } });
    expect(page.text).toContain('Sign in with Test IdP');
    expect(page.text).not.toContain('name="password"');
    const posted = await off.request('/-/login', {
      method: 'POST',
      headers: { origin: off.url, 'content-type': 'application/x-www-form-urlencoded', accept: HTML },
      body: new URLSearchParams({ username: 'carol', password: 'carol-password', next: '/' }).toString(),
    });
    expect(posted.status).toBe(403);
    expect(setCookies(posted).has(COOKIE)).toBe(false);
    // HTTP Basic for the API keeps working: only the browser form is off.
    expect((await off.request('/-/whoami', { auth: ['carol', 'carol-password'] })).status).toBe(200);
  });
});

describe('configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-oidc-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  function problemsOf(yaml: string): string[] {
    writeFileSync(join(dir, 'mlgate.yaml'), yaml);
    try {
      loadConfig({ configPath: join(dir, 'mlgate.yaml'), env: {}, cwd: dir });
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems;
    }
  }

  it('refuses two providers that could give the same name, an issuer configured twice, and a provider-less passwordSignIn: false', () => {
    expect(problemsOf([
      'auth: { passwordSignIn: false }',
      'jwt: { publicKey: https://a.example.com/jwks, issuer: https://a.example.com }',
      'oidc:',
      '  providers:',
      '    - { name: a, issuer: https://a.example.com, clientId: mlgate }',
      '    - { name: b, issuer: https://b.example.com/, clientId: mlgate, clockTolerance: 10m }',
      '    - { name: b, issuer: https://b.example.com, clientId: mlgate, namePrefix: "b", scopes: [profile] }',
      '',
    ].join('\n'))).toEqual([
      'mlgate.yaml:2: jwt.issuer: is oidc.providers[0].issuer too; configure the issuer once: remove jwt.* and set bearer: true on that provider',
      'mlgate.yaml:6: oidc.providers[1].namePrefix: repeats oidc.providers[0].namePrefix; give each provider its own namePrefix (at most one may have none), so no user name can come from two providers',
      'mlgate.yaml:6: oidc.providers[1].clockTolerance: must be at most 5m',
      'mlgate.yaml:7: oidc.providers[2].name: repeats oidc.providers[1].name; each provider needs its own name',
      'mlgate.yaml:7: oidc.providers[2].issuer: repeats oidc.providers[1].issuer; configure each issuer once',
      'mlgate.yaml:7: oidc.providers[2].namePrefix: must be empty, or letters, digits, ._- ending in ":" (e.g. "okta:"), so prefixed names can never be htpasswd names, got "b"',
      'mlgate.yaml:7: oidc.providers[2].scopes: must include openid',
    ]);
    expect(problemsOf('auth: { passwordSignIn: false }\n')).toEqual(['mlgate.yaml:1: auth.passwordSignIn: is false but no oidc.providers are configured: nobody could sign in with a browser']);
    expect(problemsOf('session: { enabled: false }\noidc: { providers: [{ name: a, issuer: "http://idp.example.com", clientId: x }] }\n')).toEqual([
      'mlgate.yaml:2: oidc.providers: needs session.enabled: true (signing in with a provider ends in a browser session)',
      'mlgate.yaml:2: oidc.providers[0].issuer: must be the issuer URL the provider publishes (https://, http:// only for localhost), e.g. https://idp.example.com/realms/ml, got "http://idp.example.com"',
    ]);
  });
});

function spkiPin(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

const PROBLEM = chromiumProblem();
describe.skipIf(PROBLEM !== undefined)(`in headless Chromium${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`, () => {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    // Only the gateway's and the provider's certificates are trusted (pinned), as a browser that knows both would.
    browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spkiPin(gw.ca!)},${spkiPin(idp.leafPem)}`]);
    context = await browser.newContext();
    page = await context.newPage();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('goes from the MLflow UI through the provider\'s sign-in and back, signed in with the provider\'s groups', async () => {
    await page.goto(`${gw.url}/#/experiments/1`);
    expect(page.url()).toBe(`${gw.url}/-/login?next=%2F#/experiments/1`);
    await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
    await page.waitForURL((url) => url.origin === idp.issuer);
    await page.locator('input[name=login]').fill('alice');
    await page.locator('input[name=password]').fill('any');
    await page.locator('button[type=submit]').click();
    await page.waitForURL(`${gw.url}/#/experiments/1`);
    await expect(page.locator('#user').textContent()).resolves.toBe('alice');

    const cookies = await context.cookies(gw.url);
    expect(cookies.find((c) => c.name === COOKIE)).toMatchObject({ path: '/', httpOnly: true, secure: true, sameSite: 'Lax' });
    expect(cookies.find((c) => c.name === FLOW_COOKIE)).toBeUndefined();
    const whoami = await page.evaluate(() => fetch('/-/whoami').then((res) => res.json()));
    expect(whoami).toEqual({ user: 'alice', groups: ['team-a'], method: 'session' });
  });

  it('signs out of both: mlgate\'s session ends, then the provider\'s, and the next sign-in asks for the user again', async () => {
    const signOutsBefore = idp.signOuts;
    await page.goto(`${gw.url}/-/logout`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL((url) => url.origin === idp.issuer);
    await page.getByRole('button', { name: 'Yes, sign me out' }).click();
    await page.waitForURL(`${gw.url}/-/login?signed-out`);
    await expect(page.getByRole('status').textContent()).resolves.toBe('You have signed out.');
    expect(idp.signOuts).toBe(signOutsBefore + 1);
    expect((await context.cookies(gw.url)).find((c) => c.name === COOKIE)).toBeUndefined();

    // The provider forgot alice too: signing in again shows its sign-in page, not an instant return.
    await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
    await page.waitForURL((url) => url.origin === idp.issuer);
    await expect(page.locator('input[name=login]').count()).resolves.toBe(1);
  });
});

