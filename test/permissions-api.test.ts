// Grant management by MANAGE holders through a real gateway: the JSON API under /-/api/permissions
// and the /-/permissions page, writing mlgate's grant tags into an MLflow-shaped server.
//
// The callers' levels come from a small stand-in for the decision engine (PERMISSION_LEVEL below),
// injected through startGateway's `permissionLevel`; the gateway will pass its real one there.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/auth/principal.ts';
import { grantsFromTags } from '../src/authz/grant-tags.ts';
import type { TaggedResource } from '../src/authz/mlflow-client.ts';
import { highestLevel, type PermissionLevel } from '../src/authz/levels.ts';
import type { CarrierKind } from '../src/authz/route-rule.ts';
import { spawnCli } from './helpers/cli.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import type { TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const GROUPS: Record<string, string[]> = { carol: ['viewers'], dave: ['team-a'] };

/** admin: MANAGE; the owner: MANAGE; a user grant; the highest group grant; else READ. */
function PERMISSION_LEVEL(principal: Principal, _kind: CarrierKind, info: TaggedResource): PermissionLevel {
  if (principal.user === 'admin') return 'MANAGE';
  const grants = grantsFromTags(info.tags);
  if (grants.owner === principal.user) return 'MANAGE';
  const own = grants.users.get(principal.user);
  if (own) return own;
  const fromGroups = (GROUPS[principal.user] ?? []).flatMap((group) => grants.groups.get(group) ?? []);
  return fromGroups.length ? highestLevel(fromGroups) : 'READ';
}

const USERS = ['admin', 'alice', 'bob', 'carol', 'dave'];
const API = '/-/api/permissions';
const JSON_HEADERS = { 'content-type': 'application/json' };

let upstream: MlflowUpstream;
let gw: TestGateway;
let churn: string;
let secret: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream({ requireJsonContentType: true, defaultExperiment: true });
  churn = upstream.store.addExperiment('team-a/churn', [{ key: 'mlgate.owner', value: 'alice' }, { key: 'mlgate.grant.user.bob', value: 'EDIT' }]).experiment_id;
  secret = upstream.store.addExperiment('secret', [{ key: 'mlgate.owner', value: 'alice' }, { key: 'mlgate.grant.group.viewers', value: 'NO_PERMISSIONS' }]).experiment_id;
  upstream.store.addModel('churn-model', [{ key: 'mlgate.owner', value: 'alice' }]);
  upstream.store.addModel('other-model', [{ key: 'mlgate.owner', value: 'dave' }]);
  gw = await startTestGateway({
    upstream: upstream.url,
    users: Object.fromEntries(USERS.map((user) => [user, `${user}-password`])),
    permissionLevel: PERMISSION_LEVEL,
  });
});
afterAll(async () => {
  await gw?.close();
  await upstream.close();
});

const as = (user: string): [string, string] => [user, `${user}-password`];
const call = (user: string, method: string, path: string, body?: unknown, headers: Record<string, string> = JSON_HEADERS): Promise<TestResponse> =>
  gw.request(path, { method, auth: as(user), headers: body === undefined ? {} : headers, body: body === undefined ? undefined : JSON.stringify(body) });
const tagsOf = (id: string) => Object.fromEntries(upstream.store.experiments.get(id)!.tags.map((tag) => [tag.key, tag.value]));
const modelTags = (name: string) => upstream.store.models.get(name)!.tags;

