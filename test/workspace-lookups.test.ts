// What the gateway itself asks MLflow, and what it forwards, for a request in a workspace: every
// look-up carries the request's X-MLFLOW-WORKSPACE, a decision cached in one workspace is not reused
// in another, and MLflow gets the workspace as the gateway read it, in one header. The MLflow-shaped
// fake records the headers; what MLflow does with them is pinned against the real server in
// test/mlflow/workspaces.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { basic } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

describe('look-ups in the request\'s workspace', () => {
  let upstream: MlflowUpstream;
  let gw: TestGateway;
  let runId: string;
  const alice = basic('alice', 'alice-password');

  beforeAll(async () => {
    upstream = await startMlflowUpstream({ workspacesEnabled: true, defaultExperiment: true });
    const experiment = upstream.store.addExperiment('shared');
    runId = upstream.store.addRun(experiment.experiment_id).info.run_id;
    gw = await startTestGateway({
      upstream: upstream.url,
      users: { alice: 'alice-password' },
      policy: {
        rules: [{ workspace: 'team-a', experiment: '*', users: ['alice'], level: 'EDIT' }],
        default: 'READ',
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const logMetric = (headers: Record<string, string>, key: string) => gw.request('/api/2.0/mlflow/runs/log-metric', {
    method: 'POST',
    headers: { authorization: alice, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ run_id: runId, key, value: 1, timestamp: 1, step: 0 }),
  });
  const since = (start: number) => upstream.requests.slice(start);

  it('asks in the workspace, forwards the workspace it read, and does not reuse the decision in another', async () => {
    let start = upstream.requests.length;
    const inTeam = await logMetric({ 'x-mlflow-workspace': ' team-a ' }, 'in-team-a');
    expect(inTeam.status, inTeam.text).toBe(200);
    const lookups = since(start).filter((r) => r.url.startsWith('/api/2.0/mlflow/runs/get') || r.url.startsWith('/api/2.0/mlflow/experiments/get'));
    expect(lookups.length).toBe(2);
    for (const lookup of lookups) expect(lookup.headers['x-mlflow-workspace'], lookup.url).toBe('team-a');
    const forwarded = since(start).find((r) => r.url === '/api/2.0/mlflow/runs/log-metric')!;
    expect(forwarded.headers['x-mlflow-workspace']).toBe('team-a');

    // The same run in the default workspace: looked up again there (no header), and decided with
    // the default workspace's policy (READ): refused, not served from team-a's EDIT.
    start = upstream.requests.length;
    const inDefault = await logMetric({}, 'in-default');
    expect(inDefault.status).toBe(403);
    const again = since(start).filter((r) => r.url.startsWith('/api/2.0/mlflow/'));
    expect(again.map((r) => r.url.split('?')[0])).toEqual(['/api/2.0/mlflow/runs/get', '/api/2.0/mlflow/experiments/get']);
    for (const lookup of again) expect(lookup.headers['x-mlflow-workspace']).toBeUndefined();
    expect(upstream.store.runs.get(runId)!.metrics.map((m) => m.key)).toEqual(['in-team-a']);

    // Back in team-a: both from the cache, nothing asked.
    start = upstream.requests.length;
    expect((await logMetric({ 'x-mlflow-workspace': 'team-a' }, 'again')).status).toBe(200);
    expect(since(start).map((r) => r.url)).toEqual(['/api/2.0/mlflow/runs/log-metric']);
  });

  it('sends the default workspace as no header at all, whatever spelling named it', async () => {
    const start = upstream.requests.length;
    const res = await gw.request('/api/2.0/mlflow/experiments/get?experiment_id=0', { headers: { authorization: alice, 'x-mlflow-workspace': 'default' } });
    expect(res.status, res.text).toBe(200);
    const forwarded = since(start).filter((r) => r.url.startsWith('/api/2.0/mlflow/experiments/get'));
    expect(forwarded.length).toBeGreaterThan(0);
    for (const request of forwarded) expect(request.headers['x-mlflow-workspace']).toBeUndefined();
  });
});
