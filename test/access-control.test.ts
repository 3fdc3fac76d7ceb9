// Per-user authorization (issue 5) through a running gateway, in front of an MLflow-shaped upstream
// (test/helpers/mlflow-tracking-store.ts). Three users as the issue asks, and one more:
//   admin  - an admin (policy `admins`): MANAGE everywhere;
//   eve    - editor: EDIT on "team-a/*" experiments and "team-a-*" models through her group's
//            policy rule, and on experiment "granted" through a grant tag on it;
//   victor - viewer: the default READ;
// and the rule `secret/*` hides those experiments from everyone but admins (NO_PERMISSIONS).
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCaller, type ApiResponse } from './helpers/api-caller.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import type { StoredExperiment, StoredRun } from './helpers/mlflow-tracking-store.ts';

const USERS = { admin: 'admin-password', eve: 'eve-password', victor: 'victor-password' };
const POLICY = {
  groups: { 'team-a': ['eve'], viewers: ['victor'] },
  admins: ['admin'],
  rules: [
    { experiment: 'team-a/*', groups: ['team-a'], level: 'EDIT' },
    { model: 'team-a-*', groups: ['team-a'], level: 'EDIT' },
    { experiment: 'secret/*', users: ['*'], level: 'NO_PERMISSIONS' },
  ],
  default: 'READ',
};

let upstream: MlflowUpstream;
let gw: TestGateway;
let call: ReturnType<typeof apiCaller>;
let teamA: StoredExperiment;
let granted: StoredExperiment;
let secret: StoredExperiment;
let runA: StoredRun;
let runGranted: StoredRun;
let runSecret: StoredRun;
const MISSING_RUN = 'f'.repeat(32);

const PREFIXES = ['/api/2.0', '/ajax-api/2.0'] as const;

