// Keeping identity-provider users' groups current (docs/oidc.md, "Keeping groups current"): a real
// provider (oidc-provider, refresh tokens on, rotated at each use) and a gateway refreshing every
// second. A user the provider drops (out of requiredGroups, or disabled) loses their sessions and
// tokens; changed groups reach their tokens and the policy's decisions; a provider that is down ends
// nothing.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import type { TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import type { StoredRun } from './helpers/mlflow-tracking-store.ts';
import { IDP_CLIENT_ID, IDP_CLIENT_SECRET, signInAtIdp, startTestIdp, type TestIdp } from './helpers/oidc-provider.ts';

const COOKIE = '__Host-mlgate-session';
const FLOW_COOKIE = '__Secure-mlgate-oidc';
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';
const SECRET_VARIABLE = 'MLGATE_TEST_OIDC_REFRESH_SECRET';

let upstream: MlflowUpstream;
let idp: TestIdp;
let gw: TestGateway;
let dir: string;
let refreshFile: string;
let runA: StoredRun;

function person(name: string, groups: string[]): Record<string, unknown> {
  return { preferred_username: name, name, email: `${name}@example.com`, email_verified: true, groups };
}

beforeAll(async () => {
  process.env[SECRET_VARIABLE] = IDP_CLIENT_SECRET;
  dir = mkdtempSync(join(tmpdir(), 'mlgate-refresh-'));
  refreshFile = join(dir, 'oidc-refresh-tokens.json');
  upstream = await startMlflowUpstream();
  runA = upstream.store.addRun(upstream.store.addExperiment('team-a/churn').experiment_id, 'someone');
  idp = await startTestIdp();
  idp.refreshTokens = true;
  gw = await startTestGateway({
    upstream: upstream.url,
    users: { admin: 'admin-password' },
    policy: { rules: [{ experiment: 'team-a/*', groups: ['team-a'], level: 'EDIT' }], default: 'READ' },
    config: {
      oidc: {
        refreshTokensFile: refreshFile,
        providers: [{
          name: 'test', issuer: idp.issuer, clientId: IDP_CLIENT_ID, clientSecretEnv: SECRET_VARIABLE, ca: idp.caFile,
          scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'], requiredGroups: ['ml-users'], refreshInterval: '1s',
        }],
      },
    },
  });
  idp.configureClient({ redirectUris: [`${gw.url}/-/oidc/callback`], postLogoutRedirectUris: [`${gw.url}/-/login?signed-out`] });
});
afterAll(async () => {
  await gw?.close();
  await idp?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
  delete process.env[SECRET_VARIABLE];
});

function cookieLine(res: TestResponse, name: string): string | undefined {
  return (res.headers['set-cookie'] ?? []).find((line) => line.startsWith(`${name}=`));
}

/** The whole browser flow at the HTTP level; the session cookie as a Cookie header. */
async function signIn(user: string): Promise<string> {
  const started = await gw.request('/-/oidc/start?provider=test&next=/', { headers: { accept: HTML } });
  expect(started.status, started.text).toBe(302);
  const flow = cookieLine(started, FLOW_COOKIE)!.split(';')[0]!;
  const back = new URL(await signInAtIdp(idp, started.headers.location!, user));
  const res = await gw.request(back.pathname + back.search, { headers: { accept: HTML, cookie: flow } });
  expect(res.status, res.text).toBe(303);
  return cookieLine(res, COOKIE)!.split(';')[0]!;
}

