// Access control against the real MLflow server (issue 10 item 2), on each installed version.
// Users and policy as in the README's worked example:
//   alice  - owner: creates the team experiment and registered model through the gateway (MANAGE);
//   carol  - editor: EDIT on team-a experiments and models through her group's rule;
//   bob    - reader: the default READ (and owner of an "open" experiment and model of his own);
//   victor - NO_PERMISSIONS on team-a by a rule for his group (viewers);
//   admin  - an admin.
// Every route family is exercised through the real client or raw HTTP: allowed where the level
// allows, refused (403 in MLflow's JSON) where it does not, and each refused request is read back
// from MLflow itself, around the gateway, to prove it was not carried out.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { allPages, expectDenied, expectOk, gatewayCaller, Held } from '../helpers/real-mlflow-acl.ts';
import { MlflowDirect, runMlflowClient } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('access control against the real MLflow');

const PASSWORDS = { admin: 'admin-pw', alice: 'alice-pw', carol: 'carol-pw', bob: 'bob-pw', victor: 'victor-pw' };
type User = keyof typeof PASSWORDS;
const USERS = Object.keys(PASSWORDS) as User[];

const POLICY = {
  groups: { 'team-a': ['alice', 'carol'], viewers: ['victor'] },
  admins: ['admin'],
  rules: [
    { experiment: 'acl-*/team-a/*', groups: ['team-a'], level: 'EDIT' },
    { model: 'acl-*-team-a-*', groups: ['team-a'], level: 'EDIT' },
    { experiment: 'acl-*/team-a/*', groups: ['viewers'], level: 'NO_PERMISSIONS' },
    { model: 'acl-*-team-a-*', groups: ['viewers'], level: 'NO_PERMISSIONS' },
    { experiment: 'acl-*/secret/*', users: ['*'], level: 'NO_PERMISSIONS' },
  ],
  default: 'READ',
};

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

type StepResult = { ok?: unknown; error_code?: string; message?: string };
const MISSING_RUN = '0123456789abcdef0123456789abcdef';
const MISSING_EXPERIMENT = '987654321';


