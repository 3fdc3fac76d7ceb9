// A token a user made themselves on /-/api/tokens (signed in with the browser session cookie), used
// by the real MLflow Python client through MLFLOW_TRACKING_TOKEN: the run it logs is attributed to
// that user in MLflow itself, and after the user revokes the token the client is refused.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { MlflowDirect, runMlflowClient } from '../helpers/real-mlflow.ts';
import { signIn } from '../helpers/sign-in.ts';

const servers = mlflowServersFor('tokens made on /-/api/tokens used by the real MLflow client');

type Step = { ok?: unknown; error_code?: string; message?: string };

for (const server of servers) {
  describe(`a self-made token with the MLflow ${server.version} Python client`, () => {
    const direct = new MlflowDirect(server.url);
    let gw: TestGateway;
    let certPath: string;

    beforeAll(async () => {
      gw = await startTestGateway({ upstream: server.url, users: { carol: 'carol-password', admin: 'admin-password' } });
      certPath = join(gw.dir, 'certs', 'mlgate.crt');
    });
    afterAll(async () => {
      await gw?.close();
    });

    it('logs a run attributed to the user who made the token, and is refused once it is revoked', async () => {
      const cookie = await signIn(gw, 'carol', 'carol-password');
      const made = await gw.request('/-/api/tokens', {
        method: 'POST',
        headers: { cookie, origin: gw.url, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'ci-real-client', expires: '1d' }),
      });
      expect(made.status, made.text).toBe(201);
      const { token, id } = made.json<{ token: string; id: string }>();

      const name = `self-token-${server.version}-${Date.now()}`;
      const run = await runMlflowClient<Step[]>(server, 'steps.py', { trackingUri: gw.url, certPath, token }, {
        steps: [
          { call: 'client.create_experiment', args: [name], save: 'experiment' },
          { call: 'client.create_run', args: ['$experiment'], save: 'run' },
          { call: 'client.log_metric', args: ['$run.info.run_id', 'accuracy', 0.93] },
          { call: 'client.set_terminated', args: ['$run.info.run_id'] },
        ],
      });
      expect(run.result.filter((step) => step.error_code), JSON.stringify(run.result)).toEqual([]);
      const runId = (run.result[1]!.ok as { info: { run_id: string } }).info.run_id;

      // MLflow itself holds the run, by carol, with the metric.
      const { run: stored } = await direct.api<{ run: { info: { user_id: string; status: string }; data: { metrics: { key: string; value: number }[] } } }>('GET', 'runs/get', { run_id: runId });
      expect(stored.info.user_id).toBe('carol');
      expect(stored.info.status).toBe('FINISHED');
      expect(stored.data.metrics).toEqual([expect.objectContaining({ key: 'accuracy', value: 0.93 })]);
      const { experiment } = await direct.api<{ experiment: { tags?: { key: string; value: string }[] } }>('GET', 'experiments/get-by-name', { experiment_name: name });
      expect(experiment.tags).toEqual(expect.arrayContaining([{ key: 'mlgate.owner', value: 'carol' }]));
      // Every call the client made went through as carol, by this token.
      const calls = gw.logs.filter((line) => line.msg === 'request' && line.token === id);
      expect(calls.length).toBeGreaterThanOrEqual(4);
      expect(calls.every((line) => line.user === 'carol' && line.auth === 'bearer' && line.status === 200)).toBe(true);

      // Revoked on the API: the client is refused at once, before MLflow sees the call.
      const revoked = await gw.request(`/-/api/tokens/${id}`, { method: 'DELETE', headers: { cookie, origin: gw.url } });
      expect(revoked.status).toBe(200);
      const refused = await runMlflowClient<Step[]>(server, 'steps.py', { trackingUri: gw.url, certPath, token }, {
        steps: [{ call: 'client.create_experiment', args: [`${name}-after`] }],
      });
      expect(refused.result).toEqual([expect.objectContaining({ error_code: 'UNAUTHENTICATED' })]);
      expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: `${name}-after` })).status).toBe(404);
    });
  });
}