describe('reading who has what', () => {
  it('needs credentials', async () => {
    for (const path of [`${API}/mine`, `${API}/experiments/${churn}`, '/-/permissions']) {
      const res = await gw.request(path);
      expect(res.status, path).toBe(401);
    }
  });

  it('answers the owner and every grant to a MANAGE holder, by id or by (percent-encoded) name', async () => {
    const expected = { kind: 'experiment', workspace: 'default', id: churn, name: 'team-a/churn', owner: 'alice', users: [{ name: 'bob', level: 'EDIT' }], groups: [] };
    const byId = await call('alice', 'GET', `${API}/experiments/${churn}`);
    expect(byId.status, byId.text).toBe(200);
    expect(byId.json()).toEqual(expected);
    expect((await call('alice', 'GET', `${API}/experiments/team-a%2Fchurn`)).json()).toEqual(expected);
    expect((await call('admin', 'GET', `${API}/experiments/team-a%2Fchurn`)).json()).toEqual(expected);
    const model = await call('alice', 'GET', `${API}/models/churn-model`);
    expect(model.json()).toEqual({ kind: 'registered-model', workspace: 'default', name: 'churn-model', owner: 'alice', users: [], groups: [] });
  });

  it('refuses those below MANAGE in MLflow\'s JSON, naming their level', async () => {
    const res = await call('bob', 'GET', `${API}/experiments/${churn}`);
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.json()).toEqual({ error_code: 'PERMISSION_DENIED', message: `user bob has EDIT on experiment ${churn} (team-a/churn); managing its permissions needs MANAGE` });
    expect((await call('bob', 'GET', `${API}/models/churn-model`)).json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining('user bob has READ on registered model churn-model') });
  });

  it('does not tell a user who cannot read a resource whether it exists', async () => {
    const hidden = await call('carol', 'GET', `${API}/experiments/secret`);
    const absent = await call('carol', 'GET', `${API}/experiments/no-such-thing`);
    expect(hidden.status).toBe(404);
    expect(absent.status).toBe(404);
    expect(hidden.json()).toEqual({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'experiment "secret" does not exist, or user carol cannot read it' });
    expect(absent.text.replace('no-such-thing', 'secret')).toBe(hidden.text);
    expect((await call('carol', 'GET', `${API}/models/nope`)).json()).toMatchObject({ error_code: 'RESOURCE_DOES_NOT_EXIST' });
  });

  it('/mine lists what the caller can manage, with the grants', async () => {
    const alice = (await call('alice', 'GET', `${API}/mine`)).json<{ experiments: { name: string }[]; registered_models: { name: string; owner: string }[]; truncated: boolean; user: string }>();
    expect(alice.user).toBe('alice');
    expect(alice.experiments.map((e) => e.name).sort()).toEqual(['secret', 'team-a/churn']);
    expect(alice.registered_models).toEqual([{ kind: 'registered-model', workspace: 'default', name: 'churn-model', owner: 'alice', users: [], groups: [] }]);
    expect(alice.truncated).toBe(false);
    const carol = (await call('carol', 'GET', `${API}/mine`)).json();
    expect(carol).toEqual({ user: 'carol', workspace: 'default', experiments: [], registered_models: [], truncated: false });
    const admin = (await call('admin', 'GET', `${API}/mine`)).json<{ experiments: { name: string }[]; registered_models: unknown[] }>();
    expect(admin.experiments.map((e) => e.name)).toEqual(expect.arrayContaining(['Default', 'secret', 'team-a/churn']));
    expect(admin.registered_models).toHaveLength(2);
  });
});

