// Workspaces (MLflow 3.10+, `mlflow server --enable-workspaces`) fail closed until the gateway
// understands them: its look-ups are made in the default workspace while MLflow acts in the one the
// X-MLFLOW-WORKSPACE header names, so a decoy model named like a hidden one in another workspace
// could have been used to read and change the real one. A non-admin request naming any workspace but
// the default is refused; admins pass. Against a real MLflow 3 with workspaces on.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic } from '../helpers/http-client.ts';
import { MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('workspaces on the real MLflow', { mlflow3Only: true });


for (const install of servers) {
  describe(`a non-admin naming a workspace, against MLflow ${install.version} with --enable-workspaces`, () => {
    let mlflow: RunningMlflow;
    let gw: TestGateway;
    const alice = basic('alice', 'alice-password');
    const admin = basic('admin', 'admin-password');
    const TEAM = 'team-secret';

    function inWorkspace(workspace: string | undefined) {
      return new MlflowDirect(mlflow.url, undefined, workspace ? { 'x-mlflow-workspace': workspace } : {});
    }

    beforeAll(async () => {
      mlflow = await startMlflowServer(install, { extraArgs: ['--enable-workspaces'] });
      gw = await startTestGateway({ upstream: mlflow.url, users: { alice: 'alice-password', admin: 'admin-password' } });
      // The hidden model lives in another workspace; alice owns a decoy of the same name in the default one.
      await inWorkspace(undefined).call('POST', '/api/3.0/mlflow/workspaces', { name: TEAM });
      await inWorkspace(TEAM).api('POST', 'registered-models/create', { name: 'churn', tags: [{ key: 'mlgate.owner', value: 'carol' }] });
      const decoy = await gw.request('/api/2.0/mlflow/registered-models/create', {
        method: 'POST', headers: { authorization: alice, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'churn' }),
      });
      expect(decoy.status, decoy.text).toBe(200);
    });
    afterAll(async () => {
      await gw?.close();
      await mlflow?.close();
    });

    const call = (authorization: string, path: string, headers: Record<string, string | string[]>, body?: unknown) => gw.request(path, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

    it('refuses a non-admin\'s request naming another workspace (header, its underscore spelling, or two values), before MLflow sees it', async () => {
      const attempts: Record<string, string | string[]>[] = [
        { 'x-mlflow-workspace': TEAM },
        { 'x-mlflow-workspace': ['default', TEAM] },
        { 'X-MLFLOW-WORKSPACE': ` ${TEAM} ` },
        { x_mlflow_workspace: TEAM },
        { 'x-mlflow-workspace': 'no-such-workspace' },
      ];
      for (const headers of attempts) {
        const read = await call(alice, '/api/2.0/mlflow/registered-models/get?name=churn', headers);
        expect(read.status, JSON.stringify(headers)).toBe(403);
        expect(read.json()).toEqual({ error_code: 'PERMISSION_DENIED', message: expect.stringMatching(/workspaces are not yet supported for non-admins/) });
        const write = await call(alice, '/api/2.0/mlflow/registered-models/set-tag', headers, { name: 'churn', key: 'mlgate.owner', value: 'alice' });
        expect(write.status).toBe(403);
      }
      const byQuery = await call(alice, `/api/2.0/mlflow/registered-models/get?name=churn&workspace=${TEAM}`, {});
      expect(byQuery.status).toBe(403);
      // The same answer whether the workspace exists or not; and the real model is untouched.
      const held = await inWorkspace(TEAM).api<{ registered_model: { tags: { key: string; value: string }[] } }>('GET', 'registered-models/get', { name: 'churn' });
      expect(Object.fromEntries(held.registered_model.tags.map((t) => [t.key, t.value]))['mlgate.owner']).toBe('carol');
    });

    it('lets the same user work in the default workspace, named or not, and lets admins use any workspace', async () => {
      for (const headers of [{}, { 'x-mlflow-workspace': 'default' }] as Record<string, string>[]) {
        const own = await call(alice, '/api/2.0/mlflow/registered-models/set-tag', headers, { name: 'churn', key: 'stage', value: 'dev' });
        expect(own.status, own.text).toBe(200);
      }
      const decoy = await inWorkspace(undefined).api<{ registered_model: { tags: { key: string; value: string }[] } }>('GET', 'registered-models/get', { name: 'churn' });
      expect(Object.fromEntries(decoy.registered_model.tags.map((t) => [t.key, t.value]))).toMatchObject({ stage: 'dev', 'mlgate.owner': 'alice' });

      const asAdmin = await call(admin, '/api/2.0/mlflow/registered-models/get?name=churn', { 'x-mlflow-workspace': TEAM });
      expect(asAdmin.status, asAdmin.text).toBe(200);
      expect(asAdmin.json<{ registered_model: { tags: { key: string; value: string }[] } }>().registered_model.tags).toContainEqual({ key: 'mlgate.owner', value: 'carol' });
    });
  });
}