for (const server of servers) {
  const v3 = !server.version.startsWith('2.');
  /** Said in the name of a test that runs on MLflow 3 only, so that its skip on 2.x gives its reason. */
  const only3 = v3 ? '' : ` (skipped: MLflow 3 routes; this server is ${server.version})`;
  const P = `acl-${server.version}`;
  const names = {
    teamA: `${P}/team-a/churn`,
    secret: `${P}/secret/payroll`,
    shared: `${P}/secret/shared-with-bob`,
    open: `${P}/open/notes`,
    model: `${P}-team-a-churn`,
    openModel: `${P}-open-model`,
    closedModel: `${P}-closed-model`,
  };

  describe(`access control on MLflow ${server.version}, read back from MLflow itself`, () => {
    const direct = new MlflowDirect(server.url);
    const held = new Held(direct);
    let gw: TestGateway;
    let certPath: string;
    let as: ReturnType<typeof gatewayCaller>;
    const ids = { teamA: '', secret: '', shared: '', open: '', carolRun: '', secretRun: '', openRun: '' };

    /** The real MLflow client as `user`, one Python process for a batch of calls. */
    async function client(user: User, steps: unknown[], extra: Record<string, string> = {}): Promise<StepResult[]> {
      const run = await runMlflowClient<StepResult[]>(server, 'steps.py', {
        trackingUri: gw.url, certPath, basic: [user, PASSWORDS[user]], extra: { MLFLOW_ENABLE_ASYNC_TRACE_LOGGING: 'false', ...extra },
      }, { steps });
      expect(run.result).toHaveLength(steps.length);
      return run.result;
    }

    function expectRefused(result: StepResult | undefined, what: string): void {
      expect(result, what).toMatchObject({ error_code: 'PERMISSION_DENIED' });
    }

    function expectAllowed(result: StepResult | undefined, what: string): void {
      expect(result?.error_code, `${what}: ${result?.message}`).toBeUndefined();
      expect(result, what).toHaveProperty('ok');
    }

    const api = (user: User, method: string, route: string, params?: unknown) => as(user, method, `/api/2.0/mlflow/${route}`, params);

    beforeAll(async () => {
      gw = await startTestGateway({ upstream: server.url, users: PASSWORDS, policy: POLICY });
      certPath = join(gw.dir, 'certs', 'mlgate.crt');
      as = gatewayCaller(gw, PASSWORDS);
      // The others' resources, made through the gateway by their owners: a hidden experiment (admin),
      // one hidden by the rule but granted to bob, and bob's own experiment and models.
      const create = async (user: User, name: string, tags: { key: string; value: string }[] = []) =>
        expectOk(await api(user, 'POST', 'experiments/create', { name, tags })).json<{ experiment_id: string }>().experiment_id;
      ids.secret = await create('admin', names.secret);
      ids.shared = await create('admin', names.shared, [{ key: 'mlgate.grant.user.bob', value: 'READ' }]);
      ids.open = await create('bob', names.open);
      const newRun = async (user: User, experimentId: string) =>
        expectOk(await api(user, 'POST', 'runs/create', { experiment_id: experimentId, start_time: Date.now() })).json<{ run: { info: { run_id: string } } }>().run.info.run_id;
      ids.secretRun = await newRun('admin', ids.secret);
      ids.openRun = await newRun('bob', ids.open);
      expectOk(await as('admin', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${ids.secret}/${ids.secretRun}/artifacts/salaries.txt`, 'the secret'));
      expectOk(await api('bob', 'POST', 'registered-models/create', { name: names.openModel }));
      expectOk(await api('admin', 'POST', 'registered-models/create', { name: names.closedModel, tags: [{ key: 'mlgate.grant.user.bob', value: 'NO_PERMISSIONS' }] }));
      for (const name of [names.openModel, names.closedModel]) {
        expectOk(await api('admin', 'POST', 'model-versions/create', { name, source: `mlflow-artifacts:/${ids.open}/${ids.openRun}/artifacts/model`, run_id: ids.openRun }));
      }
    });
    afterAll(async () => {
      await gw?.close();
    });

    it('alice creates the team experiment and registered model with the client, and owns both', async () => {
      const [experiment, model] = await client('alice', [
        { call: 'client.create_experiment', args: [names.teamA], save: 'exp' },
        { call: 'client.create_registered_model', args: [names.model], kwargs: { description: 'churn' } },
      ]);
      expectAllowed(experiment, 'create_experiment');
      expectAllowed(model, 'create_registered_model');
      ids.teamA = experiment!.ok as string;
      expect((await held.experiment(ids.teamA)).tags['mlgate.owner']).toBe('alice');
      expect((await held.model(names.model))?.tags['mlgate.owner']).toBe('alice');
    });

    it('carol (EDIT by her group\'s rule) logs a run, artifacts and a model version; the run is hers whatever the client says', async () => {
      const steps = [
        // The client sends the OS login (USER=mallory below) as user_id, and a tag naming mallory.
        { call: 'client.create_run', args: [ids.teamA], kwargs: { tags: { 'mlflow.user': 'mallory', stage: 'dev' }, run_name: 'carol-run' }, save: 'run' },
        { call: 'client.log_metric', args: ['$run.info.run_id', 'loss', 0.5], kwargs: { step: 1 } },
        { call: 'client.log_param', args: ['$run.info.run_id', 'alpha', '0.1'] },
        { call: 'client.set_tag', args: ['$run.info.run_id', 'note', 'ok'] },
        { call: 'client.log_text', args: ['$run.info.run_id', 'carol was here', 'notes/carol.txt'] },
        { call: 'client.set_experiment_tag', args: [ids.teamA, 'stage', 'dev'] },
        { call: 'client.create_model_version', args: [names.model, '$run.info.artifact_uri', '$run.info.run_id'], save: 'version' },
        { call: 'client.set_registered_model_tag', args: [names.model, 'task', 'churn'] },
        { call: 'client.set_model_version_tag', args: [names.model, '1', 'validated', 'yes'] },
        { call: 'client.set_registered_model_alias', args: [names.model, 'champion', '1'] },
        { call: 'client.update_registered_model', args: [names.model], kwargs: { description: 'churn, by carol' } },
        { call: 'client.update_model_version', args: [names.model, '1'], kwargs: { description: 'first' } },
        // What needs MANAGE, or is the gateway's to set: refused.
        { call: 'client.set_tag', args: ['$run.info.run_id', 'mlflow.user', 'mallory'] },
        { call: 'client.delete_run', args: ['$run.info.run_id'] },
        { call: 'client.rename_experiment', args: [ids.teamA, `${names.teamA}-renamed`] },
        { call: 'client.delete_experiment', args: [ids.teamA] },
        { call: 'client.set_experiment_tag', args: [ids.teamA, 'mlgate.grant.user.carol', 'MANAGE'] },
        { call: 'client.delete_registered_model_alias', args: [names.model, 'champion'] },
        { call: 'client.delete_model_version_tag', args: [names.model, '1', 'validated'] },
        { call: 'client.delete_model_version', args: [names.model, '1'] },
        { call: 'client.rename_registered_model', args: [names.model, `${names.model}-renamed`] },
        { call: 'client.delete_registered_model', args: [names.model] },
        { call: 'client.set_registered_model_tag', args: [names.model, 'mlgate.grant.user.carol', 'MANAGE'] },
      ];
      const results = await client('carol', steps, { USER: 'mallory', LOGNAME: 'mallory' });
      const firstRefused = steps.findIndex((step) => step.call === 'client.set_tag' && step.args[1] === 'mlflow.user');
      for (let i = 0; i < firstRefused; i++) expectAllowed(results[i], steps[i]!.call);
      for (let i = firstRefused; i < steps.length; i++) expectRefused(results[i], steps[i]!.call);
      expect(results[firstRefused]!.message).toMatch(/only admins may set or delete the mlflow\.user tag/);
      expect(results[firstRefused + 1]!.message).toContain(`user carol has EDIT on experiment ${ids.teamA}; runs/delete needs MANAGE`);
      const runId = (results[0]!.ok as { info: { run_id: string } }).info.run_id;
      ids.carolRun = runId;

      // The run as MLflow holds it: carol's, with everything she logged, and not deleted.
      const run = await held.run(runId);
      expect(run.userId).toBe('carol');
      expect(run.tags).toMatchObject({ 'mlflow.user': 'carol', stage: 'dev', note: 'ok' });
      expect(run.lifecycle).toBe('active');
      expect(run.metrics).toEqual({ loss: 0.5 });
      expect(run.params).toEqual({ alpha: '0.1' });
      expect(await held.artifacts(`${ids.teamA}/${runId}/artifacts/notes`)).toEqual(['carol.txt']);
      // The experiment: tagged, not renamed, not deleted, no grant carol gave herself.
      const experiment = await held.experiment(ids.teamA);
      expect(experiment).toMatchObject({ name: names.teamA, lifecycle: 'active' });
      expect(experiment.tags).toMatchObject({ stage: 'dev', 'mlgate.owner': 'alice' });
      expect(experiment.tags['mlgate.grant.user.carol']).toBeUndefined();
      // The model: her version, tags, alias and descriptions; nothing deleted or renamed.
      const model = await held.model(names.model);
      expect(model).toMatchObject({ name: names.model, aliases: { champion: '1' }, description: 'churn, by carol' });
      expect(model!.tags).toMatchObject({ task: 'churn', 'mlgate.owner': 'alice' });
      expect(model!.tags['mlgate.grant.user.carol']).toBeUndefined();
      expect(await held.model(`${names.model}-renamed`)).toBeUndefined();
      expect(await held.versions(names.model)).toEqual([{ version: '1', tags: { validated: 'yes' }, stage: 'None', description: 'first' }]);
    });

    it('a run created by raw HTTP with another user_id and mlflow.user tag is recorded as the authenticated user', async () => {
      const created = expectOk(await api('carol', 'POST', 'runs/create', {
        experiment_id: ids.teamA, user_id: 'mallory', start_time: Date.now(), tags: [{ key: 'mlflow.user', value: 'mallory' }],
      })).json<{ run: { info: { run_id: string; user_id: string } } }>();
      expect(created.run.info.user_id).toBe('carol');
      const run = await held.run(created.run.info.run_id);
      expect([run.userId, run.tags['mlflow.user']]).toEqual(['carol', 'carol']);
      // Nor can it be changed afterwards: refused, and still carol's.
      expectDenied(await api('carol', 'POST', 'runs/log-batch', { run_id: created.run.info.run_id, tags: [{ key: 'mlflow.user', value: 'mallory' }] }),
        /only admins may set or delete the mlflow\.user tag/);
      expectDenied(await api('carol', 'POST', 'runs/delete-tag', { run_id: created.run.info.run_id, key: 'mlflow.user' }),
        /only admins may set or delete the mlflow\.user tag/);
      expect((await held.run(created.run.info.run_id)).tags['mlflow.user']).toBe('carol');
    });

    it('bob (READ) reads the team\'s work with the client, and every write he tries is refused and not carried out', async () => {
      const runId = ids.carolRun;
      const before = { run: await held.run(runId), runs: await held.runIds(ids.teamA), experiment: await held.experiment(ids.teamA), model: await held.model(names.model), versions: await held.versions(names.model) };
      const reads = [
        { call: 'client.get_experiment', args: [ids.teamA] },
        { call: 'client.get_experiment_by_name', args: [names.teamA] },
        { call: 'client.get_run', args: [runId] },
        { call: 'client.get_metric_history', args: [runId, 'loss'] },
        { call: 'client.list_artifacts', args: [runId, 'notes'] },
        { call: 'client.search_runs', args: [[ids.teamA]] },
        { call: 'client.get_registered_model', args: [names.model] },
        { call: 'client.get_model_version', args: [names.model, '1'] },
        { call: 'client.get_model_version_by_alias', args: [names.model, 'champion'] },
        { call: 'client.get_model_version_download_uri', args: [names.model, '1'] },
        { call: 'client.get_latest_versions', args: [names.model] },
      ];
      const writes = [
        { call: 'client.log_metric', args: [runId, 'loss', 99] },
        { call: 'client.log_param', args: [runId, 'beta', '1'] },
        { call: 'client.set_tag', args: [runId, 'note', 'bob'] },
        { call: 'client.delete_tag', args: [runId, 'note'] },
        { call: 'client.set_terminated', args: [runId], kwargs: { status: 'FAILED' } },
        { call: 'client.delete_run', args: [runId] },
        { call: 'client.create_run', args: [ids.teamA] },
        { call: 'client.set_experiment_tag', args: [ids.teamA, 'stage', 'bob'] },
        { call: 'client.rename_experiment', args: [ids.teamA, `${names.teamA}-bob`] },
        { call: 'client.delete_experiment', args: [ids.teamA] },
        { call: 'client.create_model_version', args: [names.model, `mlflow-artifacts:/${ids.teamA}/${runId}/artifacts`, runId] },
        { call: 'client.set_registered_model_tag', args: [names.model, 'task', 'bob'] },
        { call: 'client.delete_registered_model_tag', args: [names.model, 'task'] },
        { call: 'client.set_model_version_tag', args: [names.model, '1', 'validated', 'no'] },
        { call: 'client.set_registered_model_alias', args: [names.model, 'bobs', '1'] },
        { call: 'client.update_registered_model', args: [names.model], kwargs: { description: 'bob' } },
        { call: 'client.update_model_version', args: [names.model, '1'], kwargs: { description: 'bob' } },
        { call: 'client.transition_model_version_stage', args: [names.model, '1', 'Production'] },
        { call: 'client.delete_registered_model', args: [names.model] },
      ];
      const results = await client('bob', [...reads, ...writes]);
      reads.forEach((step, i) => expectAllowed(results[i], step.call));
      expect((results[2]!.ok as { info: { run_id: string } }).info.run_id).toBe(runId);
      writes.forEach((step, i) => expectRefused(results[reads.length + i], step.call));
      expect(results[reads.length]!.message).toContain(`user bob has READ on experiment ${ids.teamA}; runs/log-metric needs EDIT`);

      // Nothing changed in MLflow.
      expect(await held.run(runId)).toEqual(before.run);
      expect(await held.runIds(ids.teamA)).toEqual(before.runs);
      expect(await held.experiment(ids.teamA)).toEqual(before.experiment);
      expect(await held.model(names.model)).toEqual(before.model);
      expect(await held.versions(names.model)).toEqual(before.versions);
      expect(await held.model(`${names.model}-bob`)).toBeUndefined();
    });

    it('bob\'s raw writes with real payloads (metrics, batches, inputs, tags) are refused and leave the run as it was', async () => {
      const runId = ids.carolRun;
      const before = await held.run(runId);
      const attempts: [string, unknown][] = [
        ['runs/log-metric', { run_id: runId, key: 'loss', value: 99, timestamp: Date.now(), step: 2 }],
        ['runs/log-metric', { run_uuid: runId, key: 'loss', value: 98, timestamp: Date.now(), step: 3 }],
        ['runs/log-batch', { run_id: runId, metrics: [{ key: 'acc', value: 1, timestamp: Date.now(), step: 0 }], params: [{ key: 'p', value: 'v' }], tags: [{ key: 't', value: 'v' }] }],
        ['runs/log-inputs', { run_id: runId, datasets: [{ dataset: { name: 'd', digest: 'abc', source_type: 'local', source: '{}' } }] }],
        ['runs/update', { run_id: runId, status: 'KILLED', run_name: 'bobs' }],
        ['runs/set-tag', { run_id: runId, key: 'note', value: 'bob' }],
        ['runs/delete', { run_id: runId }],
      ];
      for (const [route, body] of attempts) expectDenied(await api('bob', 'POST', route, body), new RegExp(`^user bob has READ on experiment ${ids.teamA}; ${route} needs (EDIT|MANAGE)$`));
      expect(await held.run(runId)).toEqual(before);
      // Reading is his: the history of several runs at once.
      expect(expectOk(await api('bob', 'GET', 'metrics/get-history-bulk-interval', { run_ids: runId, metric_key: 'loss', max_results: '10' })).json<{ metrics?: unknown[] }>().metrics).toHaveLength(1);
      // The same write as carol goes through (the payloads are valid).
      expectOk(await api('carol', 'POST', 'runs/log-batch', { run_id: runId, metrics: [{ key: 'acc', value: 1, timestamp: Date.now(), step: 0 }] }));
      expect((await held.run(runId)).metrics).toEqual({ loss: 0.5, acc: 1 });
    });

    it('victor (NO_PERMISSIONS by rule) is refused every read and write on team-a, with the answer he gets for things that do not exist', async () => {
      const runId = ids.carolRun;
      /** The refusal of a hidden resource names what the request named, and reads the same for one that does not exist. */
      const same = async (method: string, route: string, hidden: Record<string, unknown>, missing: Record<string, unknown>, label: (p: Record<string, unknown>) => string) => {
        const a = expectDenied(await api('victor', method, route, hidden));
        const b = expectDenied(await api('victor', method, route, missing));
        expect(a, route).toMatch(new RegExp(`^user victor has NO_PERMISSIONS on ${escapeRegExp(label(hidden))} \\(or it does not exist\\); ${route} needs (READ|EDIT|MANAGE)$`));
        expect(b, route).toBe(a.replace(label(hidden), label(missing)));
      };
      const exp = (p: Record<string, unknown>) => `experiment ${String(p.experiment_id)}`;
      const run = (p: Record<string, unknown>) => `run ${String(p.run_id ?? p.run_uuid)}`;
      const model = (p: Record<string, unknown>) => `registered model "${String(p.name)}"`;
      await same('GET', 'experiments/get', { experiment_id: ids.teamA }, { experiment_id: MISSING_EXPERIMENT }, exp);
      await same('POST', 'experiments/set-experiment-tag', { experiment_id: ids.teamA, key: 'k', value: 'v' }, { experiment_id: MISSING_EXPERIMENT, key: 'k', value: 'v' }, exp);
      await same('POST', 'experiments/delete', { experiment_id: ids.teamA }, { experiment_id: MISSING_EXPERIMENT }, exp);
      await same('POST', 'runs/create', { experiment_id: ids.teamA }, { experiment_id: MISSING_EXPERIMENT }, exp);
      await same('GET', 'runs/get', { run_id: runId }, { run_id: MISSING_RUN }, run);
      await same('GET', 'metrics/get-history', { run_id: runId, metric_key: 'loss', max_results: '10' }, { run_id: MISSING_RUN, metric_key: 'loss', max_results: '10' }, run);
      await same('GET', 'artifacts/list', { run_id: runId }, { run_id: MISSING_RUN }, run);
      await same('POST', 'runs/log-metric', { run_id: runId, key: 'x', value: 1, timestamp: 1, step: 0 }, { run_id: MISSING_RUN, key: 'x', value: 1, timestamp: 1, step: 0 }, run);
      await same('GET', 'registered-models/get', { name: names.model }, { name: `${P}-team-a-nothing` }, model);
      await same('GET', 'model-versions/get', { name: names.model, version: '1' }, { name: `${P}-team-a-nothing`, version: '1' }, model);
      await same('GET', 'model-versions/get-download-uri', { name: names.model, version: '1' }, { name: `${P}-team-a-nothing`, version: '1' }, model);
      await same('GET', 'registered-models/alias', { name: names.model, alias: 'champion' }, { name: `${P}-team-a-nothing`, alias: 'champion' }, model);
      await same('POST', 'registered-models/get-latest-versions', { name: names.model }, { name: `${P}-team-a-nothing` }, model);
      await same('POST', 'model-versions/create', { name: names.model, source: 'mlflow-artifacts:/1/x' }, { name: `${P}-team-a-nothing`, source: 'mlflow-artifacts:/1/x' }, model);
      // By name: a hidden experiment and a new name under the same rule read the same.
      const byName = expectDenied(await api('victor', 'GET', 'experiments/get-by-name', { experiment_name: names.teamA }));
      const newName = expectDenied(await api('victor', 'GET', 'experiments/get-by-name', { experiment_name: `${P}/team-a/nothing` }));
      expect(newName).toBe(byName.replace(names.teamA, `${P}/team-a/nothing`));
      // Artifacts: by run (Flask routes) and by proxied path.
      expectDenied(await as('victor', 'GET', '/get-artifact', { run_uuid: runId, path: 'notes/carol.txt' }));
      expectDenied(await as('victor', 'GET', `/api/2.0/mlflow-artifacts/artifacts/${ids.teamA}/${runId}/artifacts/notes/carol.txt`));
      expectDenied(await as('victor', 'GET', '/api/2.0/mlflow-artifacts/artifacts', { path: `${ids.teamA}/${runId}/artifacts` }));
      expectDenied(await as('victor', 'GET', '/model-versions/get-artifact', { name: names.model, version: '1', path: 'notes/carol.txt' }));
      expectDenied(await as('victor', 'GET', '/ajax-api/2.0/mlflow/metrics/get-history-bulk', { run_id: runId, metric_key: 'loss' }));
      expectDenied(await api('victor', 'GET', 'metrics/get-history-bulk-interval', { run_ids: runId, metric_key: 'loss' }));
      expectDenied(await api('victor', 'POST', 'runs/search', { experiment_ids: [ids.teamA] }));

      // The real client gets PERMISSION_DENIED too, for reads and writes, and nothing is written.
      const before = { run: await held.run(runId), experiment: await held.experiment(ids.teamA), model: await held.model(names.model), versions: await held.versions(names.model), runs: await held.runIds(ids.teamA) };
      const results = await client('victor', [
        { call: 'client.get_run', args: [runId] },
        { call: 'client.get_experiment_by_name', args: [names.teamA] },
        { call: 'client.search_runs', args: [[ids.teamA]] },
        { call: 'client.get_registered_model', args: [names.model] },
        { call: 'client.log_metric', args: [runId, 'loss', 7] },
        { call: 'client.set_tag', args: [runId, 'note', 'victor'] },
        { call: 'client.create_run', args: [ids.teamA] },
        { call: 'client.set_registered_model_alias', args: [names.model, 'victors', '1'] },
        { call: 'client.delete_registered_model', args: [names.model] },
      ]);
      results.forEach((result, i) => expectRefused(result, `victor step ${i}`));
      expect(await held.run(runId)).toEqual(before.run);
      expect(await held.experiment(ids.teamA)).toEqual(before.experiment);
      expect(await held.model(names.model)).toEqual(before.model);
      expect(await held.versions(names.model)).toEqual(before.versions);
      expect(await held.runIds(ids.teamA)).toEqual(before.runs);
    });

    it('artifacts: EDIT uploads, READ downloads, and refused uploads, deletes and multipart uploads write nothing', async () => {
      const runId = ids.carolRun;
      const dir = `${ids.teamA}/${runId}/artifacts`;
      // carol (EDIT) uploads through the proxy; bob (READ) reads it by path, by run and through the listing.
      expectOk(await as('carol', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/a.txt`, 'from carol'));
      expect(expectOk(await as('bob', 'GET', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/a.txt`)).text).toBe('from carol');
      expect(expectOk(await as('bob', 'GET', '/get-artifact', { run_uuid: runId, path: 'data/a.txt' })).text).toBe('from carol');
      expect(expectOk(await as('bob', 'GET', '/api/2.0/mlflow-artifacts/artifacts', { path: `${dir}/data` })).json<{ files: { path: string }[] }>().files.map((f) => f.path)).toEqual(['a.txt']);

      // bob (READ) and victor cannot write; carol (EDIT) cannot delete; no one lists the root.
      expectDenied(await as('bob', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/a.txt`, 'from bob'), new RegExp(`^user bob has READ on experiment ${ids.teamA}; .* needs EDIT$`));
      expectDenied(await as('bob', 'PUT', `/ajax-api/2.0/mlflow-artifacts/artifacts/${dir}/data/b.txt`, 'from bob'));
      expectDenied(await as('victor', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/c.txt`, 'from victor'));
      expectDenied(await as('bob', 'POST', `/ajax-api/2.0/mlflow/upload-artifact?run_uuid=${runId}&path=data/d.txt`, 'from bob'));
      expectDenied(await as('bob', 'POST', `/api/2.0/mlflow-artifacts/mpu/create/${dir}/data`, { path: 'e.bin', num_parts: 1 }));
      expectDenied(await as('bob', 'POST', `/api/2.0/mlflow-artifacts/mpu/complete/${dir}/data`, { path: 'e.bin', upload_id: 'x', parts: [] }));
      expectDenied(await as('carol', 'DELETE', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/a.txt`));
      expectDenied(await as('bob', 'DELETE', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/a.txt`));
      expectDenied(await as('carol', 'GET', '/api/2.0/mlflow-artifacts/artifacts'), 'only admins may list the artifact root; give path=<experiment_id>/...');
      expect(await held.artifacts(`${dir}/data`)).toEqual(['a.txt']);
      expect(await held.artifactText(`${dir}/data/a.txt`)).toEqual({ status: 200, text: 'from carol' });

      // alice (MANAGE, owner) may delete it.
      expectOk(await as('alice', 'DELETE', `/api/2.0/mlflow-artifacts/artifacts/${dir}/data/a.txt`));
      expect((await held.artifactText(`${dir}/data/a.txt`)).status).not.toBe(200);

      // The hidden experiment's artifacts: refused to bob by path and by run, and still there.
      const secretDir = `${ids.secret}/${ids.secretRun}/artifacts`;
      expectDenied(await as('bob', 'GET', `/api/2.0/mlflow-artifacts/artifacts/${secretDir}/salaries.txt`), `user bob has NO_PERMISSIONS on experiment ${ids.secret} (or it does not exist); mlflow-artifacts/artifacts/{artifact_path...} needs READ`);
      expectDenied(await as('bob', 'GET', '/get-artifact', { run_uuid: ids.secretRun, path: 'salaries.txt' }));
      expectDenied(await as('carol', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${secretDir}/salaries.txt`, 'overwritten'));
      expect(await held.artifactText(`${secretDir}/salaries.txt`)).toEqual({ status: 200, text: 'the secret' });
      if (v3) expectDenied(await as('victor', 'GET', `/api/2.0/mlflow-artifacts/presigned/${dir}/notes/carol.txt`));
    });

    it('alice (owner, MANAGE) renames, deletes and restores what carol could not; the others\' resources stay closed to her', async () => {
      expectOk(await api('alice', 'POST', 'experiments/update', { experiment_id: ids.teamA, new_name: `${names.teamA}-v2` }));
      expect((await held.experiment(ids.teamA)).name).toBe(`${names.teamA}-v2`);
      expectOk(await api('alice', 'POST', 'experiments/update', { experiment_id: ids.teamA, new_name: names.teamA }));
      const extra = expectOk(await api('carol', 'POST', 'runs/create', { experiment_id: ids.teamA, start_time: Date.now() })).json<{ run: { info: { run_id: string } } }>().run.info.run_id;
      expectOk(await api('alice', 'POST', 'runs/delete', { run_id: extra }));
      expect((await held.run(extra)).lifecycle).toBe('deleted');
      expectOk(await api('alice', 'POST', 'runs/restore', { run_id: extra }));
      expect((await held.run(extra)).lifecycle).toBe('active');
      expectOk(await as('alice', 'DELETE', '/api/2.0/mlflow/registered-models/alias', { name: names.model, alias: 'champion' }));
      expect((await held.model(names.model))!.aliases).toEqual({});
      // The hidden experiment (admin's, NO_PERMISSIONS for everyone by rule): alice cannot touch it.
      expectDenied(await api('alice', 'POST', 'experiments/delete', { experiment_id: ids.secret }),
        `user alice has NO_PERMISSIONS on experiment ${ids.secret} (or it does not exist); experiments/delete needs MANAGE`);
      expectDenied(await api('alice', 'POST', 'runs/set-tag', { run_id: ids.secretRun, key: 'k', value: 'v' }),
        `user alice has NO_PERMISSIONS on run ${ids.secretRun} (or it does not exist); runs/set-tag needs EDIT`);
      expect((await held.experiment(ids.secret)).lifecycle).toBe('active');
      expect((await held.run(ids.secretRun)).tags.k).toBeUndefined();
      // bob's model: READ for alice (default), so no version, tag or delete.
      expectDenied(await api('alice', 'POST', 'registered-models/set-tag', { name: names.openModel, key: 'k', value: 'v' }));
      expectDenied(await as('alice', 'DELETE', '/api/2.0/mlflow/registered-models/delete', { name: names.openModel }));
      expect((await held.model(names.openModel))!.tags.k).toBeUndefined();
    });

    it('searches answer each user exactly the experiments, runs, models and versions MLflow holds that they may read', async () => {
      // What MLflow holds, straight from it.
      const allExperiments = await allPages<{ experiment_id: string; name: string }>((p) => direct.call('POST', '/api/2.0/mlflow/experiments/search', p),
        { filter: `name LIKE '${P}/%'` }, 'experiments', 50);
      expect(allExperiments.map((e) => e.name).sort()).toEqual([names.open, names.secret, names.shared, names.teamA].sort());
      const allModels = await allPages<{ name: string }>((p) => direct.call('GET', '/api/2.0/mlflow/registered-models/search', p), { filter: `name LIKE '${P}-%'` }, 'registered_models', 50);
      expect(allModels.map((m) => m.name).sort()).toEqual([names.closedModel, names.model, names.openModel].sort());
      const allVersions = await allPages<{ name: string; version: string }>((p) => direct.call('GET', '/api/2.0/mlflow/model-versions/search', p), { filter: `name LIKE '${P}-%'` }, 'model_versions', 50);
      expect(allVersions.map((m) => m.name).sort()).toEqual([names.closedModel, names.model, names.openModel].sort());
      const teamRuns = await held.runIds(ids.teamA);
      const activeTeamRuns = (await allPages<{ info: { run_id: string } }>((p) => direct.call('POST', '/api/2.0/mlflow/runs/search', p), { experiment_ids: [ids.teamA] }, 'runs', 50))
        .map((r) => r.info.run_id).sort();
      expect(activeTeamRuns.length).toBeGreaterThanOrEqual(3);
      expect(teamRuns).toEqual(expect.arrayContaining(activeTeamRuns));

      const readableExperiments: Record<User, string[]> = {
        admin: [names.open, names.secret, names.shared, names.teamA],
        alice: [names.open, names.teamA],
        carol: [names.open, names.teamA],
        bob: [names.open, names.shared, names.teamA],
        victor: [names.open],
      };
      const readableModels: Record<User, string[]> = {
        admin: [names.closedModel, names.model, names.openModel],
        alice: [names.closedModel, names.model, names.openModel],
        carol: [names.closedModel, names.model, names.openModel],
        bob: [names.model, names.openModel],
        victor: [names.closedModel, names.openModel],
      };
      for (const user of USERS) {
        const experiments = await allPages<{ name: string }>((p) => api(user, 'POST', 'experiments/search', p), { filter: `name LIKE '${P}/%'` }, 'experiments');
        expect(experiments.map((e) => e.name).sort(), `${user}: experiments`).toEqual(allExperiments.map((e) => e.name).filter((n) => readableExperiments[user].includes(n)).sort());
        const models = await allPages<{ name: string }>((p) => api(user, 'GET', 'registered-models/search', p), { filter: `name LIKE '${P}-%'` }, 'registered_models');
        expect(models.map((m) => m.name).sort(), `${user}: models`).toEqual(allModels.map((m) => m.name).filter((n) => readableModels[user].includes(n)).sort());
        const versions = await allPages<{ name: string; version: string }>((p) => api(user, 'GET', 'model-versions/search', p), { filter: `name LIKE '${P}-%'` }, 'model_versions', 1);
        expect(versions.map((m) => `${m.name}/${m.version}`).sort(), `${user}: versions`)
          .toEqual(allVersions.filter((m) => readableModels[user].includes(m.name)).map((m) => `${m.name}/${m.version}`).sort());
        // Runs: the team's runs for whoever may read the experiment; a list with one unreadable id is refused, not narrowed.
        const runs = await api(user, 'POST', 'runs/search', { experiment_ids: [ids.teamA], max_results: 50 });
        if (readableExperiments[user].includes(names.teamA)) expect(expectOk(runs).json<{ runs: { info: { run_id: string } }[] }>().runs.map((r) => r.info.run_id).sort(), `${user}: runs`).toEqual(activeTeamRuns);
        else expectDenied(runs);
        const mixed = await api(user, 'POST', 'runs/search', { experiment_ids: [ids.open, ids.secret] });
        if (user === 'admin') expectOk(mixed);
        else expectDenied(mixed, `user ${user} has NO_PERMISSIONS on experiment ${ids.secret} (or it does not exist); runs/search needs READ`);
      }

      // The real client pages through the filtered answers to the same result.
      const [experiments, models, versions] = await client('bob', [
        { call: 'mlflow.search_experiments', kwargs: { filter_string: `name LIKE '${P}/%'` } },
        { call: 'mlflow.search_registered_models', kwargs: { filter_string: `name LIKE '${P}-%'` } },
        { call: 'client.search_model_versions', kwargs: { filter_string: `name LIKE '${P}-%'` } },
      ]);
      expect((experiments!.ok as { name: string }[]).map((e) => e.name).sort()).toEqual(readableExperiments.bob.sort());
      expect((models!.ok as { name: string }[]).map((m) => m.name).sort()).toEqual(readableModels.bob.sort());
      const versionItems = versions!.ok as { name: string }[] | { items: { name: string }[] };
      expect([...new Set((Array.isArray(versionItems) ? versionItems : versionItems.items).map((m) => m.name))].sort()).toEqual(readableModels.bob.sort());
    });

    it('victor cannot reach team-a\'s artifacts through a model version of his own whose source points into them', async () => {
      // victor owns this model (MANAGE); /model-versions/get-artifact serves a version's files from its source,
      // and MLflow resolves a models:/ source to that version's own location when the version is created.
      const own = `${P}-victor-model`;
      expectOk(await api('victor', 'POST', 'registered-models/create', { name: own }));
      const hiddenDir = `${ids.teamA}/${ids.carolRun}/artifacts`;
      const refused: [string, string][] = [
        [`mlflow-artifacts:/${hiddenDir}`, `experiment ${ids.teamA}`],
        [`mlflow-artifacts:///${hiddenDir}`, `experiment ${ids.teamA}`],
        [`MLFLOW-ARTIFACTS://127.0.0.1:5000/${hiddenDir}/notes`, `experiment ${ids.teamA}`],
        [`runs:/${ids.carolRun}`, `run ${ids.carolRun}`],
        [`runs:/${ids.carolRun}/notes`, `run ${ids.carolRun}`],
        [`models:/${names.model}/1`, `registered model "${names.model}"`],
        [`models:/${names.model}@champion`, `registered model "${names.model}"`],
        [`models:/${names.model}/latest`, `registered model "${names.model}"`],
      ];
      for (const [source, label] of refused) {
        expectDenied(await api('victor', 'POST', 'model-versions/create', { name: own, source }),
          `user victor has NO_PERMISSIONS on ${label} (or it does not exist); model-versions/create needs READ`);
      }
      // Sources that MLflow would read differently from the gateway are refused outright.
      for (const source of [` mlflow-artifacts:/${hiddenDir}`, `mlflow-artifacts:/${hiddenDir}?x=1`, `mlflow-artifacts:////${hiddenDir}`, 'mlflow-artifacts:/']) {
        const res = await api('victor', 'POST', 'model-versions/create', { name: own, source });
        expect(res.status, `${source}: ${res.text}`).toBe(400);
      }
      // Nothing was registered, so nothing can be read through it.
      expect(await held.versions(own)).toEqual([]);
      expect((await as('victor', 'GET', '/model-versions/get-artifact', { name: own, version: '1', path: 'notes/carol.txt' })).text).not.toContain('carol was here');

      // A source he may read is fine, and its files are served to him.
      expectOk(await as('bob', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${ids.open}/${ids.openRun}/artifacts/model/README`, 'open model'));
      expectOk(await api('victor', 'POST', 'model-versions/create', { name: own, source: `mlflow-artifacts:/${ids.open}/${ids.openRun}/artifacts/model` }));
      expect(expectOk(await as('victor', 'GET', '/model-versions/get-artifact', { name: own, version: '1', path: 'README' })).text).toBe('open model');
      expect((await held.versions(own)).map((v) => v.version)).toEqual(['1']);
    });

    it('traces: carol records one in team-a, bob reads it but cannot change it, victor neither reads it nor reaches it through a trace of his own', async () => {
      /** What MLflow holds about a trace: its tags and status. */
      const heldTrace = async (id: string) => {
        const info = (await direct.api<{ trace_info: { status: string; tags?: { key: string; value: string }[] } }>('GET', `traces/${id}/info`)).trace_info;
        return { status: info.status, tags: Object.fromEntries((info.tags ?? []).map((t) => [t.key, t.value])) };
      };
      const start = async (user: User, experimentId: string) =>
        expectOk(await api(user, 'POST', 'traces', { experiment_id: experimentId, timestamp_ms: Date.now(), request_metadata: [], tags: [] })).json<{ trace_info: { request_id: string } }>().trace_info.request_id;
      const traceId = await start('carol', ids.teamA);
      const location = (await heldTrace(traceId)).tags['mlflow.artifactLocation']!;
      expect(location).toBe(`mlflow-artifacts:/${ids.teamA}/traces/${traceId}/artifacts`);
      expectOk(await as('carol', 'PUT', `/api/2.0/mlflow-artifacts/artifacts/${ids.teamA}/traces/${traceId}/artifacts/traces.json`, JSON.stringify({ spans: [{ name: 'team-a span' }] })));
      expectOk(await as('carol', 'PATCH', `/api/2.0/mlflow/traces/${traceId}/tags`, { key: 'reviewed', value: 'no' }));

      // bob (READ): reads, but no tag, end or delete.
      expect(expectOk(await as('bob', 'GET', '/ajax-api/2.0/mlflow/get-trace-artifact', { request_id: traceId })).text).toContain('team-a span');
      expectOk(await api('bob', 'GET', `traces/${traceId}/info`));
      const before = await heldTrace(traceId);
      expectDenied(await as('bob', 'PATCH', `/api/2.0/mlflow/traces/${traceId}/tags`, { key: 'reviewed', value: 'bob' }), `user bob has READ on experiment ${ids.teamA}; traces/{request_id}/tags needs EDIT`);
      expectDenied(await as('bob', 'DELETE', `/api/2.0/mlflow/traces/${traceId}/tags`, { key: 'reviewed' }));
      expectDenied(await as('bob', 'PATCH', `/api/2.0/mlflow/traces/${traceId}`, { timestamp_ms: Date.now(), status: 'ERROR' }));
      expectDenied(await api('bob', 'POST', 'traces/delete-traces', { experiment_id: ids.teamA, request_ids: [traceId] }));
      expectDenied(await api('carol', 'POST', 'traces/delete-traces', { experiment_id: ids.teamA, request_ids: [traceId] }), `user carol has EDIT on experiment ${ids.teamA}; traces/delete-traces needs MANAGE`);
      expect(await heldTrace(traceId)).toEqual(before);
      expect(before).toMatchObject({ status: 'IN_PROGRESS', tags: { reviewed: 'no' } });

      // victor: the same refusal as for a trace that does not exist, for the data, the info and a search.
      const hidden = expectDenied(await as('victor', 'GET', '/ajax-api/2.0/mlflow/get-trace-artifact', { request_id: traceId }));
      const missing = expectDenied(await as('victor', 'GET', '/ajax-api/2.0/mlflow/get-trace-artifact', { request_id: MISSING_RUN }));
      expect(missing).toBe(hidden.replace(traceId, MISSING_RUN));
      expect(hidden).toBe(`user victor has NO_PERMISSIONS on trace ${traceId} (or it does not exist); get-trace-artifact needs READ`);
      expectDenied(await api('victor', 'GET', `traces/${traceId}/info`));
      expectDenied(await api('victor', 'GET', 'traces', { experiment_ids: ids.teamA }));
      if (v3) {
        expectDenied(await as('victor', 'GET', '/api/3.0/mlflow/traces/get', { trace_id: traceId }));
        expectDenied(await as('victor', 'POST', '/api/3.0/mlflow/traces/search', { locations: [{ type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: ids.teamA } }] }));
        expectDenied(await as('victor', 'GET', '/ajax-api/3.0/mlflow/get-trace-artifact', { request_id: traceId }));
      }

      // His own trace, in an experiment of his own: he may tag it, but not point its data at team-a's
      // (MLflow would serve team-a's trace data as his: get-trace-artifact reads where this tag says).
      const lab = expectOk(await api('victor', 'POST', 'experiments/create', { name: `${P}/victor/lab` })).json<{ experiment_id: string }>().experiment_id;
      const own = await start('victor', lab);
      expectOk(await as('victor', 'PATCH', `/api/2.0/mlflow/traces/${own}/tags`, { key: 'mine', value: 'yes' }));
      const moves: [string, string, unknown][] = [
        ['PATCH', `/api/2.0/mlflow/traces/${own}/tags`, { key: 'mlflow.artifactLocation', value: location }],
        ['PATCH', `/ajax-api/2.0/mlflow/traces/${own}/tags`, { key: 'mlflow.artifactLocation', value: location }],
        ['DELETE', `/api/2.0/mlflow/traces/${own}/tags`, { key: 'mlflow.artifactLocation' }],
        ...(v3 ? [['PATCH', `/api/3.0/mlflow/traces/${own}/tags`, { key: 'mlflow.artifactLocation', value: location }] as [string, string, unknown]] : []),
      ];
      for (const [method, path, body] of moves) {
        expectDenied(await as('victor', method, path, body), 'only admins may set or delete the mlflow.artifactLocation tag: MLflow serves a trace\'s data from the place it names');
      }
      expect((await heldTrace(own)).tags).toEqual({ 'mlflow.artifactLocation': `mlflow-artifacts:/${lab}/traces/${own}/artifacts`, mine: 'yes' });
      expect((await as('victor', 'GET', '/ajax-api/2.0/mlflow/get-trace-artifact', { request_id: own })).text).not.toContain('team-a span');
    });

    it.runIf(v3)(`logged models (3.x): carol logs one in team-a, bob reads but cannot tag or delete it, victor is refused as for a missing one; searches hold exactly the readable ones${only3}`, async () => {
      const create = async (user: User, experimentId: string, name: string) =>
        expectOk(await api(user, 'POST', 'logged-models', { experiment_id: experimentId, name })).json<{ model: { info: { model_id: string } } }>().model.info.model_id;
      const teamModel = await create('carol', ids.teamA, 'team-model');
      const openModel = await create('bob', ids.open, 'open-model');
      const secretModel = await create('admin', ids.secret, 'secret-model');
      const heldModel = async (id: string) => {
        const res = await direct.call('GET', `/api/2.0/mlflow/logged-models/${id}`);
        if (res.status !== 200) return { status: res.status };
        const { info } = res.json<{ model: { info: { status: string; tags?: unknown } } }>().model;
        return { status: res.status, state: info.status, tags: Object.fromEntries(((info.tags as { key: string; value: string }[]) ?? []).map((t) => [t.key, t.value])) };
      };
      expectOk(await as('carol', 'PATCH', `/api/2.0/mlflow/logged-models/${teamModel}/tags`, { tags: [{ key: 'stage', value: 'dev' }] }));
      expectOk(await as('carol', 'POST', `/api/2.0/mlflow/logged-models/${teamModel}/params`, { model_id: teamModel, params: [{ key: 'alpha', value: '1' }] }));
      expectOk(await as('bob', 'GET', `/api/2.0/mlflow/logged-models/${teamModel}`));
      const before = await heldModel(teamModel);
      expect(before).toMatchObject({ status: 200, tags: { stage: 'dev' } });
      expectDenied(await as('bob', 'PATCH', `/api/2.0/mlflow/logged-models/${teamModel}/tags`, { tags: [{ key: 'stage', value: 'bob' }] }), `user bob has READ on experiment ${ids.teamA}; logged-models/{model_id}/tags needs EDIT`);
      expectDenied(await as('bob', 'PATCH', `/api/2.0/mlflow/logged-models/${teamModel}`, { status: 'LOGGED_MODEL_READY' }));
      expectDenied(await as('bob', 'POST', `/api/2.0/mlflow/logged-models/${teamModel}/params`, { model_id: teamModel, params: [{ key: 'beta', value: '2' }] }));
      expectDenied(await as('carol', 'DELETE', `/api/2.0/mlflow/logged-models/${teamModel}/tags/stage`), `user carol has EDIT on experiment ${ids.teamA}; logged-models/{model_id}/tags/{tag_key} needs MANAGE`);
      expectDenied(await as('carol', 'DELETE', `/api/2.0/mlflow/logged-models/${teamModel}`));
      expectDenied(await as('bob', 'POST', '/api/2.0/mlflow/logged-models', { experiment_id: ids.teamA, name: 'bobs' }));
      expect(await heldModel(teamModel)).toEqual(before);
      const hidden = expectDenied(await as('victor', 'GET', `/api/2.0/mlflow/logged-models/${teamModel}`));
      const missing = expectDenied(await as('victor', 'GET', '/api/2.0/mlflow/logged-models/m-00000000000000000000000000000000'));
      expect(missing).toBe(hidden.replace(teamModel, 'm-00000000000000000000000000000000'));
      // alice (owner) may delete a tag and the model itself.
      expectOk(await as('alice', 'DELETE', `/api/2.0/mlflow/logged-models/${teamModel}/tags/stage`));
      expect((await heldModel(teamModel)).tags).not.toHaveProperty('stage');

      // Searches: what MLflow holds in the three experiments, narrowed to what each may read.
      const all = await allPages<{ info: { model_id: string; experiment_id: string } }>((p) => direct.call('POST', '/api/2.0/mlflow/logged-models/search', p),
        { experiment_ids: [ids.teamA, ids.open, ids.secret] }, 'models', 50);
      expect(all.map((m) => m.info.model_id).sort()).toEqual([teamModel, openModel, secretModel].sort());
      const visible: Record<User, string[]> = { admin: [ids.teamA, ids.open, ids.secret], alice: [ids.teamA, ids.open], carol: [ids.teamA, ids.open], bob: [ids.teamA, ids.open], victor: [ids.open] };
      for (const user of USERS) {
        const found = await allPages<{ info: { model_id: string } }>((p) => api(user, 'POST', 'logged-models/search', p), { experiment_ids: visible[user] }, 'models', 1);
        expect(found.map((m) => m.info.model_id).sort(), user).toEqual(all.filter((m) => visible[user].includes(m.info.experiment_id)).map((m) => m.info.model_id).sort());
        if (user !== 'admin') expectDenied(await api(user, 'POST', 'logged-models/search', { experiment_ids: [ids.open, ids.secret] }));
      }
    });

    it.runIf(v3)(`run lineage (3.x): victor cannot link team-a's logged model into a run of his own; carol can link it to hers${only3}`, async () => {
      // MLflow stores any model id in runs/outputs and runs/log-inputs, so only the gateway keeps a
      // hidden model out of another experiment's lineage.
      const model = expectOk(await api('carol', 'POST', 'logged-models', { experiment_id: ids.teamA, name: 'lineage' })).json<{ model: { info: { model_id: string } } }>().model.info.model_id;
      const lab = expectOk(await api('victor', 'POST', 'experiments/create', { name: `${P}/victor/lineage` })).json<{ experiment_id: string }>().experiment_id;
      const run = expectOk(await api('victor', 'POST', 'runs/create', { experiment_id: lab, start_time: Date.now() })).json<{ run: { info: { run_id: string } } }>().run.info.run_id;
      expectDenied(await api('victor', 'POST', 'runs/outputs', { run_id: run, models: [{ model_id: model, step: 0 }] }),
        `user victor has NO_PERMISSIONS on logged model ${model} (or it does not exist); runs/outputs needs READ`);
      expectDenied(await api('victor', 'POST', 'runs/log-inputs', { run_id: run, models: [{ model_id: model }] }));
      const lineage = async (runId: string) => {
        const { run: held } = await direct.api<{ run: { inputs?: { model_inputs?: { model_id: string }[] }; outputs?: { model_outputs?: { model_id: string }[] } } }>('GET', 'runs/get', { run_id: runId });
        return { inputs: (held.inputs?.model_inputs ?? []).map((m) => m.model_id), outputs: (held.outputs?.model_outputs ?? []).map((m) => m.model_id) };
      };
      expect(await lineage(run)).toEqual({ inputs: [], outputs: [] });
      expectOk(await api('carol', 'POST', 'runs/outputs', { run_id: ids.carolRun, models: [{ model_id: model, step: 0 }] }));
      expect((await lineage(ids.carolRun)).outputs).toEqual([model]);
    });

    it.runIf(v3)(`evaluation datasets (3.x): linked to team-a, readable by bob, changed by no one below EDIT, invisible to victor${only3}`, async () => {
      const created = expectOk(await as('carol', 'POST', '/api/3.0/mlflow/datasets/create', { name: `${P}-eval`, experiment_ids: [ids.teamA] }));
      const datasetId = created.json<{ dataset: { dataset_id: string } }>().dataset.dataset_id;
      expectDenied(await as('bob', 'POST', '/api/3.0/mlflow/datasets/create', { name: `${P}-bobs`, experiment_ids: [ids.teamA] }));
      expectOk(await as('bob', 'GET', `/api/3.0/mlflow/datasets/${datasetId}`));
      const heldIds = async () => expectOk(await direct.call('GET', `/api/3.0/mlflow/datasets/${datasetId}/experiment-ids`)).json<{ experiment_ids?: string[] }>().experiment_ids ?? [];
      expectDenied(await as('bob', 'POST', `/api/3.0/mlflow/datasets/${datasetId}/records`, { records: JSON.stringify([{ inputs: { q: 'bob' } }]) }));
      expectDenied(await as('bob', 'POST', `/api/3.0/mlflow/datasets/${datasetId}/add-experiments`, { experiment_ids: [ids.open] }));
      expectDenied(await as('bob', 'DELETE', `/api/3.0/mlflow/datasets/${datasetId}`));
      expectDenied(await as('carol', 'DELETE', `/api/3.0/mlflow/datasets/${datasetId}`), new RegExp(`^user carol has EDIT on experiment ${ids.teamA} \\(dataset ${datasetId}\\); datasets/\\{dataset_id\\} needs MANAGE$`));
      expect(await heldIds()).toEqual([ids.teamA]);
      expectOk(await direct.call('GET', `/api/3.0/mlflow/datasets/${datasetId}`));
      const records = expectOk(await direct.call('GET', `/api/3.0/mlflow/datasets/${datasetId}/records`)).json<{ records?: string }>();
      expect(records.records ?? '[]').not.toContain('bob');
      const hidden = expectDenied(await as('victor', 'GET', `/api/3.0/mlflow/datasets/${datasetId}`));
      const missing = expectDenied(await as('victor', 'GET', '/api/3.0/mlflow/datasets/d-00000000000000000000000000000000'));
      expect(missing).toBe(hidden.replace(datasetId, 'd-00000000000000000000000000000000'));
      expectDenied(await as('victor', 'POST', '/api/3.0/mlflow/datasets/search', { experiment_ids: [ids.teamA] }));
    });

    it.runIf(v3)(`prompts (3.x) are registered models: alice registers one, bob cannot add a version, victor cannot load it${only3}`, async () => {
      const prompt = `${P}-team-a-prompt`.replace(/\./g, '_');
      const [registered] = await client('alice', [{ call: 'mlflow.register_prompt', args: [prompt, 'Hello {{name}}'] }]);
      expectAllowed(registered, 'register_prompt');
      expect((await held.model(prompt))!.tags).toMatchObject({ 'mlgate.owner': 'alice', 'mlflow.prompt.is_prompt': 'true' });
      const [bobs, bobLoads] = await client('bob', [
        { call: 'mlflow.register_prompt', args: [prompt, 'Bye {{name}}'] },
        { call: 'mlflow.load_prompt', args: [`prompts:/${prompt}/1`] },
      ]);
      expectRefused(bobs, 'bob register_prompt');
      expectAllowed(bobLoads, 'bob load_prompt');
      const [victorLoads] = await client('victor', [{ call: 'mlflow.load_prompt', args: [`prompts:/${prompt}/1`] }]);
      expectRefused(victorLoads, 'victor load_prompt');
      // Model-version searches leave prompts out: read the versions themselves.
      expect((await direct.call('GET', '/api/2.0/mlflow/model-versions/get', { name: prompt, version: '1' })).status).toBe(200);
      expect((await direct.call('GET', '/api/2.0/mlflow/model-versions/get', { name: prompt, version: '2' })).status).toBe(404);
    });

    it.runIf(v3)(`experiment tags (3.x delete route): bob cannot delete one, carol can${only3}`, async () => {
      expectDenied(await api('bob', 'POST', 'experiments/delete-experiment-tag', { experiment_id: ids.teamA, key: 'stage' }));
      expect((await held.experiment(ids.teamA)).tags.stage).toBe('dev');
      expectDenied(await api('carol', 'POST', 'experiments/delete-experiment-tag', { experiment_id: ids.teamA, key: 'mlgate.owner' }),
        `user carol has EDIT on experiment ${ids.teamA}; experiments/delete-experiment-tag of the reserved tag "mlgate.owner" needs MANAGE`);
      expect((await held.experiment(ids.teamA)).tags['mlgate.owner']).toBe('alice');
      expectOk(await api('carol', 'POST', 'experiments/delete-experiment-tag', { experiment_id: ids.teamA, key: 'stage' }));
      expect((await held.experiment(ids.teamA)).tags.stage).toBeUndefined();
    });

    it('victor cannot place an experiment of his own inside team-a\'s artifact tree (to write into it through his own runs)', async () => {
      // With it, runs/create gives his run <location>/<run_id>/artifacts, and upload-artifact (checked on
      // his own run) would write there: into team-a's run, which he may not even read.
      const dir = `${ids.teamA}/${ids.carolRun}/artifacts`;
      const before = await held.artifacts(dir);
      for (const location of [`mlflow-artifacts:/${dir}`, `mlflow-artifacts:/${ids.teamA}`]) {
        const name = `${P}/victor/inside-${before.length}-${location.length}`;
        expectDenied(await api('victor', 'POST', 'experiments/create', { name, artifact_location: location }), /^only admins may set artifact_location on experiments\/create/);
        expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: name })).status).toBe(404);
      }
      expect(await held.artifacts(dir)).toEqual(before);
    });

    it('victor cannot tell whether a hidden experiment or model exists by creating or renaming to its name', async () => {
      // MLflow answers RESOURCE_ALREADY_EXISTS for a taken name: below READ, a taken name and a free
      // one under the same rule must get the same refusal, and nothing is created or renamed.
      const lab = expectOk(await api('victor', 'POST', 'experiments/create', { name: `${P}/victor/renames` })).json<{ experiment_id: string }>().experiment_id;
      const ownModel = `${P}-victor-renames`;
      expectOk(await api('victor', 'POST', 'registered-models/create', { name: ownModel }));
      const expMsg = (name: string, route: string) => `user victor has NO_PERMISSIONS on experiment ${JSON.stringify(name)} (or it does not exist); ${route} needs READ`;
      const modelMsg = (name: string, route: string) => `user victor has NO_PERMISSIONS on registered model ${JSON.stringify(name)} (or it does not exist); ${route} needs READ`;
      for (const name of [names.teamA, `${P}/team-a/not-yet`, names.secret]) {
        expectDenied(await api('victor', 'POST', 'experiments/create', { name }), expMsg(name, 'experiments/create'));
        expectDenied(await api('victor', 'POST', 'experiments/update', { experiment_id: lab, new_name: name }), expMsg(name, 'experiments/update'));
      }
      for (const name of [names.model, `${P}-team-a-not-yet`]) {
        expectDenied(await api('victor', 'POST', 'registered-models/create', { name }), modelMsg(name, 'registered-models/create'));
        expectDenied(await api('victor', 'POST', 'registered-models/rename', { name: ownModel, new_name: name }), modelMsg(name, 'registered-models/rename'));
      }
      expect((await held.experiment(lab)).name).toBe(`${P}/victor/renames`);
      expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: `${P}/team-a/not-yet` })).status).toBe(404);
      expect(await held.model(`${P}-team-a-not-yet`)).toBeUndefined();
      expect(await held.model(ownModel)).toBeDefined();
      // A name he may read keeps MLflow's own answers: taken (bob's), or free.
      const taken = await api('victor', 'POST', 'experiments/create', { name: names.open });
      expect([taken.status, taken.json<{ error_code: string }>().error_code]).toEqual([400, 'RESOURCE_ALREADY_EXISTS']);
      expectOk(await api('victor', 'POST', 'registered-models/rename', { name: ownModel, new_name: `${ownModel}-2` }));
      expect(await held.model(`${ownModel}-2`)).toBeDefined();
    });

    it('admin-only routes are refused to the others and pass for admins', async () => {
      expectDenied(await as('alice', 'POST', '/graphql', { query: '{ __typename }' }), 'only admins may call graphql: mlgate cannot tell whose resources it touches');
      expect((await as('admin', 'POST', '/graphql', { query: '{ __typename }' })).status).not.toBe(403);
      expectDenied(await as('carol', 'GET', '/api/2.0/mlflow/users/list'));
      expectDenied(await as('carol', 'GET', '/api/2.0/mlflow/webhooks'));
      if (v3) {
        const hook = await as('carol', 'POST', '/api/2.0/mlflow/webhooks', { name: `${P}-hook`, url: 'https://127.0.0.1:1/hook', events: [{ entity: 'registered_model', action: 'created' }] });
        expectDenied(hook);
        const listed = expectOk(await direct.call('GET', '/api/2.0/mlflow/webhooks')).json<{ webhooks?: { name: string }[] }>();
        expect((listed.webhooks ?? []).map((w) => w.name)).not.toContain(`${P}-hook`);
      }
    });
  });
}