describe('granting and revoking through the API', () => {
  it('PUT sets a user grant (MANAGE holders, not only admins) and DELETE removes it', async () => {
    const put = await call('alice', 'PUT', `${API}/experiments/${churn}/grants/users/dave`, { level: 'MANAGE' });
    expect(put.status, put.text).toBe(200);
    expect(put.json()).toMatchObject({ users: [{ name: 'bob', level: 'EDIT' }, { name: 'dave', level: 'MANAGE' }] });
    expect(tagsOf(churn)['mlgate.grant.user.dave']).toBe('MANAGE');
    await waitForLog(gw.logs, (line) => line.msg === 'grant set' && line.user === 'alice' && line.grantee === 'user dave');

    // dave can now manage it too, and take bob's grant away.
    const del = await call('dave', 'DELETE', `${API}/experiments/team-a%2Fchurn/grants/users/bob`);
    expect(del.status, del.text).toBe(200);
    expect(del.json()).toMatchObject({ users: [{ name: 'dave', level: 'MANAGE' }] });
    expect(tagsOf(churn)['mlgate.grant.user.bob']).toBeUndefined();
    const again = await call('dave', 'DELETE', `${API}/experiments/${churn}/grants/users/bob`);
    expect(again.status).toBe(404);
    expect(again.json()).toEqual({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: `user bob has no grant on experiment ${churn} (team-a/churn); nothing was changed` });

    await call('alice', 'DELETE', `${API}/experiments/${churn}/grants/users/dave`);
    expect((await call('dave', 'GET', `${API}/experiments/${churn}`)).status).toBe(403);
  });

  it('reads a chunked body (no Content-Length) too', async () => {
    const res = await gw.request(`${API}/experiments/${churn}/grants/users/erin`, { method: 'PUT', auth: as('alice'), headers: JSON_HEADERS, body: Readable.from(['{"level":', '"EDIT"}']) });
    expect(res.status, res.text).toBe(200);
    expect(tagsOf(churn)['mlgate.grant.user.erin']).toBe('EDIT');
    expect((await call('alice', 'DELETE', `${API}/experiments/${churn}/grants/users/erin`)).status).toBe(200);
  });

  it('group grants, on experiments and models', async () => {
    const put = await call('alice', 'PUT', `${API}/models/churn-model/grants/groups/viewers`, { level: 'read' });
    expect(put.json()).toMatchObject({ groups: [{ name: 'viewers', level: 'READ' }] });
    expect(modelTags('churn-model')).toContainEqual({ key: 'mlgate.grant.group.viewers', value: 'READ' });
    expect((await call('alice', 'DELETE', `${API}/models/churn-model/grants/groups/viewers`)).status).toBe(200);
    expect(modelTags('churn-model')).toEqual([{ key: 'mlgate.owner', value: 'alice' }]);
  });

  it('refuses writes by those below MANAGE, and changes nothing', async () => {
    const res = await call('bob', 'PUT', `${API}/experiments/${churn}/grants/users/bob`, { level: 'MANAGE' });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error_code: 'PERMISSION_DENIED' });
    expect((await call('carol', 'DELETE', `${API}/experiments/secret/grants/groups/viewers`)).status).toBe(404);
    expect(tagsOf(secret)['mlgate.grant.group.viewers']).toBe('NO_PERMISSIONS');
  });

  it('refuses bad levels, names and bodies with INVALID_PARAMETER_VALUE', async () => {
    const cases: [string, unknown, Record<string, string>?][] = [
      [`${API}/experiments/${churn}/grants/users/eve`, { level: 'ADMIN' }],
      [`${API}/experiments/${churn}/grants/users/eve`, {}],
      [`${API}/experiments/${churn}/grants/users/eve`, { level: 'READ' }, { 'content-type': 'text/plain' }],
      [`${API}/experiments/${churn}/grants/users/eve%09smith`, { level: 'READ' }],
      [`${API}/experiments/${churn}/grants/users/%20eve`, { level: 'READ' }],
      [`${API}/experiments/${churn}/grants/users/${'e'.repeat(220)}%40example.com`, { level: 'READ' }],
    ];
    for (const [path, body, headers] of cases) {
      const res = await call('alice', 'PUT', path, body, headers);
      expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(res.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE' });
    }
    expect((await call('alice', 'PUT', `${API}/experiments/${churn}/grants/things/eve`, { level: 'READ' })).json()).toMatchObject({ error_code: 'ENDPOINT_NOT_FOUND' });
    const huge = await gw.request(`${API}/experiments/${churn}/grants/users/eve`, { method: 'PUT', auth: as('alice'), headers: JSON_HEADERS, body: Readable.from([`{"level":"READ","pad":"${'x'.repeat(20_000)}"}`]) });
    expect(huge.status).toBe(400);
    expect(huge.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE', message: expect.stringContaining('larger than') });
    expect(Object.keys(tagsOf(churn)).some((key) => key.includes('eve'))).toBe(false);
  });
});