async function makeToken(cookie: string, name: string): Promise<{ token: string; id: string; groups: string[] }> {
  const res = await gw.request('/-/api/tokens', { method: 'POST', headers: { cookie, origin: gw.url, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
  expect(res.status, res.text).toBe(201);
  return res.json();
}

function whoami(headers: Record<string, string>): Promise<TestResponse> {
  return gw.request('/-/whoami', { headers });
}

function logMetric(headers: Record<string, string>): Promise<TestResponse> {
  return gw.request('/api/2.0/mlflow/runs/log-metric', {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ run_id: runA.info.run_id, key: 'loss', value: 0.5, timestamp: 1 }),
  });
}

function tokenRecords(): Array<{ id: string; user: string; groups?: string[]; source?: string }> {
  return JSON.parse(readFileSync(gw.config.tokens.file, 'utf8')).tokens;
}

function storedEntries(): Array<Record<string, unknown>> {
  return JSON.parse(readFileSync(refreshFile, 'utf8')).entries;
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits for this many more refresh grants at the provider (whatever their outcome), and a moment for mlgate to act on them. */
async function refreshes(count: number): Promise<void> {
  const target = idp.refreshes + count;
  await until(() => idp.refreshes >= target);
  await new Promise((resolve) => setTimeout(resolve, 300));
}

describe('a provider that gives refresh tokens', () => {
  it('has the refresh token kept encrypted, one entry per user, the newest winning', async () => {
    idp.users.fay = person('fay', ['ml-users']);
    await signIn('fay');
    await signIn('fay');
    const entries = storedEntries().filter((entry) => entry.user === 'fay');
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ provider: 'test', subject: 'fay', groups: ['ml-users'], token: expect.stringMatching(/^v1\.[\w-]+\.[\w-]+\.[\w-]+$/) });
    expect((entries[0]!.sessions as unknown[]).length).toBe(2);
    expect(readFileSync(refreshFile, 'utf8')).not.toMatch(/"refresh_token"/);
    // Refreshed at the interval, rotated each time: the stored token changes and keeps working.
    const before = entries[0]!.token;
    await refreshes(2);
    const after = storedEntries().find((entry) => entry.user === 'fay')!;
    expect(after.token).not.toBe(before);
    expect(after.refreshed).toEqual(expect.stringMatching(/^\d{4}-/));
  });

  it('ends the sessions and removes the tokens of a user taken out of the required group', async () => {
    idp.users.alice = person('alice', ['team-a', 'ml-users']);
    const cookie = await signIn('alice');
    const made = await makeToken(cookie, 'alice-ci');
    expect(made.groups).toEqual(['team-a', 'ml-users']);
    expect((await whoami({ authorization: `Bearer ${made.token}` })).status).toBe(200);
    expect((await whoami({ cookie })).status).toBe(200);

    idp.users.alice = person('alice', ['team-a']);
    await waitForLog(gw.logs, (line) => line.msg?.toString().startsWith('identity provider dropped a user') === true && line.user === 'alice', 8000);
    expect((await whoami({ cookie })).status).toBe(401);
    const browser = await gw.request('/', { headers: { cookie, accept: HTML } });
    expect(browser.status).toBe(302);
    expect((await whoami({ authorization: `Bearer ${made.token}` })).status).toBe(401);
    expect(tokenRecords().some((record) => record.id === made.id)).toBe(false);
    expect(storedEntries().some((entry) => entry.user === 'alice')).toBe(false);
    expect(gw.logs.find((line) => line.user === 'alice' && line.msg?.toString().startsWith('identity provider dropped a user'))).toMatchObject({ level: 40, detail: 'not in any of requiredGroups', sessions: 1, tokens: 1 });
  });

  it('does the same for a user the provider disabled (invalid_grant)', async () => {
    idp.users.gus = person('gus', ['ml-users']);
    const cookie = await signIn('gus');
    const made = await makeToken(cookie, 'gus-ci');
    delete idp.users.gus;
    await waitForLog(gw.logs, (line) => line.user === 'gus' && line.msg?.toString().startsWith('identity provider dropped a user') === true, 8000);
    expect(gw.logs.find((line) => line.user === 'gus' && String(line.msg).startsWith('identity provider dropped'))!.detail).toMatch(/^invalid_grant/);
    expect((await whoami({ cookie })).status).toBe(401);
    expect((await whoami({ authorization: `Bearer ${made.token}` })).status).toBe(401);
  });

  it("writes changed groups onto the user's tokens, so the policy decides with the new ones", async () => {
    idp.users.erin = person('erin', ['ml-users']);
    const cookie = await signIn('erin');
    const made = await makeToken(cookie, 'erin-ci');
    const bearer = { authorization: `Bearer ${made.token}` };
    expect((await logMetric(bearer)).status).toBe(403); // READ only: not in team-a

    // Gaining a group: the token gets it; the session keeps working (with its sign-in groups).
    idp.users.erin = person('erin', ['ml-users', 'team-a']);
    await until(() => tokenRecords().find((record) => record.id === made.id)?.groups?.includes('team-a') === true);
    await until(async () => (await logMetric(bearer)).status === 200);
    expect((await whoami(bearer)).json()).toMatchObject({ user: 'erin', groups: ['ml-users', 'team-a'] });
    const session = await whoami({ cookie });
    expect(session.status).toBe(200);
    expect(session.json()).toMatchObject({ groups: ['ml-users'] });

    // Losing one (still allowed in): the token loses it, and the session carrying old groups ends.
    const fresh = await signIn('erin');
    expect((await whoami({ cookie: fresh })).json()).toMatchObject({ groups: ['ml-users', 'team-a'] });
    idp.users.erin = person('erin', ['ml-users']);
    await until(() => tokenRecords().find((record) => record.id === made.id)?.groups?.includes('team-a') === false);
    await until(async () => (await logMetric(bearer)).status === 403);
    await until(async () => (await whoami({ cookie: fresh })).status === 401);
    expect((await whoami(bearer)).status).toBe(200);
    // The log line travels through the gateway's stdout pipe and may arrive after the answers.
    const changed = (line: (typeof gw.logs)[number]) => line.user === 'erin' && line.msg === "identity provider changed a user's groups" && (line.lost as string[]).length > 0;
    await waitForLog(gw.logs, changed, 8000);
    expect(gw.logs.find(changed)).toMatchObject({ lost: ['team-a'], gained: [] });
    // The entry is written once the tokens and sessions are done with, a moment after the answers change.
    await until(() => (storedEntries().find((entry) => entry.user === 'erin')?.groups as string[] | undefined)?.join() === 'ml-users');
  });

  it('ends nothing while the provider is down, and carries on when it is back', async () => {
    idp.users.hal = person('hal', ['ml-users']);
    const cookie = await signIn('hal');
    const made = await makeToken(cookie, 'hal-ci');
    idp.unavailable = true;
    const warned = gw.logs.length;
    try {
      await until(() => gw.logs.slice(warned).filter((line) => String(line.msg).startsWith("cannot refresh users' groups")).length >= 2);
      // Meanwhile the user loses the group: unknown to mlgate until the provider answers.
      idp.users.hal = person('hal', []);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect((await whoami({ cookie })).status).toBe(200);
      expect((await whoami({ authorization: `Bearer ${made.token}` })).status).toBe(200);
      expect(storedEntries().some((entry) => entry.user === 'hal')).toBe(true);
      expect(gw.logs.slice(warned).some((line) => line.user === 'hal' && String(line.msg).startsWith('identity provider dropped'))).toBe(false);
    } finally {
      idp.unavailable = false;
    }
    await waitForLog(gw.logs, (line) => line.user === 'hal' && String(line.msg).startsWith('identity provider dropped a user'), 8000);
    expect((await whoami({ cookie })).status).toBe(401);
    expect((await whoami({ authorization: `Bearer ${made.token}` })).status).toBe(401);
  });
});

describe('the configuration', () => {
  it('has a refresh interval of 15m by default, at least 1s, and the refresh tokens file under config/', () => {
    const load = (provider: Record<string, unknown>) => {
      const path = join(dir, 'check.yaml');
      writeFileSync(path, JSON.stringify({ upstream: 'http://127.0.0.1:5000', oidc: { providers: [{ name: 'corp', issuer: 'https://idp.example.com', clientId: 'mlflow', ...provider }] } }));
      try {
        return loadConfig({ configPath: path, env: {}, cwd: dir }).config;
      } catch (err) {
        if (err instanceof ConfigError) return err.problems.join('\n');
        throw err;
      }
    };
    const config = load({});
    expect(typeof config === 'string' ? config : config.oidc.providers[0]!.refreshInterval).toBe(15 * 60_000);
    expect(typeof config === 'string' ? config : config.oidc.refreshTokensFile).toBe('config/oidc-refresh-tokens.json');
    expect(load({ refreshInterval: '500ms' })).toContain('refreshInterval: must be at least 1s');
  });
});