beforeAll(async () => {
  upstream = await startMlflowUpstream({ requireJsonContentType: true });
  const { store } = upstream;
  teamA = store.addExperiment('team-a/churn');
  granted = store.addExperiment('granted', [{ key: 'mlgate.grant.user.eve', value: 'EDIT' }]);
  secret = store.addExperiment('secret/payroll');
  runA = store.addRun(teamA.experiment_id, 'eve');
  runGranted = store.addRun(granted.experiment_id, 'eve');
  runSecret = store.addRun(secret.experiment_id, 'admin');
  store.addModel('team-a-model');
  store.addModel('shared-model');
  gw = await startTestGateway({ upstream: upstream.url, users: USERS, policy: POLICY, tls: false });
  call = apiCaller(gw.port, USERS);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

/** Paths outside /api/ and /ajax-api/ answer JSON errors to clients that ask for JSON (these calls do). */
const JSON_ACCEPT = { accept: 'application/json' };

function denied(res: ApiResponse, message: string): void {
  expect(res.status, res.text).toBe(403);
  expect(res.headers['content-type']).toBe('application/json');
  expect(res.json()).toEqual({ error_code: 'PERMISSION_DENIED', message });
}

function ok(res: ApiResponse): void {
  expect(res.status, res.text).toBe(200);
}

/** How many requests reached the upstream since `before` (the gateway's own look-ups included). */
function reachedSince(before: number, path: string): number {
  return upstream.requests.slice(before).filter((r) => r.url.split('?')[0]!.endsWith(path)).length;
}

describe('experiments', () => {
  it.each(PREFIXES)('%s experiments/get: READ for the viewer, a 403 naming level and need on a hidden one', async (prefix) => {
    ok(await call('victor', 'GET', `${prefix}/mlflow/experiments/get?experiment_id=${teamA.experiment_id}`));
    ok(await call('eve', 'GET', `${prefix}/mlflow/experiments/get?experiment_id=${granted.experiment_id}`));
    denied(await call('victor', 'GET', `${prefix}/mlflow/experiments/get?experiment_id=${secret.experiment_id}`),
      `user victor has NO_PERMISSIONS on experiment ${secret.experiment_id} (or it does not exist); experiments/get needs READ`);
    ok(await call('admin', 'GET', `${prefix}/mlflow/experiments/get?experiment_id=${secret.experiment_id}`));
  });

  it('does not tell a user who cannot read it whether an experiment exists: same 403, same message', async () => {
    const hidden = await call('victor', 'GET', `/api/2.0/mlflow/experiments/get?experiment_id=${secret.experiment_id}`);
    const missing = await call('victor', 'GET', '/api/2.0/mlflow/experiments/get?experiment_id=98765');
    expect([hidden.status, missing.status]).toEqual([403, 403]);
    expect(missing.json()).toEqual({ error_code: 'PERMISSION_DENIED', message: 'user victor has NO_PERMISSIONS on experiment 98765 (or it does not exist); experiments/get needs READ' });
    // An admin gets MLflow's own answer.
    expect((await call('admin', 'GET', '/api/2.0/mlflow/experiments/get?experiment_id=98765')).json()).toMatchObject({ error_code: 'RESOURCE_DOES_NOT_EXIST' });
  });

  it('reads a GET\'s parameters where MLflow does: the JSON body when the query string is empty, else the query string', async () => {
    denied(await call('victor', 'GET', '/api/2.0/mlflow/experiments/get', { body: { experiment_id: secret.experiment_id }, headers: { 'content-type': 'text/plain' } }),
      `user victor has NO_PERMISSIONS on experiment ${secret.experiment_id} (or it does not exist); experiments/get needs READ`);
    // A query string wins: MLflow answers the query's experiment and ignores the body (reference §11).
    const res = await call('victor', 'GET', `/api/2.0/mlflow/experiments/get?experiment_id=${teamA.experiment_id}`, { body: { experiment_id: secret.experiment_id } });
    ok(res);
    expect(res.json<{ experiment: { name: string } }>().experiment.name).toBe('team-a/churn');
  });

  it('get-by-name: a hidden name is refused, a new name gets MLflow\'s 404 (mlflow.set_experiment creates on it)', async () => {
    ok(await call('victor', 'GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=team-a%2Fchurn'));
    denied(await call('victor', 'GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=secret%2Fpayroll'),
      'user victor has NO_PERMISSIONS on experiment "secret/payroll" (or it does not exist); experiments/get-by-name needs READ');
    denied(await call('victor', 'GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=secret%2Fnot-yet'),
      'user victor has NO_PERMISSIONS on experiment "secret/not-yet" (or it does not exist); experiments/get-by-name needs READ');
    const fresh = await call('victor', 'GET', '/api/2.0/mlflow/experiments/get-by-name?experiment_name=brand-new');
    expect(fresh.status).toBe(404);
    expect(fresh.json()).toMatchObject({ error_code: 'RESOURCE_DOES_NOT_EXIST' });
  });

  it.each(PREFIXES)('%s set-experiment-tag needs EDIT, update (rename) and delete need MANAGE', async (prefix) => {
    ok(await call('eve', 'POST', `${prefix}/mlflow/experiments/set-experiment-tag`, { body: { experiment_id: teamA.experiment_id, key: 'stage', value: 'dev' } }));
    denied(await call('victor', 'POST', `${prefix}/mlflow/experiments/set-experiment-tag`, { body: { experiment_id: teamA.experiment_id, key: 'stage', value: 'x' } }),
      `user victor has READ on experiment ${teamA.experiment_id}; experiments/set-experiment-tag needs EDIT`);
    denied(await call('eve', 'POST', `${prefix}/mlflow/experiments/update`, { body: { experiment_id: teamA.experiment_id, new_name: 'mine' } }),
      `user eve has EDIT on experiment ${teamA.experiment_id}; experiments/update needs MANAGE`);
    denied(await call('eve', 'POST', `${prefix}/mlflow/experiments/delete`, { body: { experiment_id: granted.experiment_id } }),
      `user eve has EDIT on experiment ${granted.experiment_id}; experiments/delete needs MANAGE`);
  });

  it('the creator of an experiment owns it: the gateway adds mlgate.owner to the create it forwards', async () => {
    const created = await call('victor', 'POST', '/api/2.0/mlflow/experiments/create', { body: { name: 'victor/scratch', tags: [{ key: 'purpose', value: 'demo' }] } });
    ok(created);
    const id = created.json<{ experiment_id: string }>().experiment_id;
    const forwarded = upstream.requests.filter((r) => r.url === '/api/2.0/mlflow/experiments/create').at(-1)!;
    expect(JSON.parse(forwarded.body)).toEqual({ name: 'victor/scratch', tags: [{ key: 'purpose', value: 'demo' }, { key: 'mlgate.owner', value: 'victor' }] });
    expect(forwarded.headers['content-length']).toBe(String(forwarded.raw!.length));
    expect(upstream.store.experiments.get(id)!.tags).toContainEqual({ key: 'mlgate.owner', value: 'victor' });
    // MANAGE: victor may rename, grant (mlgate.* tags) and delete it; eve (READ by default) may not write.
    ok(await call('victor', 'POST', '/api/2.0/mlflow/experiments/update', { body: { experiment_id: id, new_name: 'victor/renamed' } }));
    ok(await call('victor', 'POST', '/api/2.0/mlflow/experiments/set-experiment-tag', { body: { experiment_id: id, key: 'mlgate.grant.user.eve', value: 'EDIT' } }));
    // The grant takes effect at once: the write passed through this gateway and dropped the cached tags.
    ok(await call('eve', 'POST', '/api/2.0/mlflow/experiments/set-experiment-tag', { body: { experiment_id: id, key: 'k', value: 'v' } }));
    denied(await call('eve', 'POST', '/api/2.0/mlflow/experiments/delete', { body: { experiment_id: id } }),
      `user eve has EDIT on experiment ${id}; experiments/delete needs MANAGE`);
    ok(await call('victor', 'POST', '/api/2.0/mlflow/experiments/delete', { body: { experiment_id: id } }));
  });
});

describe('reserved mlgate.* tags', () => {
  it('refuses them in a create body from anyone but an admin', async () => {
    const before = upstream.requests.length;
    denied(await call('eve', 'POST', '/ajax-api/2.0/mlflow/experiments/create', { body: { name: 'team-a/sneaky', tags: [{ key: 'mlgate.owner', value: 'eve' }] } }),
      'tags starting with "mlgate." are reserved: mlgate adds the owner tag itself, and grants are made by MANAGE holders (mlgate grant, /-/permissions); remove "mlgate.owner" from the request');
    expect((await call('victor', 'POST', '/api/2.0/mlflow/registered-models/create', { body: { name: 'sneaky-model', tags: [{ key: 'MLGATE.grant.user.victor', value: 'MANAGE' }] } })).status).toBe(403);
    expect(reachedSince(before, '/create')).toBe(0);
    // An admin may create on someone's behalf: their owner tag is kept, not doubled.
    ok(await call('admin', 'POST', '/api/2.0/mlflow/experiments/create', { body: { name: 'team-a/for-eve', tags: [{ key: 'mlgate.owner', value: 'eve' }] } }));
    expect(JSON.parse(upstream.requests.at(-1)!.body)).toEqual({ name: 'team-a/for-eve', tags: [{ key: 'mlgate.owner', value: 'eve' }] });
  });

  it.each(PREFIXES)('%s: an EDIT holder cannot write or delete them on experiments and models (MANAGE can)', async (prefix) => {
    denied(await call('eve', 'POST', `${prefix}/mlflow/experiments/set-experiment-tag`, { body: { experiment_id: teamA.experiment_id, key: 'mlgate.grant.user.victor', value: 'EDIT' } }),
      `user eve has EDIT on experiment ${teamA.experiment_id}; experiments/set-experiment-tag of the reserved tag "mlgate.grant.user.victor" needs MANAGE`);
    denied(await call('eve', 'POST', `${prefix}/mlflow/experiments/delete-experiment-tag`, { body: { experiment_id: granted.experiment_id, key: 'mlgate.grant.user.eve' } }),
      `user eve has EDIT on experiment ${granted.experiment_id}; experiments/delete-experiment-tag of the reserved tag "mlgate.grant.user.eve" needs MANAGE`);
    denied(await call('eve', 'POST', `${prefix}/mlflow/registered-models/set-tag`, { body: { name: 'team-a-model', key: 'mlgate.owner', value: 'eve' } }),
      'user eve has EDIT on registered model "team-a-model"; registered-models/set-tag of the reserved tag "mlgate.owner" needs MANAGE');
    denied(await call('eve', 'DELETE', `${prefix}/mlflow/registered-models/delete-tag`, { body: { name: 'team-a-model', key: 'mlgate.owner' } }),
      'user eve has EDIT on registered model "team-a-model"; registered-models/delete-tag of the reserved tag "mlgate.owner" needs MANAGE');
    ok(await call('admin', 'POST', `${prefix}/mlflow/registered-models/set-tag`, { body: { name: 'shared-model', key: 'mlgate.grant.group.viewers', value: 'READ' } }));
  });
});

describe('runs, metrics, params', () => {
  it.each(PREFIXES)('%s runs/create needs EDIT on the experiment', async (prefix) => {
    ok(await call('eve', 'POST', `${prefix}/mlflow/runs/create`, { body: { experiment_id: teamA.experiment_id } }));
    ok(await call('eve', 'POST', `${prefix}/mlflow/runs/create`, { body: { experiment_id: granted.experiment_id } }));
    denied(await call('victor', 'POST', `${prefix}/mlflow/runs/create`, { body: { experiment_id: teamA.experiment_id } }),
      `user victor has READ on experiment ${teamA.experiment_id}; runs/create needs EDIT`);
  });

  it.each(PREFIXES)('%s log-metric, log-parameter, set-tag, log-batch, update need EDIT on the run\'s experiment', async (prefix) => {
    for (const [route, body] of [
      ['runs/log-metric', { run_id: runA.info.run_id, key: 'loss', value: 0.5, timestamp: 1, step: 0 }],
      ['runs/log-parameter', { run_id: runA.info.run_id, key: 'lr', value: '0.1' }],
      ['runs/set-tag', { run_id: runA.info.run_id, key: 'note', value: 'x' }],
      ['runs/log-batch', { run_id: runA.info.run_id, metrics: [{ key: 'acc', value: 0.9, timestamp: 1, step: 1 }] }],
      ['runs/update', { run_id: runA.info.run_id, status: 'RUNNING' }],
    ] as const) {
      ok(await call('eve', 'POST', `${prefix}/mlflow/${route}`, { body }));
      denied(await call('victor', 'POST', `${prefix}/mlflow/${route}`, { body }), `user victor has READ on experiment ${teamA.experiment_id}; ${route} needs EDIT`);
    }
    // The legacy run_uuid is read like MLflow reads it.
    denied(await call('victor', 'POST', `${prefix}/mlflow/runs/log-metric`, { body: { run_uuid: runA.info.run_id, key: 'loss', value: 1, timestamp: 1 } }),
      `user victor has READ on experiment ${teamA.experiment_id}; runs/log-metric needs EDIT`);
    ok(await call('eve', 'POST', `${prefix}/mlflow/runs/log-metric`, { body: { run_id: runGranted.info.run_id, key: 'loss', value: 0.4, timestamp: 1, step: 0 } }));
  });

  it('a hidden run and a run that does not exist get the same 403, naming the run and not its experiment', async () => {
    const body = (run: string) => ({ run_id: run, key: 'loss', value: 1, timestamp: 1 });
    denied(await call('eve', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: body(runSecret.info.run_id) }),
      `user eve has NO_PERMISSIONS on run ${runSecret.info.run_id} (or it does not exist); runs/log-metric needs EDIT`);
    denied(await call('eve', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: body(MISSING_RUN) }),
      `user eve has NO_PERMISSIONS on run ${MISSING_RUN} (or it does not exist); runs/log-metric needs EDIT`);
    denied(await call('victor', 'GET', `/ajax-api/2.0/mlflow/runs/get?run_id=${runSecret.info.run_id}`), `user victor has NO_PERMISSIONS on run ${runSecret.info.run_id} (or it does not exist); runs/get needs READ`);
  });

  it('reads: runs/get, metric history and artifact lists need READ; runs/search READ on every experiment listed', async () => {
    ok(await call('victor', 'GET', `/api/2.0/mlflow/runs/get?run_id=${runA.info.run_id}`));
    ok(await call('victor', 'GET', `/ajax-api/2.0/mlflow/metrics/get-history?run_id=${runA.info.run_id}&metric_key=loss`));
    ok(await call('victor', 'GET', `/api/2.0/mlflow/artifacts/list?run_id=${runA.info.run_id}`));
    ok(await call('victor', 'POST', '/api/2.0/mlflow/runs/search', { body: { experiment_ids: [teamA.experiment_id, granted.experiment_id] } }));
    denied(await call('victor', 'POST', '/ajax-api/2.0/mlflow/runs/search', { body: { experiment_ids: [teamA.experiment_id, secret.experiment_id] } }),
      `user victor has NO_PERMISSIONS on experiment ${secret.experiment_id} (or it does not exist); runs/search needs READ`);
  });

  it('deleting a run needs MANAGE', async () => {
    denied(await call('eve', 'POST', '/api/2.0/mlflow/runs/delete', { body: { run_id: runA.info.run_id } }), `user eve has EDIT on experiment ${teamA.experiment_id}; runs/delete needs MANAGE`);
  });

  it('refuses bodies MLflow would read differently: camelCase twins, not JSON', async () => {
    const camel = await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: { run_uuid: runA.info.run_id, runId: runSecret.info.run_id, key: 'x', value: 1, timestamp: 1 } });
    expect(camel.status).toBe(400);
    expect(camel.json()).toEqual({ error_code: 'INVALID_PARAMETER_VALUE', message: 'the body spells run_id as runId; use run_id' });
    const broken = await call('eve', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: '{"run_id": ', headers: { 'content-type': 'application/json' } });
    expect(broken.json()).toEqual({ error_code: 'INVALID_PARAMETER_VALUE', message: 'the request body is not valid JSON' });
  });

  it('costs at most cache hits in a log-metric loop: no upstream look-up after the first', async () => {
    const run = upstream.store.addRun(teamA.experiment_id, 'eve');
    const body = (step: number) => ({ run_id: run.info.run_id, key: 'loss', value: 1 / (step + 1), timestamp: 1, step });
    ok(await call('eve', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: body(0) }));
    const lookups = gw.gateway.authz.resolver.lookups;
    for (let step = 1; step <= 30; step++) ok(await call('eve', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: body(step) }));
    for (let step = 31; step <= 40; step++) ok(await call('eve', 'POST', '/ajax-api/2.0/mlflow/runs/log-batch', { body: { run_id: run.info.run_id, metrics: [body(step)] } }));
    expect(gw.gateway.authz.resolver.lookups).toBe(lookups);
    expect(run.metrics).toHaveLength(41);
  });
});