describe('workspaces (the fake MLflow has none: the real ones are in test/mlflow/workspace-grants.test.ts)', () => {
  // What MLflow was asked about resources (not the gateway's probe of its version and workspaces).
  const mlflowCalls = () => upstream.requests.filter((r) => !/^\/(?:version|api\/3\.0\/mlflow\/server-info)(?:\?|$)/.test(r.url)).length;

  it('the default workspace, named or not, answers as without a name', async () => {
    const plain = await call('alice', 'GET', `${API}/experiments/${churn}`);
    for (const [query, headers] of [['?workspace=default', {}], ['', { 'x-mlflow-workspace': 'default' }], ['?workspace=%20', { 'x-mlflow-workspace': ' default ' }]] as const) {
      const res = await gw.request(`${API}/experiments/${churn}${query}`, { auth: as('alice'), headers });
      expect(res.status, `${query} ${JSON.stringify(headers)}`).toBe(200);
      expect(res.json()).toEqual(plain.json());
    }
    expect(plain.json()).toMatchObject({ workspace: 'default' });
    expect((await call('alice', 'GET', `${API}/mine?workspace=default`)).json()).toMatchObject({ user: 'alice', workspace: 'default' });
  });

  it('a name MLflow would refuse, several, or a parameter and header that disagree: 400 before MLflow is asked', async () => {
    const before = mlflowCalls();
    const cases: [string, Record<string, string>][] = [
      ['?workspace=Team_A', {}],
      ['?workspace=team-a&workspace=team-b', {}],
      ['?workspace=team-a', { 'x-mlflow-workspace': 'team-b' }],
      ['?workspace=team-a', { 'x-mlflow-workspace': 'default' }],
      ['', { 'x-mlflow-workspace': 'team-a,team-b' }],
      ['', { x_mlflow_workspace: 'team-a' }],
    ];
    for (const [query, headers] of cases) {
      const res = await gw.request(`${API}/models/churn-model${query}`, { auth: as('admin'), headers });
      expect(res.status, `${query} ${JSON.stringify(headers)}`).toBe(400);
      expect(res.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE' });
    }
    expect((await call('admin', 'GET', `${API}/models/churn-model?workspace=Team_A`)).json<{ message: string }>().message).toBe('workspace "Team_A" is not a workspace name: 2-63 lowercase letters, digits and inner hyphens');
    expect(mlflowCalls()).toBe(before);
  });

  it('a workspace the caller may not use answers as a resource that does not exist, and MLflow is not asked', async () => {
    const before = mlflowCalls();
    const inTeam = await call('alice', 'GET', `${API}/models/churn-model?workspace=team-b`);
    expect(inTeam.status).toBe(404);
    expect(inTeam.json()).toEqual({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'registered model "churn-model" in workspace team-b does not exist, or user alice cannot read it' });
    const byHeader = await gw.request(`${API}/models/churn-model`, { auth: as('alice'), headers: { 'x-mlflow-workspace': 'team-b' } });
    expect(byHeader.text).toBe(inTeam.text);
    const write = await gw.request(`${API}/models/churn-model/grants/users/bob?workspace=team-b`, { method: 'PUT', auth: as('alice'), headers: JSON_HEADERS, body: '{"level":"READ"}' });
    expect(write.text).toBe(inTeam.text);
    const mine = await call('alice', 'GET', `${API}/mine?workspace=team-b`);
    expect(mine.status).toBe(404);
    expect(mine.json()).toEqual({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'workspace team-b does not exist, or user alice may not use it' });
    expect(mlflowCalls()).toBe(before);
    expect(modelTags('churn-model')).toEqual([{ key: 'mlgate.owner', value: 'alice' }]);
  });

  it('on a server without workspaces, one that may use any workspace is told so, and nothing is written', async () => {
    const res = await call('admin', 'PUT', `${API}/models/churn-model/grants/users/bob?workspace=team-a`, { level: 'READ' });
    expect(res.status).toBe(400);
    expect(res.json()).toEqual({ error_code: 'INVALID_PARAMETER_VALUE', message: `the MLflow tracking server at ${upstream.url} has no workspaces (that takes MLflow 3.10 or later, started with mlflow server --enable-workspaces), so workspace team-a cannot be used` });
    // Not the default workspace's model of that name: MLflow 2.x would ignore the header.
    expect(upstream.requests.some((r) => r.headers['x-mlflow-workspace'] !== undefined)).toBe(false);
    expect(modelTags('churn-model')).toEqual([{ key: 'mlgate.owner', value: 'alice' }]);
  });
});

describe('cross-site requests', () => {
  async function signIn(user: string): Promise<string> {
    const res = await gw.request('/-/login', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: gw.url },
      body: new URLSearchParams({ username: user, password: `${user}-password`, next: '/' }).toString(),
    });
    expect(res.status, res.text).toBe(303);
    const cookie = (res.headers['set-cookie'] ?? []).find((line) => line.startsWith('__Host-mlgate-session='));
    return cookie!.split(';')[0]!;
  }

  it('a state-changing call with the session cookie must be same-origin (the session step covers /-/ paths)', async () => {
    const cookie = await signIn('alice');
    const path = `${API}/experiments/${churn}/grants/users/eve`;
    const body = JSON.stringify({ level: 'READ' });
    const foreign = await gw.request(path, { method: 'PUT', headers: { cookie, origin: 'https://evil.example', ...JSON_HEADERS }, body });
    expect(foreign.status).toBe(403);
    expect(foreign.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining('cross-site request refused') });
    const none = await gw.request(path, { method: 'PUT', headers: { cookie, ...JSON_HEADERS }, body });
    expect(none.status).toBe(403);
    expect(tagsOf(churn)['mlgate.grant.user.eve']).toBeUndefined();

    const same = await gw.request(path, { method: 'PUT', headers: { cookie, origin: gw.url, ...JSON_HEADERS }, body });
    expect(same.status, same.text).toBe(200);
    const read = await gw.request(`${API}/experiments/${churn}`, { headers: { cookie } });
    expect(read.json()).toMatchObject({ users: expect.arrayContaining([{ name: 'eve', level: 'READ' }]) });
    const removed = await gw.request(path, { method: 'DELETE', headers: { cookie, origin: gw.url } });
    expect(removed.status, removed.text).toBe(200);
  });

  it('a browser\'s remembered Basic password does not make a foreign page\'s call count', async () => {
    const res = await gw.request(`${API}/experiments/${churn}/grants/users/eve`, { method: 'PUT', auth: as('alice'), headers: { origin: 'https://evil.example', ...JSON_HEADERS }, body: '{"level":"MANAGE"}' });
    expect(res.status).toBe(403);
    expect(tagsOf(churn)['mlgate.grant.user.eve']).toBeUndefined();
  });
});

