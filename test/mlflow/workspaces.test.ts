// Per-workspace access control against a real MLflow 3 with workspaces on (`mlflow server
// --enable-workspaces`): MLflow acts in the workspace the X-MLFLOW-WORKSPACE header names, so the
// gateway reads the header as MLflow does, looks up and caches in that workspace, decides with the
// policy's rules for it, and refuses a workspace the user may not use with the same words whether it
// exists or not. Every refused request is read back around the gateway to show it was not carried out.
//
// The allowed requests also show that the gateway's look-ups carry the header: experiment and run
// ids of another workspace are not found in the default one, so a look-up made without it would
// find nothing and refuse them.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic, type TestResponse } from '../helpers/http-client.ts';
import { MlflowDirect, runMlflowClient, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('workspaces on the real MLflow', { mlflow3Only: true });

const USERS = { alice: 'alice-password', bob: 'bob-password', carol: 'carol-password', dave: 'dave-password', erin: 'erin-password', admin: 'admin-password' };
const as = (user: keyof typeof USERS) => basic(user, USERS[user]);

// alice works in team-a, bob in team-b, carol administers team-a (and has no rule anywhere).
const POLICY = {
  admins: ['admin'],
  groups: { 'team-a': ['alice'], 'team-b': ['bob'] },
  workspaces: { 'team-a': { admins: ['carol'] }, 'team-b': null },
  rules: [
    { workspace: 'team-a', experiment: '*', groups: ['team-a'], level: 'EDIT' },
    { workspace: 'team-a', model: '*', groups: ['team-a'], level: 'EDIT' },
    { workspace: 'team-b', experiment: '*', groups: ['team-b'], level: 'EDIT' },
    { workspace: 'team-b', model: '*', groups: ['team-b'], level: 'EDIT' },
  ],
  default: 'READ',
};

interface Tags { tags?: { key: string; value: string }[] }
const tagMap = (entity: Tags | undefined) => Object.fromEntries((entity?.tags ?? []).map((t) => [t.key, t.value]));

for (const install of servers) {
  describe(`workspaces against MLflow ${install.version} with --enable-workspaces`, () => {
    let mlflow: RunningMlflow;
    let gw: TestGateway;
    /** Each workspace's experiment named "shared" (same name, different ids) and a run in it. */
    const ids: Record<'team-a' | 'team-b', { experiment: string; run: string }> = {} as never;

    const direct = (workspace?: string) => new MlflowDirect(mlflow.url, undefined, workspace ? { 'x-mlflow-workspace': workspace } : {});

    function call(user: keyof typeof USERS, method: string, path: string, options: { workspace?: string; headers?: Record<string, string | string[]>; body?: unknown } = {}): Promise<TestResponse> {
      const json = options.body !== undefined && !Buffer.isBuffer(options.body);
      return gw.request(path, {
        method,
        headers: {
          authorization: as(user),
          ...(json ? { 'content-type': 'application/json' } : {}),
          ...(options.workspace ? { 'x-mlflow-workspace': options.workspace } : {}),
          ...options.headers,
        },
        body: options.body === undefined ? undefined : Buffer.isBuffer(options.body) ? options.body : JSON.stringify(options.body),
      });
    }

    async function metricsOf(workspace: string, run: string): Promise<Record<string, number>> {
      const got = await direct(workspace).api<{ run: { data: { metrics?: { key: string; value: number }[] } } }>('GET', 'runs/get', { run_id: run });
      return Object.fromEntries((got.run.data.metrics ?? []).map((m) => [m.key, m.value]));
    }

    beforeAll(async () => {
      mlflow = await startMlflowServer(install, { extraArgs: ['--enable-workspaces'] });
      for (const workspace of ['team-a', 'team-b'] as const) {
        await direct().call('POST', '/api/3.0/mlflow/workspaces', { name: workspace });
        const { experiment_id: experiment } = await direct(workspace).api<{ experiment_id: string }>('POST', 'experiments/create', { name: 'shared' });
        const created = await direct(workspace).api<{ run: { info: { run_id: string } } }>('POST', 'runs/create', { experiment_id: experiment });
        ids[workspace] = { experiment, run: created.run.info.run_id };
        // The same model name in each workspace; team-b's is bob's.
        await direct(workspace).api('POST', 'registered-models/create', { name: 'churn', tags: [{ key: 'mlgate.owner', value: workspace === 'team-b' ? 'bob' : 'alice' }] });
      }
      gw = await startTestGateway({ upstream: mlflow.url, users: USERS, policy: POLICY });
      // alice's decoy in the default workspace, named like team-b's hidden model.
      const decoy = await call('alice', 'POST', '/api/2.0/mlflow/registered-models/create', { body: { name: 'churn' } });
      expect(decoy.status, decoy.text).toBe(200);
    });
    afterAll(async () => {
      await gw?.close();
      await mlflow?.close();
    });

    it('MLflow itself: ids of another workspace are not found, names repeat, the query parameter is not a workspace', async () => {
      // Pinned, because the gateway's look-ups rely on it.
      const elsewhere = await direct().call('GET', `/api/2.0/mlflow/experiments/get?experiment_id=${ids['team-a'].experiment}`);
      expect(elsewhere.status).toBe(404);
      expect(elsewhere.json()).toMatchObject({ error_code: 'RESOURCE_DOES_NOT_EXIST' });
      const acrossRun = await direct('team-b').call('GET', `/api/2.0/mlflow/runs/get?run_id=${ids['team-a'].run}`);
      expect(acrossRun.status).toBe(404);
      expect(ids['team-a'].experiment).not.toBe(ids['team-b'].experiment);
      const missing = await direct('no-such-team').call('GET', `/api/2.0/mlflow/experiments/get?experiment_id=${ids['team-a'].experiment}`);
      expect(missing.json()).toMatchObject({ error_code: 'RESOURCE_DOES_NOT_EXIST', message: expect.stringMatching(/Workspace 'no-such-team' not found/) });
      const byQuery = await direct().call('GET', `/api/2.0/mlflow/experiments/get?experiment_id=${ids['team-a'].experiment}&workspace=team-a`);
      expect(byQuery.status).toBe(404);
    });

    it('a user works in their workspace: reads, writes and searches there, by id and by a name other workspaces share', async () => {
      const { experiment, run } = ids['team-a'];
      const byId = await call('alice', 'GET', `/api/2.0/mlflow/experiments/get?experiment_id=${experiment}`, { workspace: 'team-a' });
      expect(byId.status, byId.text).toBe(200);
      const byName = await call('alice', 'GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=shared', { workspace: 'team-a' });
      expect(byName.status, byName.text).toBe(200);
      expect(byName.json<{ experiment: { experiment_id: string } }>().experiment.experiment_id).toBe(experiment);

      const logged = await call('alice', 'POST', '/api/2.0/mlflow/runs/log-metric', { workspace: 'team-a', body: { run_id: run, key: 'in-team-a', value: 1, timestamp: 1, step: 0 } });
      expect(logged.status, logged.text).toBe(200);
      expect(await metricsOf('team-a', run)).toMatchObject({ 'in-team-a': 1 });

      const tagged = await call('alice', 'POST', '/api/2.0/mlflow/registered-models/set-tag', { workspace: 'team-a', body: { name: 'churn', key: 'stage', value: 'prod' } });
      expect(tagged.status, tagged.text).toBe(200);
      expect(tagMap((await direct('team-a').api<{ registered_model: Tags }>('GET', 'registered-models/get', { name: 'churn' })).registered_model)).toMatchObject({ stage: 'prod' });
      expect(tagMap((await direct('team-b').api<{ registered_model: Tags }>('GET', 'registered-models/get', { name: 'churn' })).registered_model).stage).toBeUndefined();

      // Searches run in the workspace: only its experiments, and runs of another's are left out.
      const search = await call('alice', 'POST', '/api/2.0/mlflow/experiments/search', { workspace: 'team-a', body: { max_results: 100 } });
      expect(search.status, search.text).toBe(200);
      expect(search.json<{ experiments: { experiment_id: string }[] }>().experiments.map((e) => e.experiment_id)).toEqual([experiment]);
      const runs = await call('alice', 'POST', '/api/2.0/mlflow/runs/search', { workspace: 'team-a', body: { experiment_ids: [experiment] } });
      expect(runs.status, runs.text).toBe(200);
      expect(runs.json<{ runs: { info: { run_id: string } }[] }>().runs.map((r) => r.info.run_id)).toEqual([run]);

      // A create lands in the workspace and gets the owner tag.
      const created = await call('alice', 'POST', '/api/2.0/mlflow/experiments/create', { workspace: 'team-a', body: { name: 'alice-new' } });
      expect(created.status, created.text).toBe(200);
      const made = await direct('team-a').api<{ experiment: Tags }>('GET', 'experiments/get-by-name', { experiment_name: 'alice-new' });
      expect(tagMap(made.experiment)['mlgate.owner']).toBe('alice');
    });

    it('refuses a workspace the user may not use, in the same words whether it exists or not, before MLflow sees it', async () => {
      const { run } = ids['team-b'];
      const answers: string[] = [];
      for (const workspace of ['team-b', 'no-such-team']) {
        const read = await call('alice', 'GET', '/api/2.0/mlflow/registered-models/get?name=churn', { workspace });
        expect(read.status).toBe(403);
        answers.push(read.json<{ message: string }>().message.replace(workspace, 'W'));
        const write = await call('alice', 'POST', '/api/2.0/mlflow/runs/log-metric', { workspace, body: { run_id: run, key: 'from-alice', value: 1, timestamp: 1, step: 0 } });
        expect(write.status).toBe(403);
        const search = await call('alice', 'POST', '/api/2.0/mlflow/experiments/search', { workspace, body: {} });
        expect(search.status).toBe(403);
        answers.push(search.json<{ message: string }>().message.replace(workspace, 'W'));
      }
      expect(new Set(answers).size).toBe(1);
      expect(answers[0]).toMatch(/user alice may not use workspace W \(or it does not exist\)/);
      expect(await metricsOf('team-b', run)).not.toHaveProperty('from-alice');
      // carol administers team-a, not team-b.
      expect((await call('carol', 'GET', `/api/2.0/mlflow/runs/get?run_id=${run}`, { workspace: 'team-b' })).status).toBe(403);
    });

    it('an id or a name from another workspace is decided in the request\'s workspace: not found there, refused like any hidden one', async () => {
      // bob names alice's run while working in team-b, and from the default workspace.
      const { run, experiment } = ids['team-a'];
      for (const workspace of ['team-b', undefined]) {
        const write = await call('bob', 'POST', '/api/2.0/mlflow/runs/log-metric', { workspace, body: { run_id: run, key: 'from-bob', value: 1, timestamp: 1, step: 0 } });
        expect(write.status, write.text).toBe(403);
        expect(write.json<{ message: string }>().message).toMatch(/\(or it does not exist\)/);
        const read = await call('bob', 'GET', `/api/2.0/mlflow/experiments/get?experiment_id=${experiment}`, { workspace });
        expect(read.status).toBe(403);
      }
      expect(await metricsOf('team-a', run)).not.toHaveProperty('from-bob');

      // The decoy: in the default workspace alice's "churn" is her own; team-b's stays bob's and untouched.
      const own = await call('alice', 'POST', '/api/2.0/mlflow/registered-models/set-tag', { body: { name: 'churn', key: 'mlgate.owner', value: 'mallory' } });
      expect(own.status, own.text).toBe(200);
      expect(tagMap((await direct('team-b').api<{ registered_model: Tags }>('GET', 'registered-models/get', { name: 'churn' })).registered_model)['mlgate.owner']).toBe('bob');
      const hidden = await call('alice', 'POST', '/api/2.0/mlflow/registered-models/set-tag', { workspace: 'team-b', body: { name: 'churn', key: 'mlgate.owner', value: 'alice' } });
      expect(hidden.status).toBe(403);
      expect(tagMap((await direct('team-b').api<{ registered_model: Tags }>('GET', 'registered-models/get', { name: 'churn' })).registered_model)['mlgate.owner']).toBe('bob');
    });

    it('reads the header as MLflow does: trimmed, "default" is the default; a name MLflow refuses, two values or the underscore spelling are refused', async () => {
      const inDefault = await call('alice', 'GET', '/api/2.0/mlflow/registered-models/get?name=churn', { workspace: 'default' });
      expect(inDefault.status, inDefault.text).toBe(200);
      const trimmed = await call('alice', 'GET', `/api/2.0/mlflow/runs/get?run_id=${ids['team-a'].run}`, { headers: { 'x-mlflow-workspace': ' team-a ' } });
      expect(trimmed.status, trimmed.text).toBe(200);
      for (const headers of [{ 'x-mlflow-workspace': 'TEAM-A' }, { 'x-mlflow-workspace': ['team-a', 'team-b'] }, { x_mlflow_workspace: 'team-a' }] as Record<string, string | string[]>[]) {
        const res = await call('alice', 'GET', '/api/2.0/mlflow/registered-models/get?name=churn', { headers });
        expect(res.status, JSON.stringify(headers)).toBe(400);
        expect(res.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE' });
      }
      // ?workspace= is no workspace for MLflow's API (pinned above): the request acts in the default one.
      const byQuery = await call('alice', 'GET', '/api/2.0/mlflow/registered-models/get?name=churn&workspace=team-b');
      expect(byQuery.status, byQuery.text).toBe(200);
      expect(tagMap(byQuery.json<{ registered_model: Tags }>().registered_model)['mlgate.owner']).not.toBe('bob');
    });

    it('artifacts: proxied paths are checked in the request\'s workspace, with or without its workspaces/<name>/ prefix', async () => {
      const { experiment, run } = ids['team-a'];
      const plain = `/api/2.0/mlflow-artifacts/artifacts/${experiment}/${run}/artifacts/plain.txt`;
      const prefixed = `/api/2.0/mlflow-artifacts/artifacts/workspaces/team-a/${experiment}/${run}/artifacts/prefixed.txt`;
      for (const path of [plain, prefixed]) {
        const up = await call('alice', 'PUT', path, { workspace: 'team-a', body: Buffer.from('model bytes'), headers: { 'content-type': 'application/octet-stream' } });
        expect(up.status, up.text).toBe(200);
        const down = await call('alice', 'GET', path, { workspace: 'team-a' });
        expect(down.status, down.text).toBe(200);
        expect(down.text).toBe('model bytes');
      }
      const listed = await direct('team-a').call('GET', `/api/2.0/mlflow-artifacts/artifacts?path=${experiment}/${run}/artifacts`);
      expect(listed.json<{ files: { path: string }[] }>().files.map((f) => f.path).sort()).toEqual(['plain.txt', 'prefixed.txt']);

      // bob (team-b) and alice from the default workspace cannot reach them, by either form.
      const attempts: { user: 'alice' | 'bob'; workspace?: string; path: string }[] = [
        { user: 'bob', workspace: 'team-b', path: `/api/2.0/mlflow-artifacts/artifacts/workspaces/team-a/${experiment}/${run}/artifacts/evil.txt` },
        { user: 'bob', workspace: 'team-b', path: `/api/2.0/mlflow-artifacts/artifacts/${experiment}/${run}/artifacts/evil.txt` },
        { user: 'alice', path: `/api/2.0/mlflow-artifacts/artifacts/workspaces/team-a/${experiment}/${run}/artifacts/evil.txt` },
        { user: 'bob', path: `/api/2.0/mlflow-artifacts/artifacts/workspaces/team-a/${experiment}/${run}/artifacts/evil.txt` },
      ];
      for (const attempt of attempts) {
        const put = await call(attempt.user, 'PUT', attempt.path, { workspace: attempt.workspace, body: Buffer.from('evil'), headers: { 'content-type': 'application/octet-stream' } });
        expect([400, 403], `${attempt.user} ${attempt.workspace} ${attempt.path}: ${put.text}`).toContain(put.status);
        const get = await call(attempt.user, 'GET', attempt.path.replace('evil.txt', 'plain.txt'), { workspace: attempt.workspace });
        expect([400, 403]).toContain(get.status);
      }
      const after = await direct('team-a').call('GET', `/api/2.0/mlflow-artifacts/artifacts?path=${experiment}/${run}/artifacts`);
      expect(after.json<{ files: { path: string }[] }>().files.map((f) => f.path)).not.toContain('evil.txt');
    });

    it('a workspace admin manages everything in it, but is no admin elsewhere nor of the admin-only routes', async () => {
      const { experiment } = ids['team-a'];
      const grant = await call('carol', 'POST', '/api/2.0/mlflow/experiments/set-experiment-tag', { workspace: 'team-a', body: { experiment_id: experiment, key: 'mlgate.grant.user.dave', value: 'READ' } });
      expect(grant.status, grant.text).toBe(200);
      const renamed = await call('carol', 'POST', '/api/2.0/mlflow/experiments/update', { workspace: 'team-a', body: { experiment_id: experiment, new_name: 'shared' } });
      expect(renamed.status, renamed.text).toBe(200);
      // In the default workspace carol has the default (READ): no MANAGE.
      const decoyTag = await call('carol', 'POST', '/api/2.0/mlflow/registered-models/set-tag', { body: { name: 'churn', key: 'mlgate.owner', value: 'carol' } });
      expect(decoyTag.status).toBe(403);
      const newWorkspace = await call('carol', 'POST', '/api/3.0/mlflow/workspaces', { body: { name: 'carols' } });
      expect(newWorkspace.status).toBe(403);
      expect((await direct().call('GET', '/api/3.0/mlflow/workspaces/carols')).status).toBe(404);
    });

    it('the workspace list shows each user the workspaces they may use; one is read by its users only', async () => {
      const names = async (user: keyof typeof USERS) => {
        const res = await call(user, 'GET', '/ajax-api/3.0/mlflow/workspaces');
        expect(res.status, res.text).toBe(200);
        return res.json<{ workspaces: { name: string }[] }>().workspaces.map((w) => w.name).sort();
      };
      expect(await names('alice')).toEqual(['default', 'team-a']);
      expect(await names('bob')).toEqual(['default', 'team-b']);
      expect(await names('carol')).toEqual(['default', 'team-a']);
      expect(await names('admin')).toEqual(['default', 'team-a', 'team-b']);
      expect((await call('alice', 'GET', '/api/3.0/mlflow/workspaces/team-a')).status).toBe(200);
      const hidden = await call('alice', 'GET', '/api/3.0/mlflow/workspaces/team-b');
      const missing = await call('alice', 'GET', '/api/3.0/mlflow/workspaces/no-such-team');
      expect([hidden.status, missing.status]).toEqual([403, 403]);
      expect(hidden.json<{ message: string }>().message.replace('team-b', 'W')).toBe(missing.json<{ message: string }>().message.replace('no-such-team', 'W'));
    });

    it('a grant on one experiment lets its holder into the workspace, to that experiment only; a NO_PERMISSIONS grant does not', async () => {
      const { experiment, run } = ids['team-b'];
      // dave and erin have no rule anywhere; team-b's default is NO_PERMISSIONS.
      expect((await call('dave', 'GET', `/api/2.0/mlflow/experiments/get?experiment_id=${experiment}`, { workspace: 'team-b' })).status).toBe(403);
      const granted = await call('bob', 'POST', '/api/2.0/mlflow/experiments/set-experiment-tag', { workspace: 'team-b', body: { experiment_id: experiment, key: 'mlgate.grant.user.dave', value: 'READ' } });
      expect(granted.status, granted.text).toBe(403); // bob has EDIT by rule: grants need MANAGE
      // Made through the gateway, so in force at once (dave's "no grant in team-b" was cached above).
      for (const [user, level] of [['dave', 'READ'], ['erin', 'NO_PERMISSIONS']]) {
        const made = await call('admin', 'POST', '/api/2.0/mlflow/experiments/set-experiment-tag', { workspace: 'team-b', body: { experiment_id: experiment, key: `mlgate.grant.user.${user}`, value: level } });
        expect(made.status, made.text).toBe(200);
      }
      const read = await call('dave', 'GET', `/api/2.0/mlflow/runs/get?run_id=${run}`, { workspace: 'team-b' });
      expect(read.status, read.text).toBe(200);
      const write = await call('dave', 'POST', '/api/2.0/mlflow/runs/log-metric', { workspace: 'team-b', body: { run_id: run, key: 'from-dave', value: 1, timestamp: 1, step: 0 } });
      expect(write.status).toBe(403);
      expect((await call('dave', 'GET', '/api/2.0/mlflow/registered-models/get?name=churn', { workspace: 'team-b' })).status).toBe(403);
      const list = await call('dave', 'GET', '/api/3.0/mlflow/workspaces');
      // team-a too: carol granted dave READ on its experiment above.
      expect(list.json<{ workspaces: { name: string }[] }>().workspaces.map((w) => w.name).sort()).toEqual(['default', 'team-a', 'team-b']);
      expect((await call('erin', 'GET', '/api/3.0/mlflow/workspaces')).json<{ workspaces: { name: string }[] }>().workspaces.map((w) => w.name)).toEqual(['default']);
      const erin = await call('erin', 'GET', `/api/2.0/mlflow/runs/get?run_id=${run}`, { workspace: 'team-b' });
      expect(erin.status).toBe(403);
      expect(erin.json<{ message: string }>().message).toMatch(/may not use workspace team-b/);
      expect(await metricsOf('team-b', run)).not.toHaveProperty('from-dave');
    });

    it('the real MLflow client works in its workspace (MLFLOW_WORKSPACE) through the gateway, and is refused in another', async () => {
      const session = await runMlflowClient<{ experiment_id: string; run_id: string; model_name: string; artifacts: string[]; prediction: number[] }>(
        install, 'user_session.py', { trackingUri: gw.url, certPath: join(gw.dir, 'certs', 'mlgate.crt'), basic: ['alice', USERS.alice], extra: { MLFLOW_WORKSPACE: 'team-a' } }, { prefix: 'ws-session' });
      expect(session.result.prediction).toEqual([1, 2, 3]);
      expect(session.result.artifacts).toEqual(expect.arrayContaining(['notes.txt', 'plots']));
      // Everything landed in team-a, owned by alice; nothing of it in the default workspace.
      const made = await direct('team-a').api<{ experiment: Tags & { experiment_id: string; artifact_location: string } }>('GET', 'experiments/get-by-name', { experiment_name: 'ws-session-experiment' });
      expect(made.experiment.experiment_id).toBe(session.result.experiment_id);
      expect(made.experiment.artifact_location).toMatch(/workspaces\/team-a\//);
      expect(tagMap(made.experiment)['mlgate.owner']).toBe('alice');
      expect((await direct().call('GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=ws-session-experiment')).status).toBe(404);
      const model = await direct('team-a').api<{ registered_model: Tags }>('GET', 'registered-models/get', { name: session.result.model_name });
      expect(tagMap(model.registered_model)['mlgate.owner']).toBe('alice');
      const files = await direct('team-a').call('GET', `/api/2.0/mlflow-artifacts/artifacts?path=${session.result.experiment_id}/${session.result.run_id}/artifacts`);
      expect(files.json<{ files: { path: string }[] }>().files.map((f) => f.path)).toContain('notes.txt');

      // bob's client in team-a: refused at its first call, nothing made.
      await expect(runMlflowClient(install, 'user_session.py', { trackingUri: gw.url, certPath: join(gw.dir, 'certs', 'mlgate.crt'), basic: ['bob', USERS.bob], extra: { MLFLOW_WORKSPACE: 'team-a' } }, { prefix: 'ws-bob' }))
        .rejects.toThrow(/may not use workspace team-a/);
      expect((await direct('team-a').call('GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=ws-bob-experiment')).status).toBe(404);
    });

    it('admins use every workspace', async () => {
      for (const workspace of ['team-a', 'team-b']) {
        const res = await call('admin', 'GET', '/api/2.0/mlflow/registered-models/get?name=churn', { workspace });
        expect(res.status, res.text).toBe(200);
        expect(tagMap(res.json<{ registered_model: Tags }>().registered_model)['mlgate.owner']).toBe(workspace === 'team-b' ? 'bob' : 'alice');
      }
    });
  });
}

// MLflow 2.x ignores the header and acts in its only workspace; 3.x without --enable-workspaces
// refuses it. Either way the gateway must not decide a request with another workspace's rules: it
// refuses the header itself, before anything is carried out.
for (const server of mlflowServersFor('workspace headers to a server without workspaces')) {
  describe(`a workspace header to MLflow ${server.version} without workspaces`, () => {
    let gw: TestGateway;
    let run: string;
    const direct = new MlflowDirect(server.url);
    beforeAll(async () => {
      // alice may EDIT everything in team-a, and only READ the default workspace.
      gw = await startTestGateway({ upstream: server.url, users: USERS, policy: POLICY });
      const { experiment_id: experiment } = await direct.api<{ experiment_id: string }>('POST', 'experiments/create', { name: `workspace-header-${Date.now()}` });
      run = (await direct.api<{ run: { info: { run_id: string } } }>('POST', 'runs/create', { experiment_id: experiment })).run.info.run_id;
    });
    afterAll(async () => {
      await gw?.close();
    });

    it('is refused with FEATURE_DISABLED, and nothing is written', async () => {
      const write = await gw.request('/api/2.0/mlflow/runs/log-metric', {
        method: 'POST',
        headers: { authorization: as('alice'), 'content-type': 'application/json', 'x-mlflow-workspace': 'team-a' },
        body: JSON.stringify({ run_id: run, key: 'via-team-a', value: 1, timestamp: 1, step: 0 }),
      });
      expect(write.status, write.text).toBe(400);
      expect(write.json()).toMatchObject({ error_code: 'FEATURE_DISABLED', message: expect.stringMatching(/--enable-workspaces/) });
      const got = await direct.api<{ run: { data: { metrics?: { key: string }[] } } }>('GET', 'runs/get', { run_id: run });
      expect((got.run.data.metrics ?? []).map((m) => m.key)).not.toContain('via-team-a');
      // Without the header, alice has READ here (the default workspace's default): refused as before.
      const plain = await gw.request('/api/2.0/mlflow/runs/log-metric', {
        method: 'POST',
        headers: { authorization: as('alice'), 'content-type': 'application/json' },
        body: JSON.stringify({ run_id: run, key: 'plain', value: 1, timestamp: 1, step: 0 }),
      });
      expect(plain.status).toBe(403);
    });
  });
}