describe('artifacts', () => {
  const file = (experiment: StoredExperiment, run: StoredRun, name: string) => `${experiment.experiment_id}/${run.info.run_id}/artifacts/${name}`;

  it.each(PREFIXES)('%s proxied uploads need EDIT, downloads READ, deletes MANAGE on the experiment in the path', async (prefix) => {
    const proxy = `${prefix.replace('/2.0', '')}/2.0/mlflow-artifacts/artifacts`;
    const path = file(teamA, runA, `model-${prefix.length}.bin`);
    ok(await call('eve', 'PUT', `${proxy}/${path}`, { body: Buffer.alloc(1000, 1) }));
    expect(upstream.artifacts.get(path)?.bytes).toBe(1000);
    denied(await call('victor', 'PUT', `${proxy}/${path}`, { body: Buffer.alloc(10, 2) }), `user victor has READ on experiment ${teamA.experiment_id}; mlflow-artifacts/artifacts/{artifact_path...} needs EDIT`);
    expect(upstream.artifacts.get(path)?.bytes).toBe(1000);
    ok(await call('victor', 'GET', `${proxy}/${file(teamA, runA, 'generated-10.bin')}`));
    denied(await call('victor', 'GET', `${proxy}/${file(secret, runSecret, 'generated-10.bin')}`),
      `user victor has NO_PERMISSIONS on experiment ${secret.experiment_id} (or it does not exist); mlflow-artifacts/artifacts/{artifact_path...} needs READ`);
    denied(await call('eve', 'DELETE', `${proxy}/${path}`), `user eve has EDIT on experiment ${teamA.experiment_id}; mlflow-artifacts/artifacts/{artifact_path...} needs MANAGE`);
    ok(await call('admin', 'DELETE', `${proxy}/${path}`));
  });

  it('lists with ?path=<experiment>/..., and only admins list the artifact root', async () => {
    ok(await call('victor', 'GET', `/api/2.0/mlflow-artifacts/artifacts?path=${teamA.experiment_id}/${runA.info.run_id}/artifacts`));
    denied(await call('victor', 'GET', `/api/2.0/mlflow-artifacts/artifacts?path=${secret.experiment_id}`), `user victor has NO_PERMISSIONS on experiment ${secret.experiment_id} (or it does not exist); mlflow-artifacts/artifacts needs READ`);
    denied(await call('victor', 'GET', '/api/2.0/mlflow-artifacts/artifacts'), 'only admins may list the artifact root; give path=<experiment_id>/...');
  });

  it('multipart uploads and presigned URLs are checked like the rest', async () => {
    const dir = `${teamA.experiment_id}/${runA.info.run_id}/artifacts`;
    denied(await call('victor', 'POST', `/api/2.0/mlflow-artifacts/mpu/create/${dir}`, { body: { path: 'big.bin', num_parts: 2 } }),
      `user victor has READ on experiment ${teamA.experiment_id}; mlflow-artifacts/mpu/create/{artifact_path...} needs EDIT`);
    expect((await call('eve', 'POST', `/ajax-api/2.0/mlflow-artifacts/mpu/create/${dir}`, { body: { path: 'big.bin', num_parts: 2 } })).status).not.toBe(403);
    denied(await call('victor', 'GET', `/api/2.0/mlflow-artifacts/presigned/${file(secret, runSecret, 'x.bin')}`),
      `user victor has NO_PERMISSIONS on experiment ${secret.experiment_id} (or it does not exist); mlflow-artifacts/presigned/{artifact_path...} needs READ`);
  });

  it('/get-artifact checks the run it names', async () => {
    denied(await call('victor', 'GET', `/get-artifact?run_id=${runSecret.info.run_id}&path=model.pkl`, { headers: JSON_ACCEPT }), `user victor has NO_PERMISSIONS on run ${runSecret.info.run_id} (or it does not exist); get-artifact needs READ`);
  });
});