describe('the /-/permissions page', () => {
  const form = (fields: Record<string, string>, headers: Record<string, string> = { origin: gw.url }) => ({
    method: 'POST',
    auth: as('alice'),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });

  it('lists what the user manages and who has what, self-contained and without script', async () => {
    const res = await gw.request('/-/permissions', { auth: as('alice'), headers: { accept: 'text/html' } });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toMatch(/default-src 'none'.*form-action 'self'/);
    expect(res.headers['content-security-policy']).not.toContain('script-src');
    expect(res.text).toContain('<html lang="en">');
    expect(res.text).toContain('Signed in as <strong>alice</strong>');
    expect(res.text).toContain('team-a/churn');
    expect(res.text).toContain('churn-model');
    expect(res.text).not.toContain('other-model');
    expect(res.text).not.toMatch(/<script|src="http|href="http/);
    // every input has a label, and revoke buttons say what they revoke
    for (const [, id] of res.text.matchAll(/<input id="([^"]+)"/g)) expect(res.text).toContain(`<label for="${id}">`);
    expect(res.text).toContain('<legend>Grant access to experiment team-a/churn');
  });

  it('grants and revokes with plain form posts from its own page', async () => {
    const granted = await gw.request('/-/permissions', form({ action: 'grant', kind: 'experiment', resource: churn, grantee: '@team-b', level: 'EDIT' }));
    expect(granted.status, granted.text).toBe(303);
    expect(granted.headers.location).toBe('/-/permissions?done=granted');
    expect(tagsOf(churn)['mlgate.grant.group.team-b']).toBe('EDIT');
    const page = await gw.request('/-/permissions?done=granted', { auth: as('alice') });
    expect(page.text).toContain('role="status">The grant was saved.');
    expect(page.text).toContain('aria-label="Revoke EDIT of group team-b on experiment team-a/churn (id');

    const revoked = await gw.request('/-/permissions', form({ action: 'revoke', kind: 'experiment', resource: churn, grantee: '@team-b' }));
    expect(revoked.status).toBe(303);
    expect(tagsOf(churn)['mlgate.grant.group.team-b']).toBeUndefined();
  });

  it('shows refusals on the page and changes nothing', async () => {
    const bad = await gw.request('/-/permissions', form({ action: 'grant', kind: 'registered-model', resource: 'churn-model', grantee: 'eve\u0007', level: 'READ' }));
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('role="alert">The user or group name contains a control character; nothing was changed.');
    const denied = await gw.request('/-/permissions', { ...form({ action: 'grant', kind: 'registered-model', resource: 'other-model', grantee: 'alice', level: 'MANAGE' }) });
    expect(denied.status).toBe(403);
    expect(denied.text).toContain('role="alert">User alice has READ on registered model other-model');
    expect(modelTags('other-model')).toEqual([{ key: 'mlgate.owner', value: 'dave' }]);
  });

  it('on a server without workspaces has no workspace field; a workspace named anyway is shown, a bad name refused', async () => {
    const page = await gw.request('/-/permissions', { auth: as('alice') });
    expect(page.text).not.toContain('name="workspace"');
    expect(page.text).not.toContain('Workspace');
    const bad = await gw.request('/-/permissions?workspace=Team_A', { auth: as('alice') });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('role="alert">Workspace &#34;Team_A&#34; is not a workspace name');
    const other = await gw.request('/-/permissions?workspace=team-b', { auth: as('alice') });
    expect(other.status).toBe(404);
    expect(other.text).toContain('role="alert">workspace team-b does not exist, or user alice may not use it');
    expect(other.text).toMatch(/<input id="workspace" name="workspace" value="team-b"/);
    const form = await gw.request('/-/permissions', { method: 'POST', auth: as('alice'), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: gw.url }, body: new URLSearchParams({ action: 'grant', kind: 'registered-model', resource: 'churn-model', workspace: 'team-b', grantee: 'bob', level: 'MANAGE' }).toString() });
    expect(form.status).toBe(404);
    expect(form.text).toContain('role="alert">Registered model &#34;churn-model&#34; in workspace team-b does not exist, or user alice cannot read it.');
    expect(modelTags('churn-model')).toEqual([{ key: 'mlgate.owner', value: 'alice' }]);
  });

  it('refuses a form sent from another site, or from nowhere', async () => {
    for (const headers of [{ origin: 'https://evil.example' }, {}, { referer: 'https://evil.example/page' }] as Record<string, string>[]) {
      const res = await gw.request('/-/permissions', form({ action: 'grant', kind: 'experiment', resource: churn, grantee: 'mallory', level: 'MANAGE' }, headers));
      expect(res.status, JSON.stringify(headers)).toBe(403);
    }
    expect(tagsOf(churn)['mlgate.grant.user.mallory']).toBeUndefined();
  });
});

