// Tokens without an admin: a signed-in user makes, lists and revokes their own API tokens through
// /-/api/tokens and the /-/tokens page, on a real gateway in front of an MLflow-shaped server, and
// uses them as MLFLOW_TRACKING_TOKEN. The watch is slowed to 10 minutes: a new token working and a
// revoked one failing right away come from the gateway re-reading the file itself, not the watch.
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { issueToken } from '../src/auth/api-tokens.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnCli } from './helpers/cli.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import type { TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { signIn } from './helpers/sign-in.ts';

const API = '/-/api/tokens';
const HTML = 'text/html,application/xhtml+xml';
const JWT_SECRET = 'a-shared-secret-of-at-least-32-characters!';
const DAY = 86_400_000;

let upstream: MlflowUpstream;
let gw: TestGateway;
const cookies: Record<string, string> = {};

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  gw = await startTestGateway({
    upstream: upstream.url,
    users: Object.fromEntries(['admin', 'alice', 'bob', 'carol'].map((user) => [user, `${user}-password`])),
    config: {
      watchInterval: '10m',
      tokens: { maxPerUser: 3 },
      jwt: { secret: JWT_SECRET, issuer: 'https://idp.example.com', audience: ['mlflow'] },
    },
  });
  for (const user of ['admin', 'alice', 'bob', 'carol']) cookies[user] = await signIn(gw, user, `${user}-password`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/** A call as the browser's page script makes it: the session cookie, from this site. */
function asSignedIn(user: string, method: string, path: string, body?: unknown): Promise<TestResponse> {
  return gw.request(path, {
    method,
    headers: { cookie: cookies[user]!, origin: gw.url, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

function createExperiment(secret: string, name: string): Promise<TestResponse> {
  return gw.request('/api/2.0/mlflow/experiments/create', {
    method: 'POST', headers: { ...bearer(secret), 'content-type': 'application/json' }, body: JSON.stringify({ name }),
  });
}

interface Made { token: string; id: string; name: string; user: string; expires: string | null; groups: string[]; external: boolean }

async function make(user: string, body: Record<string, unknown>): Promise<Made> {
  const res = await asSignedIn(user, 'POST', API, body);
  expect(res.status, res.text).toBe(201);
  expect(res.headers['cache-control']).toBe('no-store');
  return res.json<Made>();
}

function form(user: string, fields: Record<string, string>, origin = gw.url): Promise<TestResponse> {
  return gw.request('/-/tokens', {
    method: 'POST',
    headers: { cookie: cookies[user]!, origin, accept: HTML, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

function idToken(claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer('https://idp.example.com').setAudience('mlflow')
    .setExpirationTime('10m').sign(new TextEncoder().encode(JWT_SECRET));
}

describe('a token made through /-/api/tokens', () => {
  it('is shown once, works at once as MLFLOW_TRACKING_TOKEN, is listed without its secret, and fails at once when revoked', async () => {
    const made = await make('alice', { name: 'ci-nightly', expires: '30d' });
    expect(made.token).toMatch(/^mlg_[0-9A-Za-z]{49}$/);
    expect(made).toMatchObject({ user: 'alice', name: 'ci-nightly', groups: [], external: false });
    expect(Math.abs(Date.parse(made.expires!) - (Date.now() + 30 * DAY))).toBeLessThan(60_000);

    const res = await createExperiment(made.token, 'from-ci');
    expect(res.status, res.text).toBe(200);
    const seen = upstream.requests.at(-1)!;
    expect(seen.headers['x-forwarded-user']).toBe('alice');
    expect(JSON.parse(seen.body)).toEqual({ name: 'from-ci', tags: [{ key: 'mlgate.owner', value: 'alice' }] });
    const line = await waitForLog(gw.logs, (l) => l.msg === 'request' && l.path === '/api/2.0/mlflow/experiments/create' && l.token === made.id);
    expect(line).toMatchObject({ user: 'alice', auth: 'bearer', status: 200 });

    const list = await asSignedIn('alice', 'GET', API);
    expect(list.status).toBe(200);
    const listed = list.json<{ tokens: Array<Record<string, unknown>> }>().tokens;
    expect(listed.find((token) => token.id === made.id)).toMatchObject({ name: 'ci-nightly', user: 'alice', expired: false, last_used: expect.stringMatching(/^\d{4}-/) });
    expect(list.text).not.toContain(made.token);
    expect(list.text).not.toContain('sha256');
    // The file holds the hash only, with the owner's groups and source.
    const file = readFileSync(`${gw.dir}/tokens.json`, 'utf8');
    expect(file).not.toContain(made.token);
    expect(JSON.parse(file).tokens.find((token: { id: string }) => token.id === made.id)).toMatchObject({ user: 'alice', groups: [], external: false });

    const revoked = await asSignedIn('alice', 'DELETE', `${API}/${made.id}`);
    expect(revoked.status, revoked.text).toBe(200);
    const refused = await createExperiment(made.token, 'after-revoke');
    expect(refused.status).toBe(401);
    expect(refused.json().message).toContain('unknown or revoked token');
    expect((await asSignedIn('alice', 'GET', API)).json<{ tokens: Array<{ id: string }> }>().tokens.map((token) => token.id)).not.toContain(made.id);
  });

  it('defaults to 90 days for an htpasswd user, and takes "never" or an ISO time', async () => {
    const plain = await make('bob', { name: 'default' });
    expect(Math.abs(Date.parse(plain.expires!) - (Date.now() + 90 * DAY))).toBeLessThan(60_000);
    const never = await make('bob', { name: 'forever', expires: 'never' });
    expect(never.expires).toBeNull();
    const at = new Date(Date.now() + 3 * DAY).toISOString();
    const dated = await make('bob', { name: 'dated', expires: at });
    expect(dated.expires).toBe(at);
    for (const made of [plain, never, dated]) expect((await asSignedIn('bob', 'DELETE', `${API}/${made.id}`)).status).toBe(200);
    // With a password, as curl or a script sends it (no browser, no cookie).
    const withPassword = await gw.request(API, { method: 'POST', auth: ['bob', 'bob-password'], headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'curl' }) });
    expect(withPassword.status, withPassword.text).toBe(201);
    const curl = withPassword.json<Made>();
    expect((await createExperiment(curl.token, 'from-curl')).status).toBe(200);
    expect((await asSignedIn('bob', 'DELETE', `${API}/${curl.id}`)).status).toBe(200);
  });

  it('refuses bad input with a message, and nothing is written', async () => {
    const before = readFileSync(`${gw.dir}/tokens.json`, 'utf8');
    const cases: Array<[unknown, RegExp]> = [
      [{}, /"name" is required/],
      [{ name: 'x'.repeat(101) }, /longer than 100 characters/],
      [{ name: 'a\u0007b' }, /control character/],
      [{ name: 'ok', expires: 'soon' }, /"expires" must be a duration/],
      [{ name: 'ok', expires: '0s' }, /at least a minute/],
      [{ name: 'ok', expires: '2001-01-01T00:00:00Z' }, /in the past/],
      [{ name: 'ok', expires: 30 }, /"expires" must be a duration/],
      [[1, 2], /JSON object/],
    ];
    for (const [body, message] of cases) {
      const res = await asSignedIn('alice', 'POST', API, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE', message: expect.stringMatching(message) });
    }
    const notJson = await gw.request(API, { method: 'POST', headers: { cookie: cookies.alice!, origin: gw.url, 'content-type': 'text/plain' }, body: '{"name":"x"}' });
    expect(notJson.status).toBe(400);
    expect(notJson.json().message).toContain('application/json');
    expect(readFileSync(`${gw.dir}/tokens.json`, 'utf8')).toBe(before);
  });

  it('holds at most tokens.maxPerUser live tokens per user (409); expired ones do not count, and are dropped when one is made', async () => {
    const file = `${gw.dir}/tokens.json`;
    const { record: expired } = await issueToken(file, { user: 'carol', name: 'long-gone', ttlMs: 1 });
    expect(readFileSync(file, 'utf8')).toContain(expired.id);
    const made = [];
    for (let i = 0; i < 3; i++) made.push(await make('carol', { name: `job-${i}` }));
    expect(readFileSync(file, 'utf8')).not.toContain(expired.id);
    const refused = await asSignedIn('carol', 'POST', API, { name: 'one-too-many' });
    expect(refused.status).toBe(409);
    expect(refused.json()).toMatchObject({ error_code: 'RESOURCE_LIMIT_EXCEEDED', message: expect.stringContaining('user carol has 3 tokens that have not expired') });
    // Other users are not held back by carol's tokens.
    const other = await make('bob', { name: 'unaffected' });
    expect((await asSignedIn('bob', 'DELETE', `${API}/${other.id}`)).status).toBe(200);
    expect((await asSignedIn('carol', 'DELETE', `${API}/${made[0]!.id}`)).status).toBe(200);
    const room = await make('carol', { name: 'after-revoke' });
    for (const token of [...made.slice(1), room]) expect((await asSignedIn('carol', 'DELETE', `${API}/${token.id}`)).status).toBe(200);
  });

  it('cannot be made with an API token', async () => {
    const made = await make('alice', { name: 'parent' });
    const res = await gw.request(API, { method: 'POST', headers: { ...bearer(made.token), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'child' }) });
    expect(res.status).toBe(403);
    expect(res.json().message).toContain('an API token cannot make more tokens');
    // Listing and revoking itself work.
    expect((await gw.request(API, { headers: bearer(made.token) })).status).toBe(200);
    expect((await gw.request(`${API}/${made.id}`, { method: 'DELETE', headers: bearer(made.token) })).status).toBe(200);
  });

  it('refuses cross-site calls with the session cookie', async () => {
    const res = await gw.request(API, {
      method: 'POST', headers: { cookie: cookies.alice!, origin: 'https://evil.example', 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }),
    });
    expect(res.status).toBe(403);
    const page = await form('alice', { action: 'create', name: 'x', expires: '30d' }, 'https://evil.example');
    expect(page.status).toBe(403);
    // A remembered password, or a token a page on another site got hold of: refused alike.
    const basic = await gw.request(API, {
      method: 'POST', auth: ['alice', 'alice-password'], headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }),
    });
    expect(basic.status).toBe(403);
    const made = await make('alice', { name: 'victim' });
    const byToken = await gw.request(`${API}/${made.id}`, { method: 'DELETE', headers: { ...bearer(made.token), origin: 'https://evil.example' } });
    expect(byToken.status).toBe(403);
    expect((await createExperiment(made.token, 'still-works')).status).toBe(200);
    expect((await asSignedIn('alice', 'DELETE', `${API}/${made.id}`)).status).toBe(200);
  });
});

describe('the same file as mlgate token', () => {
  it('lists a token made here with "mlgate token list", and one made by "mlgate token issue" here, where its owner revokes it', async () => {
    const made = await make('alice', { name: 'seen-by-cli' });
    const cli = (...args: string[]) => runCli(['token', ...args, '--config', `${gw.dir}/mlgate.yaml`], { cwd: gw.dir });
    const list = cli('list', '--user', 'alice');
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${made.id}\\s+alice\\s+seen-by-cli\\s`, 'm'));

    const issued = cli('issue', 'alice', '--name', 'from-cli');
    expect(issued.status, issued.stderr).toBe(0);
    const secret = issued.stdout.trim();
    expect((await createExperiment(secret, 'cli-token')).status).toBe(200);
    const listed = (await asSignedIn('alice', 'GET', API)).json<{ tokens: Array<{ id: string; name: string; groups: string[]; external: boolean }> }>().tokens;
    const fromCli = listed.find((token) => token.name === 'from-cli');
    expect(fromCli).toMatchObject({ groups: [], external: false });
    expect((await asSignedIn('alice', 'DELETE', `${API}/${fromCli!.id}`)).status).toBe(200);
    expect((await createExperiment(secret, 'cli-token-revoked')).status).toBe(401);
    expect((await asSignedIn('alice', 'DELETE', `${API}/${made.id}`)).status).toBe(200);
  });

  it('keeps every edit when the API and several `mlgate token issue` processes write at once (tokens.json.lock)', async () => {
    const config = `${gw.dir}/mlgate.yaml`;
    const clis = Array.from({ length: 4 }, (_, i) => spawnCli(['token', 'issue', 'carol', '--name', `parallel-cli-${i}`, '--config', config], { cwd: gw.dir }));
    const api = await Promise.all(['admin', 'alice', 'bob'].flatMap((user) => [1, 2].map((i) => make(user, { name: `parallel-${user}-${i}` }))));
    expect(await Promise.all(clis.map((cli) => cli.exited))).toEqual([0, 0, 0, 0]);
    const { tokens } = JSON.parse(readFileSync(`${gw.dir}/tokens.json`, 'utf8')) as { tokens: Array<{ id: string; name: string }> };
    const names = tokens.map((token) => token.name).filter((name) => name.startsWith('parallel-'));
    expect(names.sort()).toEqual([...api.map((token) => token.name), ...[0, 1, 2, 3].map((i) => `parallel-cli-${i}`)].sort());
    for (const token of api) expect((await createExperiment(token.token, `parallel-${token.id}`)).status).toBe(200);
    for (const token of tokens.filter((t) => t.name.startsWith('parallel-'))) expect((await asSignedIn('admin', 'DELETE', `${API}/${token.id}`)).status).toBe(200);
  });
});

describe("someone else's token", () => {
  it('is answered like a made-up id: same status, same words', async () => {
    const alices = await make('alice', { name: 'mine' });
    const taken = await asSignedIn('bob', 'DELETE', `${API}/${alices.id}`);
    const madeUp = await asSignedIn('bob', 'DELETE', `${API}/0123456789ab`);
    expect(taken.status).toBe(404);
    expect(madeUp.status).toBe(404);
    const words = (res: TestResponse, id: string) => res.json<{ message: string }>().message.replace(id, 'ID');
    expect(words(taken, alices.id)).toBe(words(madeUp, '0123456789ab'));
    expect(taken.json().error_code).toBe(madeUp.json().error_code);
    // Still works: bob did not revoke it.
    expect((await createExperiment(alices.token, 'still-alice')).status).toBe(200);
    // Nor can bob list it.
    expect((await asSignedIn('bob', 'GET', `${API}?user=alice`)).status).toBe(403);
    expect((await asSignedIn('bob', 'GET', `${API}?all=1`)).status).toBe(403);
    expect((await asSignedIn('bob', 'GET', API)).text).not.toContain(alices.id);
    await asSignedIn('alice', 'DELETE', `${API}/${alices.id}`);
  });

  it('an admin lists and revokes anyone\'s', async () => {
    const alices = await make('alice', { name: 'for-admin' });
    const bobs = await make('bob', { name: 'bobs' });
    const all = (await asSignedIn('admin', 'GET', `${API}?all=1`)).json<{ tokens: Array<{ id: string; user: string }> }>().tokens;
    expect(all.map((token) => token.id)).toEqual(expect.arrayContaining([alices.id, bobs.id]));
    const onlyAlice = (await asSignedIn('admin', 'GET', `${API}?user=alice`)).json<{ tokens: Array<{ user: string }> }>().tokens;
    expect(onlyAlice.length).toBeGreaterThan(0);
    expect(new Set(onlyAlice.map((token) => token.user))).toEqual(new Set(['alice']));
    const revoked = await asSignedIn('admin', 'DELETE', `${API}/${alices.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.json().revoked).toMatchObject({ id: alices.id, user: 'alice' });
    expect((await createExperiment(alices.token, 'gone')).status).toBe(401);
    expect((await asSignedIn('admin', 'DELETE', `${API}/${bobs.id}`)).status).toBe(200);
  });
});

describe('the /-/tokens page', () => {
  it('sends a browser without a session to sign in', async () => {
    const res = await gw.request('/-/tokens', { headers: { accept: HTML } });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/-/login?next=%2F-%2Ftokens');
  });

  it('makes a token shown once with the export line, lists it, and revokes it (post/redirect/get)', async () => {
    const empty = await gw.request('/-/tokens', { headers: { cookie: cookies.bob!, accept: HTML } });
    expect(empty.status).toBe(200);
    expect(empty.headers['content-security-policy']).toContain("default-src 'none'");
    expect(empty.text).toContain('Make a token');

    const created = await form('bob', { action: 'create', name: 'page-job', expires: '7d' });
    expect(created.status, created.text).toBe(201);
    const secret = /export MLFLOW_TRACKING_TOKEN=(mlg_[0-9A-Za-z]{49})/.exec(created.text)?.[1];
    expect(secret, created.text).toBeDefined();
    expect(created.text).toContain('shown only this once');

    const used = await createExperiment(secret!, 'from-page');
    expect(used.status).toBe(200);
    expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe('bob');

    const listed = await gw.request('/-/tokens', { headers: { cookie: cookies.bob!, accept: HTML } });
    expect(listed.text).toContain('page-job');
    expect(listed.text).not.toContain(secret!);
    const id = /name="id" value="([0-9a-f]{12})"/.exec(listed.text)?.[1];
    expect(id).toBeDefined();

    const revoked = await form('bob', { action: 'revoke', id: id! });
    expect(revoked.status).toBe(303);
    expect(revoked.headers.location).toBe('/-/tokens?done=revoked');
    expect((await createExperiment(secret!, 'after')).status).toBe(401);
    const after = await gw.request(revoked.headers.location!, { headers: { cookie: cookies.bob!, accept: HTML } });
    expect(after.text).toContain('The token was revoked');
    expect(after.text).not.toContain('page-job');
  });

  it('shows a refusal on the page and keeps the name typed', async () => {
    const res = await form('alice', { action: 'create', name: 'typed-name', expires: 'whenever' });
    expect(res.status).toBe(400);
    expect(res.text).toContain('no token was made');
    expect(res.text).toContain('value="typed-name"');
  });
});

describe("an identity provider's user (JWT)", () => {
  it('gets a token carrying their groups and source, at most tokens.externalMaxTtl long, working without an htpasswd line', async () => {
    const jwt = await idToken({ sub: 'erin', groups: ['ml-team', 'admins'] });
    const call = (body: unknown) => gw.request(API, { method: 'POST', headers: { ...bearer(jwt), 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const never = await call({ name: 'x', expires: 'never' });
    expect(never.status).toBe(400);
    expect(never.json().message).toContain('tokens.externalMaxTtl');
    const tooLong = await call({ name: 'x', expires: '31d' });
    expect(tooLong.status).toBe(400);

    const res = await call({ name: 'erin-ci' });
    expect(res.status, res.text).toBe(201);
    const made = res.json<Made>();
    expect(made).toMatchObject({ user: 'erin', groups: ['ml-team', 'admins'], external: true });
    expect(Math.abs(Date.parse(made.expires!) - (Date.now() + 30 * DAY))).toBeLessThan(60_000);

    const whoami = await gw.request('/-/whoami', { headers: bearer(made.token) });
    expect(whoami.json()).toEqual({ user: 'erin', groups: ['ml-team', 'admins'], method: 'bearer' });
    expect((await createExperiment(made.token, 'erin-exp')).status).toBe(200);
    expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe('erin');

    // Their page offers no "never" and nothing past the limit, and says why.
    const page = await gw.request('/-/tokens', { headers: { ...bearer(jwt), accept: HTML } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('erin-ci');
    expect(page.text).toContain('<option value="30d" selected>30d (the longest allowed)</option>');
    expect(page.text).not.toContain('value="never"');
    expect(page.text).toContain('mlgate cannot learn that the provider removed you');
  });
});