describe('model registry', () => {
  it('the creator owns a registered model; READ reads, EDIT writes versions and tags, MANAGE deletes', async () => {
    ok(await call('victor', 'POST', '/api/2.0/mlflow/registered-models/create', { body: { name: 'victor-model' } }));
    expect(upstream.store.models.get('victor-model')!.tags).toEqual([{ key: 'mlgate.owner', value: 'victor' }]);
    ok(await call('victor', 'POST', '/ajax-api/2.0/mlflow/registered-models/set-tag', { body: { name: 'victor-model', key: 'mlgate.grant.user.eve', value: 'READ' } }));

    ok(await call('victor', 'GET', '/api/2.0/mlflow/registered-models/get?name=team-a-model'));
    denied(await call('victor', 'POST', '/api/2.0/mlflow/registered-models/set-tag', { body: { name: 'team-a-model', key: 'k', value: 'v' } }),
      'user victor has READ on registered model "team-a-model"; registered-models/set-tag needs EDIT');
    ok(await call('eve', 'POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'team-a-model', source: `mlflow-artifacts:/${teamA.experiment_id}/x`, run_id: runA.info.run_id } }));
    denied(await call('victor', 'POST', '/ajax-api/2.0/mlflow/model-versions/create', { body: { name: 'team-a-model', source: 'x' } }),
      'user victor has READ on registered model "team-a-model"; model-versions/create needs EDIT');
    // The source run must be readable too.
    denied(await call('eve', 'POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'team-a-model', source: 'x', run_id: runSecret.info.run_id } }),
      `user eve has NO_PERMISSIONS on run ${runSecret.info.run_id} (or it does not exist); model-versions/create needs READ`);
    ok(await call('victor', 'GET', '/api/2.0/mlflow/model-versions/get?name=team-a-model&version=1'));
    denied(await call('eve', 'DELETE', '/api/2.0/mlflow/model-versions/delete', { body: { name: 'team-a-model', version: '1' } }),
      'user eve has EDIT on registered model "team-a-model"; model-versions/delete needs MANAGE');
  });

  it('DELETE acts on the JSON body whatever the Content-Type, and so does the check (reference §11)', async () => {
    const res = await call('victor', 'DELETE', '/api/2.0/mlflow/registered-models/delete?name=victor-model', {
      body: JSON.stringify({ name: 'team-a-model' }), headers: { 'content-type': 'text/plain' },
    });
    denied(res, 'user victor has READ on registered model "team-a-model"; registered-models/delete needs MANAGE');
    expect(upstream.store.models.has('team-a-model')).toBe(true);
  });

  it('renaming a model needs MANAGE; the cached tags follow the new name', async () => {
    ok(await call('victor', 'POST', '/api/2.0/mlflow/registered-models/create', { body: { name: 'victor-model-2' } }));
    ok(await call('victor', 'GET', '/api/2.0/mlflow/registered-models/get?name=victor-model-2'));
    ok(await call('victor', 'POST', '/api/2.0/mlflow/registered-models/rename', { body: { name: 'victor-model-2', new_name: 'victor-model-3' } }));
    ok(await call('victor', 'DELETE', '/api/2.0/mlflow/registered-models/delete', { body: { name: 'victor-model-3' } }));
    denied(await call('eve', 'POST', '/api/2.0/mlflow/registered-models/rename', { body: { name: 'team-a-model', new_name: 'mine' } }),
      'user eve has EDIT on registered model "team-a-model"; registered-models/rename needs MANAGE');
  });
});

describe('traces and logged models (MLflow 3)', () => {
  it('a trace is checked on its experiment', async () => {
    // The client chooses the trace id (MLflow would move an existing trace of that id: checked too).
    let traces = 0;
    const start = (experiment: StoredExperiment) => ({ trace: { trace_info: { trace_id: `tr-${String(++traces).padStart(32, '0')}`, trace_location: { type: 'MLFLOW_EXPERIMENT', mlflow_experiment: { experiment_id: experiment.experiment_id } } } } });
    const created = await call('eve', 'POST', '/api/3.0/mlflow/traces', { body: start(teamA) });
    ok(created);
    denied(await call('victor', 'POST', '/ajax-api/3.0/mlflow/traces', { body: start(teamA) }), `user victor has READ on experiment ${teamA.experiment_id}; traces needs EDIT`);
    const traceId = created.json<{ trace: { trace_info: { trace_id: string } } }>().trace.trace_info.trace_id;
    ok(await call('victor', 'GET', `/api/3.0/mlflow/traces/${traceId}`));
    const hidden = await call('admin', 'POST', '/api/3.0/mlflow/traces', { body: start(secret) });
    const hiddenId = hidden.json<{ trace: { trace_info: { trace_id: string } } }>().trace.trace_info.trace_id;
    denied(await call('victor', 'GET', `/ajax-api/3.0/mlflow/traces/${hiddenId}`), `user victor has NO_PERMISSIONS on trace ${hiddenId} (or it does not exist); traces/{trace_id} needs READ`);
    denied(await call('eve', 'PATCH', `/api/3.0/mlflow/traces/${traceId}/tags`, { body: { key: 'k', value: 'v' } }).then(async () => call('victor', 'PATCH', `/api/3.0/mlflow/traces/${traceId}/tags`, { body: { key: 'k', value: 'v' } })),
      `user victor has READ on experiment ${teamA.experiment_id}; traces/{trace_id}/tags needs EDIT`);
    // The tag MLflow reads a trace's data location from is for admins only, on every tag route.
    for (const [method, path] of [['PATCH', `/api/3.0/mlflow/traces/${traceId}/tags`], ['PATCH', `/ajax-api/2.0/mlflow/traces/${traceId}/tags`], ['DELETE', `/api/2.0/mlflow/traces/${traceId}/tags`]] as const) {
      denied(await call('eve', method, path, { body: { key: 'mlflow.artifactLocation', value: `mlflow-artifacts:/${secret.experiment_id}/traces/x/artifacts` } }),
        'only admins may set or delete the mlflow.artifactLocation tag: MLflow serves a trace\'s data from the place it names');
    }
  });

  it('a logged model is checked on its experiment', async () => {
    const created = await call('eve', 'POST', '/api/2.0/mlflow/logged-models', { body: { experiment_id: teamA.experiment_id, name: 'clf' } });
    ok(created);
    const id = created.json<{ model: { info: { model_id: string } } }>().model.info.model_id;
    ok(await call('victor', 'GET', `/ajax-api/2.0/mlflow/logged-models/${id}`));
    denied(await call('victor', 'DELETE', `/api/2.0/mlflow/logged-models/${id}`), `user victor has READ on experiment ${teamA.experiment_id}; logged-models/{model_id} needs MANAGE`);
    denied(await call('victor', 'POST', '/api/2.0/mlflow/logged-models', { body: { experiment_id: teamA.experiment_id } }), `user victor has READ on experiment ${teamA.experiment_id}; logged-models needs EDIT`);
  });
});

describe('routes without a resource', () => {
  it('an API route mlgate does not know is refused for non-admins, naming it; admins get through', async () => {
    const before = upstream.requests.length;
    denied(await call('eve', 'POST', '/api/2.0/mlflow/runs/brand-new-route', { body: {} }),
      'mlgate does not know the route POST /api/2.0/mlflow/runs/brand-new-route; only admins may call routes it does not know');
    denied(await call('eve', 'GET', '/api/4.0/mlflow/traces'), 'mlgate does not know the route GET /api/4.0/mlflow/traces; only admins may call routes it does not know');
    denied(await call('eve', 'GET', '/static-prefix/ajax-api/2.0/mlflow/runs/get?run_id=x', { headers: JSON_ACCEPT }), 'mlgate does not know the route GET /static-prefix/ajax-api/2.0/mlflow/runs/get; only admins may call routes it does not know');
    expect(upstream.requests.length).toBe(before);
    expect((await call('admin', 'POST', '/api/2.0/mlflow/runs/brand-new-route', { body: {} })).status).toBe(200);
  });

  it('admin-only routes (GraphQL, webhooks, the AI gateway) and blocked ones', async () => {
    denied(await call('eve', 'POST', '/graphql', { body: { query: '{ __typename }' }, headers: JSON_ACCEPT }), 'only admins may call graphql: mlgate cannot tell whose resources it touches');
    denied(await call('victor', 'GET', '/ajax-api/2.0/mlflow/webhooks'), 'only admins may call webhooks: mlgate cannot tell whose resources it touches');
    expect((await call('admin', 'POST', '/graphql', { body: { query: '{ __typename }' } })).status).not.toBe(403);
    denied(await call('admin', 'POST', '/ajax-api/3.0/mlflow/assistant/message', { body: {} }),
      'assistant/{rest...} is blocked for everyone: MLflow trusts its callers there as local, and behind mlgate every caller looks local');
  });

  it('the UI passes for every signed-in user', async () => {
    ok(await call('victor', 'GET', '/'));
  });
});

describe('search results', () => {
  it.each(PREFIXES)('%s experiments/search leaves out what the user cannot read, admins see all', async (prefix) => {
    const names = async (user: string) => {
      const res = await call(user, 'POST', `${prefix}/mlflow/experiments/search`, { body: { max_results: 1000 } });
      ok(res);
      expect(Number(res.headers['content-length'])).toBe(Buffer.byteLength(res.text));
      return res.json<{ experiments?: { name: string }[] }>().experiments?.map((e) => e.name) ?? [];
    };
    expect(await names('victor')).toContain('team-a/churn');
    expect(await names('victor')).not.toContain('secret/payroll');
    expect(await names('eve')).not.toContain('secret/payroll');
    expect(await names('admin')).toContain('secret/payroll');
  });

  it('keeps next_page_token, so the client pages on past a page emptied by the filter', async () => {
    const res = await call('victor', 'GET', '/api/2.0/mlflow/experiments/search?max_results=1');
    ok(res);
    expect(res.json()).toHaveProperty('next_page_token');
  });

  it('registered-model and model-version searches are filtered by the model', async () => {
    upstream.store.addModel('hidden-model', [{ key: 'mlgate.grant.user.victor', value: 'NO_PERMISSIONS' }]);
    const models = await call('victor', 'GET', '/api/2.0/mlflow/registered-models/search?max_results=100');
    ok(models);
    const listed = models.json<{ registered_models: { name: string }[] }>().registered_models.map((m) => m.name);
    expect(listed).toContain('team-a-model');
    expect(listed).not.toContain('hidden-model');
    ok(await call('admin', 'POST', '/api/2.0/mlflow/model-versions/create', { body: { name: 'hidden-model', source: 'x' } }));
    const versions = await call('victor', 'GET', '/ajax-api/2.0/mlflow/model-versions/search?max_results=100');
    ok(versions);
    expect(versions.json<{ model_versions?: { name: string }[] }>().model_versions?.map((v) => v.name) ?? []).not.toContain('hidden-model');
  });
});

describe('request targets that could be read two ways', () => {
  const tricks: [string, string][] = [
    ['an encoded slash in an artifact path', `/api/2.0/mlflow-artifacts/artifacts/${1}%2F..%2F2/x.bin`],
    ['an encoded dot-dot segment', '/api/2.0/mlflow-artifacts/artifacts/1/%2e%2e/2/x.bin'],
    ['a raw dot-dot segment', '/api/2.0/mlflow-artifacts/artifacts/1/../2/x.bin'],
    ['a dot-dot in the middle of an API path', '/api/2.0/mlflow/runs/../experiments/get?experiment_id=1'],
    ['a double slash', '/api/2.0//mlflow/experiments/get?experiment_id=1'],
    ['a double-encoded escape', '/api/2.0/mlflow-artifacts/artifacts/%2531/x/artifacts/y.bin'],
    ['an overlong UTF-8 dot', '/api/2.0/mlflow-artifacts/artifacts/1/%c0%ae%c0%ae/2/x.bin'],
    ['a backslash', '/api/2.0/mlflow-artifacts/artifacts/1/..\\2/x.bin'],
    ['an encoded backslash', '/api/2.0/mlflow-artifacts/artifacts/1/%5c/x.bin'],
    ['an encoded NUL', '/api/2.0/mlflow-artifacts/artifacts/1/x%00.bin'],
  ];

  it.each(tricks)('refuses %s with 400, before the upstream sees anything', async (_name, target) => {
    const before = upstream.requests.length;
    for (const user of ['victor', 'admin']) {
      const res = await call(user, 'PUT', target, { body: 'x' });
      expect(res.status, res.text).toBe(400);
      expect(res.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE' });
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('refuses an artifact path that names no experiment, or a path parameter that is unsafe', async () => {
    const noExperiment = await call('eve', 'PUT', '/api/2.0/mlflow-artifacts/artifacts/team-a/x.bin', { body: 'x' });
    expect(noExperiment.json()).toEqual({ error_code: 'INVALID_PARAMETER_VALUE', message: 'artifact path does not start with an experiment id (<digits>/...)' });
    const unsafe = await call('victor', 'GET', `/get-artifact?run_id=${runA.info.run_id}&path=../../etc/passwd`);
    expect(unsafe.status).toBe(400);
  });
});

describe('the bytes forwarded are the bytes checked', () => {
  it('forwards a checked body byte for byte, and a chunked one with its exact length', async () => {
    const text = `{ "run_id" : "${runA.info.run_id}",\n  "key": "loss", "value": 0.25, "timestamp": 7, "step": 3 }   `;
    ok(await call('eve', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: text, headers: { 'content-type': 'application/json; charset=utf-8' } }));
    const plain = upstream.requests.filter((r) => r.url === '/api/2.0/mlflow/runs/log-metric').at(-1)!;
    expect(plain.raw!.equals(Buffer.from(text))).toBe(true);

    ok(await call('eve', 'POST', '/ajax-api/2.0/mlflow/runs/log-metric', { body: text, chunked: true, headers: { 'content-type': 'application/json' } }));
    const chunked = upstream.requests.filter((r) => r.url === '/ajax-api/2.0/mlflow/runs/log-metric').at(-1)!;
    expect(chunked.raw!.equals(Buffer.from(text))).toBe(true);
    expect(chunked.headers['content-length']).toBe(String(Buffer.byteLength(text)));
    expect(chunked.headers['transfer-encoding']).toBeUndefined();
  });

  it('a double-encoded JSON body (a string holding JSON, as old clients send) is read as MLflow reads it', async () => {
    const inner = JSON.stringify({ run_id: runA.info.run_id, key: 'x', value: 1, timestamp: 1 });
    denied(await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: JSON.stringify(inner), headers: { 'content-type': 'application/json' } }),
      `user victor has READ on experiment ${teamA.experiment_id}; runs/log-metric needs EDIT`);
  });

  it('refuses a checked body over authz.maxCheckedBody with 413', async () => {
    const small = await startTestGateway({ upstream: upstream.url, users: USERS, policy: POLICY, tls: false, config: { authz: { maxCheckedBody: '1KiB' } } });
    try {
      const res = await apiCaller(small.port, USERS)('eve', 'POST', '/api/2.0/mlflow/runs/log-batch', { body: { run_id: runA.info.run_id, params: [{ key: 'p', value: 'x'.repeat(2000) }] } });
      expect(res.status).toBe(413);
      expect(res.json()).toEqual({ error_code: 'RESOURCE_EXHAUSTED', message: 'request body larger than 1024 bytes, the most mlgate reads to check runs/log-batch (authz.maxCheckedBody)' });
    } finally {
      await small.close();
    }
  });
});

describe('the access log', () => {
  it('records the resource and the decision of each API call', async () => {
    await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body: { run_id: runA.info.run_id, key: 'x', value: 1, timestamp: 1 }, headers: { 'x-request-id': 'authz-deny-1' } });
    await call('eve', 'GET', `/api/2.0/mlflow/experiments/get?experiment_id=${teamA.experiment_id}`, { headers: { 'x-request-id': 'authz-allow-1' } });
    await call('eve', 'GET', '/api/2.0/mlflow/registered-models/get?name=team-a-model', { headers: { 'x-request-id': 'authz-allow-2' } });
    expect(await waitForLog(gw.logs, (l) => l.reqId === 'authz-deny-1')).toMatchObject({ status: 403, user: 'victor', resource: `experiment:${teamA.experiment_id}`, decision: 'deny' });
    expect(await waitForLog(gw.logs, (l) => l.reqId === 'authz-allow-1')).toMatchObject({ status: 200, resource: `experiment:${teamA.experiment_id}`, decision: 'allow' });
    expect(await waitForLog(gw.logs, (l) => l.reqId === 'authz-allow-2')).toMatchObject({ status: 200, resource: 'model:team-a-model', decision: 'allow' });
  });
});

describe('policy file reload', () => {
  it('applies an edited policy without a restart, and keeps it when an edit is broken', async () => {
    const body = { run_id: runA.info.run_id, key: 'loss', value: 1, timestamp: 1 };
    denied(await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body }), `user victor has READ on experiment ${teamA.experiment_id}; runs/log-metric needs EDIT`);
    const widened = { ...POLICY, rules: [{ experiment: 'team-a/*', groups: ['team-a', 'viewers'], level: 'EDIT' }, ...POLICY.rules] };
    writeFileSync(gw.policyPath, stringify(widened));
    await waitForLog(gw.logs, (l) => l.msg === 'policy loaded' && l.rules === 4);
    ok(await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body }));

    const broken = stringify({ ...widened, default: 'WRITE' });
    writeFileSync(gw.policyPath, broken);
    const problem = await waitForLog(gw.logs, (l) => l.msg === 'policy file has problems; keeping the policy in force');
    const line = broken.split('\n').indexOf('default: WRITE') + 1;
    expect(problem.problems).toEqual([`${gw.policyPath}:${line}: default: must be one of NO_PERMISSIONS, READ, EDIT, MANAGE, got "WRITE"`]);
    ok(await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body }));

    const seen = gw.logs.length;
    writeFileSync(gw.policyPath, stringify(POLICY));
    await waitForLog(gw.logs, (l) => l.msg === 'policy loaded' && l.rules === 3 && gw.logs.indexOf(l) >= seen);
    denied(await call('victor', 'POST', '/api/2.0/mlflow/runs/log-metric', { body }), `user victor has READ on experiment ${teamA.experiment_id}; runs/log-metric needs EDIT`);
  });
});

