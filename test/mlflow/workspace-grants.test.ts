// Grants, the permissions API and page, and `mlgate grant|revoke|permissions --workspace` against a
// real MLflow 3 with workspaces on: names are unique only within a workspace, so a grant must be
// written on, shown for and decided on the resource of the workspace it names, and a caller who may
// not use a workspace learns nothing about what is in it, or whether it exists.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli, type CliResult } from '../helpers/cli.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic } from '../helpers/http-client.ts';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('grants in workspaces on the real MLflow', { mlflow3Only: true });

const USERS = ['admin', 'alice', 'bob', 'carol', 'dave'];
const API = '/-/api/permissions';
// alice administers team-a (MANAGE on everything in it); bob reads in team-a; nobody but admin may use team-b.
const POLICY = {
  admins: ['admin'],
  workspaces: { 'team-a': { admins: ['alice'] } },
  rules: [{ workspace: 'team-a', model: '*', users: ['bob'], level: 'READ' }],
};

type Tagged = { registered_model: { tags?: { key: string; value: string }[] } };

for (const install of servers) {
  describe(`grants name the workspace, against MLflow ${install.version} with --enable-workspaces`, () => {
    let mlflow: RunningMlflow;
    let gw: TestGateway;

    const direct = (workspace?: string) => new MlflowDirect(mlflow.url, undefined, workspace ? { 'x-mlflow-workspace': workspace } : {});
    /** The model's tags as MLflow holds them in the workspace, read around the gateway. */
    const modelTags = async (workspace: string | undefined, name = 'churn') =>
      Object.fromEntries(((await direct(workspace).api<Tagged>('GET', 'registered-models/get', { name })).registered_model.tags ?? []).map((t) => [t.key, t.value]));
    const as = (user: string) => basic(user, `${user}-password`);
    const api = (user: string, method: string, path: string, body?: unknown) => gw.request(path, {
      method,
      headers: { authorization: as(user), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

    beforeAll(async () => {
      mlflow = await startMlflowServer(install, { extraArgs: ['--enable-workspaces'] });
      // A long cache: a grant that is in force at once was invalidated, not merely expired.
      gw = await startTestGateway({
        upstream: mlflow.url,
        users: Object.fromEntries(USERS.map((user) => [user, `${user}-password`])),
        policy: POLICY,
        config: { authz: { cacheTtl: '10m' } },
      });
      for (const name of ['team-a', 'team-b']) await direct().call('POST', '/api/3.0/mlflow/workspaces', { name });
      // A model called churn in each workspace.
      for (const workspace of [undefined, 'team-a', 'team-b']) await direct(workspace).api('POST', 'registered-models/create', { name: 'churn' });
    }, 120_000);
    afterAll(async () => {
      await gw?.close();
      await mlflow?.close();
    });

    /** The CLI as an operator runs it on the gateway host, with the gateway's configuration. */
    async function mlgate(args: string[]): Promise<CliResult> {
      const cli = spawnCli([...args, '--config', `${gw.dir}/mlgate.yaml`], { cwd: gw.dir });
      cli.child.stdin.end();
      const status = await cli.exited;
      return { status, ...cli.output() };
    }

    it('mlgate grant --workspace writes the grant on that workspace\'s model, not on the same name elsewhere', async () => {
      const granted = await mlgate(['grant', 'dave', 'model', 'churn', 'EDIT', '--workspace', 'team-a']);
      expect(granted.status, granted.stderr).toBe(0);
      expect(granted.stdout).toBe('granted EDIT on registered model churn in workspace team-a to user dave\n');
      expect(await modelTags('team-a')).toMatchObject({ 'mlgate.grant.user.dave': 'EDIT' });
      expect(await modelTags(undefined)).not.toHaveProperty('mlgate.grant.user.dave');
      expect(await modelTags('team-b')).not.toHaveProperty('mlgate.grant.user.dave');

      const shown = await mlgate(['permissions', 'model', 'churn', '--workspace', 'team-a']);
      expect(shown.stdout).toBe('registered model churn in workspace team-a\nowner: (none recorded)\nGRANTEE  LEVEL\ndave     EDIT\n');
      expect((await mlgate(['permissions', 'model', 'churn'])).stdout).toContain('registered model churn\nowner: (none recorded)\nno grants');

      const missing = await mlgate(['permissions', 'model', 'churn', '--workspace', 'no-such-team']);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toBe(`mlgate: no registered model named "churn" in workspace no-such-team on the MLflow tracking server at ${new URL(mlflow.url).origin} (or no workspace no-such-team); nothing was changed\n`);
    });

    it('the permissions API shows the workspace\'s model; who may not use a workspace learns nothing of it', async () => {
      const view = await api('alice', 'GET', `${API}/models/churn?workspace=team-a`);
      expect(view.status, view.text).toBe(200);
      expect(view.json()).toEqual({ kind: 'registered-model', workspace: 'team-a', name: 'churn', owner: null, users: [{ name: 'dave', level: 'EDIT' }], groups: [] });
      const byHeader = await gw.request(`${API}/models/churn`, { headers: { authorization: as('alice'), 'x-mlflow-workspace': 'team-a' } });
      expect(byHeader.json()).toEqual(view.json());
      // alice administers team-a only: in the default workspace she is at its default, READ.
      expect((await api('alice', 'GET', `${API}/models/churn`)).json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: 'user alice has READ on registered model churn; managing its permissions needs MANAGE' });

      // team-b's existing model, a made-up one in team-b, and one in a made-up workspace: one answer.
      const existing = await api('alice', 'GET', `${API}/models/churn?workspace=team-b`);
      const madeUp = await api('alice', 'GET', `${API}/models/no-such-model?workspace=team-b`);
      const noWorkspace = await api('alice', 'GET', `${API}/models/churn?workspace=no-such-team`);
      expect(existing.status).toBe(404);
      expect(existing.json()).toEqual({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'registered model "churn" in workspace team-b does not exist, or user alice cannot read it' });
      expect(madeUp.status).toBe(404);
      expect(madeUp.text.replace('no-such-model', 'churn')).toBe(existing.text);
      expect(noWorkspace.status).toBe(404);
      expect(noWorkspace.text.replace('no-such-team', 'team-b')).toBe(existing.text);
      const write = await api('alice', 'PUT', `${API}/models/churn/grants/users/alice?workspace=team-b`, { level: 'MANAGE' });
      expect(write.text).toBe(existing.text);
      expect(await modelTags('team-b')).toEqual({});
      // Listing: the same for a workspace she may not use and one that does not exist.
      const mineB = await api('alice', 'GET', `${API}/mine?workspace=team-b`);
      const mineNone = await api('alice', 'GET', `${API}/mine?workspace=no-such-team`);
      expect(mineB.status).toBe(404);
      expect(mineNone.text.replace('no-such-team', 'team-b')).toBe(mineB.text);
      const mineA = (await api('alice', 'GET', `${API}/mine?workspace=team-a`)).json<{ workspace: string; registered_models: { name: string; workspace: string }[] }>();
      expect(mineA.workspace).toBe('team-a');
      expect(mineA.registered_models).toEqual([expect.objectContaining({ name: 'churn', workspace: 'team-a' })]);

      // An admin may use any workspace: a made-up one is simply not found (MLflow's "Workspace not found").
      expect((await api('admin', 'GET', `${API}/models/churn?workspace=no-such-team`)).json()).toEqual({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'registered model "churn" in workspace no-such-team does not exist, or user admin cannot read it' });
      expect((await api('admin', 'GET', `${API}/models/churn?workspace=team-b`)).json()).toMatchObject({ workspace: 'team-b', name: 'churn' });
    });

    it('a grant made through the API in a workspace is in force at once there, and only there', async () => {
      const setTag = (workspace: string | undefined, value: string) => gw.request('/api/2.0/mlflow/registered-models/set-tag', {
        method: 'POST',
        headers: { authorization: as('bob'), 'content-type': 'application/json', ...(workspace ? { 'x-mlflow-workspace': workspace } : {}) },
        body: JSON.stringify({ name: 'churn', key: 'note', value }),
      });
      // Decided (and cached, for 10 minutes) in both workspaces: bob only reads.
      expect((await setTag('team-a', 'before')).status).toBe(403);
      expect((await setTag(undefined, 'before')).status).toBe(403);

      const put = await api('alice', 'PUT', `${API}/models/churn/grants/users/bob?workspace=team-a`, { level: 'EDIT' });
      expect(put.status, put.text).toBe(200);
      expect(put.json()).toMatchObject({ workspace: 'team-a', users: [{ name: 'bob', level: 'EDIT' }, { name: 'dave', level: 'EDIT' }] });
      expect(await modelTags('team-a')).toMatchObject({ 'mlgate.grant.user.bob': 'EDIT' });
      expect(await modelTags(undefined)).not.toHaveProperty('mlgate.grant.user.bob');

      const now = await setTag('team-a', 'after');
      expect(now.status, now.text).toBe(200);
      expect(await modelTags('team-a')).toMatchObject({ note: 'after' });
      expect((await setTag(undefined, 'after')).status).toBe(403);
      expect(await modelTags(undefined)).not.toHaveProperty('note');

      // Revoked through the page's form, in the workspace it names: back to READ at once.
      const form = await gw.request('/-/permissions', {
        method: 'POST',
        headers: { authorization: as('alice'), 'content-type': 'application/x-www-form-urlencoded', origin: gw.url },
        body: new URLSearchParams({ action: 'revoke', kind: 'registered-model', resource: 'churn', workspace: 'team-a', grantee: 'bob' }).toString(),
      });
      expect(form.status, form.text).toBe(303);
      expect(form.headers.location).toBe('/-/permissions?done=revoked&workspace=team-a');
      expect(await modelTags('team-a')).not.toHaveProperty('mlgate.grant.user.bob');
      expect((await setTag('team-a', 'again')).status).toBe(403);
    });

    it('the page has a workspace field and says which workspace a resource is in', async () => {
      const page = await gw.request('/-/permissions?workspace=team-a', { headers: { authorization: as('alice') } });
      expect(page.status, page.text).toBe(200);
      expect(page.text).toMatch(/<label for="workspace">Workspace<\/label><input id="workspace" name="workspace" value="team-a"/);
      expect(page.text).toContain('<p>Workspace: <strong>team-a</strong></p>');
      expect(page.text).toContain('<legend>Grant access to registered model churn in workspace team-a</legend>');
      expect(page.text).toContain('<input type="hidden" name="workspace" value="team-a">');
      // The default workspace: the field too (this server has workspaces), and nothing alice manages there.
      const home = await gw.request('/-/permissions', { headers: { authorization: as('alice') } });
      expect(home.text).toMatch(/<input id="workspace" name="workspace" value="default"/);
      expect(home.text).not.toContain('<h3');
    });
  });
}