describe('users named by e-mail addresses, with the gateway\'s own decisions', () => {
  const MAIL_USERS = ['alice@example.com', 'bob@example.com', 'carol@example.com'];
  let real: TestGateway;
  beforeAll(async () => {
    real = await startTestGateway({ upstream: upstream.url, users: Object.fromEntries(MAIL_USERS.map((user) => [user, `${user}-password`])) });
  });
  afterAll(async () => {
    await real?.close();
  });
  const mailCall = (user: string, method: string, path: string, body?: unknown) =>
    real.request(path, { method, auth: as(user), headers: body === undefined ? {} : JSON_HEADERS, body: body === undefined ? undefined : JSON.stringify(body) });
  const setNote = (user: string, id: string) => mailCall(user, 'POST', '/api/2.0/mlflow/experiments/set-experiment-tag', { experiment_id: id, key: 'note', value: user });

  it('own, are granted (CLI and API), decided on and revoked like any user', async () => {
    // The creator is recorded as the owner tag's value, which holds the address as it is.
    const created = await mailCall('alice@example.com', 'POST', '/api/2.0/mlflow/experiments/create', { name: 'mail/churn' });
    expect(created.status, created.text).toBe(200);
    const id = created.json<{ experiment_id: string }>().experiment_id;
    expect(tagsOf(id)).toEqual({ 'mlgate.owner': 'alice@example.com' });

    // `mlgate grant` from the gateway host, before the gateway has read the experiment.
    const cli = spawnCli(['grant', 'carol@example.com', 'experiment', 'mail/churn', 'MANAGE', '--upstream', upstream.url], { cwd: real.dir });
    cli.child.stdin.end();
    expect(await cli.exited, cli.output().stderr).toBe(0);
    expect(tagsOf(id)['mlgate.grant.user-enc.carol_40example.com']).toBe('MANAGE');

    // The default (READ) keeps bob from writing.
    const refused = await setNote('bob@example.com', id);
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining('user bob@example.com has READ on experiment') });

    // carol manages it through her escaped grant, and grants bob EDIT through the API.
    const put = await mailCall('carol@example.com', 'PUT', `${API}/experiments/${id}/grants/users/bob%40example.com`, { level: 'EDIT' });
    expect(put.status, put.text).toBe(200);
    expect(put.json()).toEqual({
      kind: 'experiment', workspace: 'default', id, name: 'mail/churn', owner: 'alice@example.com',
      users: [{ name: 'bob@example.com', level: 'EDIT' }, { name: 'carol@example.com', level: 'MANAGE' }], groups: [],
    });
    expect(tagsOf(id)['mlgate.grant.user-enc.bob_40example.com']).toBe('EDIT');
    const allowed = await setNote('bob@example.com', id);
    expect(allowed.status, allowed.text).toBe(200);
    expect(tagsOf(id).note).toBe('bob@example.com');
    // EDIT is not MANAGE: bob may not manage its grants.
    expect((await mailCall('bob@example.com', 'GET', `${API}/experiments/${id}`)).json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining('user bob@example.com has EDIT') });

    // The owner sees it among hers; carol too.
    const mine = (await mailCall('carol@example.com', 'GET', `${API}/mine`)).json<{ experiments: { name: string }[] }>();
    expect(mine.experiments.map((e) => e.name)).toContain('mail/churn');
    expect((await mailCall('alice@example.com', 'GET', `${API}/experiments/mail%2Fchurn`)).status).toBe(200);

    // Revoked: bob is back to READ at once.
    const del = await mailCall('alice@example.com', 'DELETE', `${API}/experiments/${id}/grants/users/bob@example.com`);
    expect(del.status, del.text).toBe(200);
    expect(tagsOf(id)['mlgate.grant.user-enc.bob_40example.com']).toBeUndefined();
    expect((await setNote('bob@example.com', id)).status).toBe(403);
  });
});

describe('wiring', () => {
  it('without an injected level function the gateway\'s decision engine decides (the owner tag gives MANAGE)', async () => {
    const real = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-password', bob: 'bob-password' } });
    try {
      const owner = await real.request(`${API}/experiments/${churn}`, { auth: as('alice') });
      expect(owner.status, owner.text).toBe(200);
      const other = await real.request(`${API}/experiments/${churn}/grants/users/bob`, { method: 'PUT', auth: as('bob'), headers: JSON_HEADERS, body: '{"level":"MANAGE"}' });
      expect(other.status).toBe(403);
      expect(other.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringContaining('needs MANAGE') });
    } finally {
      await real.close();
    }
  });

  it('MLflow unreachable: 502 naming the upstream', async () => {
    const orphan = await startTestGateway({ upstream: 'http://127.0.0.1:1', permissionLevel: PERMISSION_LEVEL });
    try {
      const res = await orphan.request(`${API}/experiments/1`, { auth: ['alice', 'alice-password'] });
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error_code: 'TEMPORARILY_UNAVAILABLE', message: expect.stringContaining('cannot reach the MLflow tracking server at http://127.0.0.1:1 (ECONNREFUSED)') });
    } finally {
      await orphan.close();
    }
  });
});