describe('groups from a JWT', () => {
  it('count like the policy file\'s groups; a JWT naming "admin" is not the built-in admin', async () => {
    const { SignJWT } = await import('jose');
    const secretKey = 'a-shared-secret-that-is-long-enough-1234';
    const jwtGw = await startTestGateway({
      upstream: upstream.url, users: USERS, tls: false,
      policy: { admins: ['@platform'], rules: [{ experiment: 'team-a/*', groups: ['ml-team'], level: 'EDIT' }] },
      config: { jwt: { secret: secretKey, audience: ['mlflow'] } },
    });
    try {
      const token = (sub: string, groups: string[]) => new SignJWT({ sub, groups, aud: 'mlflow' })
        .setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(secretKey));
      const asJwt = async (sub: string, groups: string[], target: string, body: unknown) =>
        apiCaller(jwtGw.port, {})(sub, 'POST', target, { body, headers: { authorization: `Bearer ${await token(sub, groups)}` } });
      const metric = { run_id: runA.info.run_id, key: 'jwt', value: 1, timestamp: 1 };
      ok(await asJwt('jo', ['ml-team'], '/api/2.0/mlflow/runs/log-metric', metric));
      denied(await asJwt('kim', ['other'], '/api/2.0/mlflow/runs/log-metric', metric), `user kim has READ on experiment ${teamA.experiment_id}; runs/log-metric needs EDIT`);
      ok(await asJwt('pat', ['platform'], '/api/2.0/mlflow/runs/delete', { run_id: upstream.store.addRun(secret.experiment_id).info.run_id }));
    } finally {
      await jwtGw.close();
    }
    // Without a policy file, only the htpasswd user admin is an admin.
    const builtinGw = await startTestGateway({ upstream: upstream.url, users: USERS, tls: false, config: { jwt: { secret: secretKey, audience: ['mlflow'] } } });
    try {
      const jwt = await new SignJWT({ sub: 'admin', aud: 'mlflow' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('5m').sign(new TextEncoder().encode(secretKey));
      const target = `/api/2.0/mlflow/experiments/delete`;
      const body = { experiment_id: granted.experiment_id };
      denied(await apiCaller(builtinGw.port, {})('admin', 'POST', target, { body, headers: { authorization: `Bearer ${jwt}` } }),
        `user admin has READ on experiment ${granted.experiment_id}; experiments/delete needs MANAGE`);
      expect((await apiCaller(builtinGw.port, USERS)('admin', 'GET', '/api/2.0/mlflow/graphql')).status).not.toBe(403);
    } finally {
      await builtinGw.close();
    }
  });
});

describe('WebSocket upgrades', () => {
  it('are refused on MLflow\'s routes for non-admins (MLflow has no WebSocket route; an upgrade would be a GET)', async () => {
    const { default: WebSocket } = await import('ws');
    const statusOf = (user: string, path: string) => new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`, { headers: { authorization: `Basic ${Buffer.from(`${user}:${USERS[user as keyof typeof USERS]}`).toString('base64')}` } });
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); res.resume(); });
      ws.on('open', () => { ws.close(); resolve(101); });
      ws.on('error', reject);
    });
    expect(await statusOf('victor', `/api/2.0/mlflow/runs/get?run_id=${runSecret.info.run_id}`)).toBe(403);
    expect(await statusOf('victor', `/get-artifact?run_id=${runSecret.info.run_id}`)).toBe(403);
    expect(await statusOf('victor', '/api/2.0/mlflow-artifacts/artifacts/1/..%2F2')).toBe(400);
    expect(await statusOf('victor', '/ws/echo')).toBe(101);
    expect(await statusOf('admin', '/api/2.0/mlflow/runs/get')).toBe(101);
  });
});
