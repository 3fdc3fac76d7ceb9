// Who did it (issue 5, item 5): runs are recorded under the authenticated user, whatever the client
// claims (the MLflow client sends the OS login, so runs from a shared notebook host all say
// "jovyan"), and only admins can change that afterwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCaller, type ApiResponse } from './helpers/api-caller.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import type { StoredExperiment, StoredRun } from './helpers/mlflow-tracking-store.ts';

const USERS = { admin: 'admin-password', eve: 'eve-password' };

let upstream: MlflowUpstream;
let gw: TestGateway;
let call: ReturnType<typeof apiCaller>;
let experiment: StoredExperiment;

beforeAll(async () => {
  upstream = await startMlflowUpstream({ requireJsonContentType: true });
  experiment = upstream.store.addExperiment('team-a/attribution');
  gw = await startTestGateway({
    upstream: upstream.url, users: USERS, tls: false,
    policy: { admins: ['admin'], rules: [{ experiment: 'team-a/*', users: ['eve'], level: 'EDIT' }] },
  });
  call = apiCaller(gw.port, USERS);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

function createdRun(res: ApiResponse): StoredRun {
  expect(res.status, res.text).toBe(200);
  return upstream.store.runs.get(res.json<{ run: { info: { run_id: string } } }>().run.info.run_id)!;
}

/** What the MLflow Python client sends from a notebook server: its OS login in both places. */
const CLIENT_CLAIMS = (experimentId: string) => ({
  experiment_id: experimentId,
  user_id: 'jovyan',
  start_time: 1700000000000,
  tags: [{ key: 'mlflow.user', value: 'jovyan' }, { key: 'mlflow.source.name', value: 'train.ipynb' }],
});

describe('runs/create', () => {
  it.each(['/api/2.0', '/ajax-api/2.0'])('%s: user_id and the mlflow.user tag are the authenticated user, other tags as sent', async (prefix) => {
    const run = createdRun(await call('eve', 'POST', `${prefix}/mlflow/runs/create`, { body: CLIENT_CLAIMS(experiment.experiment_id) }));
    expect(run.info.user_id).toBe('eve');
    expect(run.tags.filter((tag) => tag.key === 'mlflow.user')).toEqual([{ key: 'mlflow.user', value: 'eve' }]);
    expect(run.tags).toContainEqual({ key: 'mlflow.source.name', value: 'train.ipynb' });
    expect(run.info.start_time).toBe(1700000000000);
    // What reached MLflow is the rewritten body, framed by its own length.
    const forwarded = upstream.requests.filter((r) => r.url === `${prefix}/mlflow/runs/create`).at(-1)!;
    expect(JSON.parse(forwarded.body)).toEqual({
      experiment_id: experiment.experiment_id, user_id: 'eve', start_time: 1700000000000,
      tags: [{ key: 'mlflow.source.name', value: 'train.ipynb' }, { key: 'mlflow.user', value: 'eve' }],
    });
    expect(Number(forwarded.headers['content-length'])).toBe(forwarded.raw!.length);
  });

  it('stamps a run whose client sent no user at all, and drops protobuf\'s camelCase userId', async () => {
    const run = createdRun(await call('eve', 'POST', '/api/2.0/mlflow/runs/create', { body: { experiment_id: experiment.experiment_id, userId: 'root' } }));
    expect(run.info.user_id).toBe('eve');
    expect(JSON.parse(upstream.requests.at(-1)!.body)).not.toHaveProperty('userId');
  });

  it('stamps admins\' runs too, and MLflow answers runs/get with the stamped user', async () => {
    const run = createdRun(await call('admin', 'POST', '/api/2.0/mlflow/runs/create', { body: CLIENT_CLAIMS(experiment.experiment_id) }));
    expect(run.info.user_id).toBe('admin');
    const got = await call('eve', 'GET', `/api/2.0/mlflow/runs/get?run_id=${run.info.run_id}`);
    expect(got.json()).toMatchObject({ run: { info: { user_id: 'admin' }, data: { tags: expect.arrayContaining([{ key: 'mlflow.user', value: 'admin' }]) } } });
  });

  it('stamps the UI\'s prompt-lab runs as well', async () => {
    const res = await call('eve', 'POST', '/ajax-api/2.0/mlflow/runs/create-promptlab-run', {
      body: { experiment_id: experiment.experiment_id, user_id: 'someone-else', prompt_template: 'Hi {{name}}', tags: [{ key: 'mlflow.user', value: 'x' }] },
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(upstream.requests.at(-1)!.body)).toMatchObject({ user_id: 'eve', tags: [{ key: 'mlflow.user', value: 'eve' }] });
  });
});

describe('changing mlflow.user afterwards', () => {
  let run: StoredRun;
  beforeAll(async () => {
    run = createdRun(await call('eve', 'POST', '/api/2.0/mlflow/runs/create', { body: CLIENT_CLAIMS(experiment.experiment_id) }));
  });

  const REFUSAL = { error_code: 'PERMISSION_DENIED', message: 'only admins may set or delete the mlflow.user tag: mlgate sets it to the user who created the run' };

  it.each([
    ['runs/set-tag', () => ({ run_id: run.info.run_id, key: 'mlflow.user', value: 'mallory' })],
    ['runs/delete-tag', () => ({ run_id: run.info.run_id, key: 'mlflow.user' })],
    ['runs/log-batch', () => ({ run_id: run.info.run_id, tags: [{ key: 'note', value: 'fine' }, { key: 'mlflow.user', value: 'mallory' }] })],
  ])('%s is refused for a non-admin, even one who may edit the run', async (route, body) => {
    for (const prefix of ['/api/2.0', '/ajax-api/2.0']) {
      const res = await call('eve', 'POST', `${prefix}/mlflow/${route}`, { body: body() });
      expect(res.status).toBe(403);
      expect(res.json()).toEqual(REFUSAL);
    }
    expect(run.tags).toContainEqual({ key: 'mlflow.user', value: 'eve' });
  });

  it('other tags are the editor\'s to set; an admin may correct mlflow.user', async () => {
    expect((await call('eve', 'POST', '/api/2.0/mlflow/runs/set-tag', { body: { run_id: run.info.run_id, key: 'mlflow.note.content', value: 'ok' } })).status).toBe(200);
    expect((await call('admin', 'POST', '/api/2.0/mlflow/runs/set-tag', { body: { run_id: run.info.run_id, key: 'mlflow.user', value: 'carol' } })).status).toBe(200);
    expect(run.tags).toContainEqual({ key: 'mlflow.user', value: 'carol' });
  });
});
