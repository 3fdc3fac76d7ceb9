// A user's whole session with the real MLflow Python client through mlgate, over verified TLS, with
// Basic and with an issued token, against each real MLflow version; and the MLflow UI's /ajax-api/
// calls with the browser session cookie. Everything is read back from MLflow itself, around the
// gateway.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { MlflowDirect, runMlflowClient } from '../helpers/real-mlflow.ts';
import { signIn } from '../helpers/sign-in.ts';

const servers = mlflowServersFor('the real MLflow client through mlgate');

interface SessionResult {
  mlflow: string;
  experiment_id: string;
  run_id: string;
  model_name: string;
  model_uri: string;
  run: { params: Record<string, string>; metrics: Record<string, number>; tags: Record<string, string>; status: string; user_id: string };
  loss_history: number[];
  artifacts: string[];
  plots: string[];
  notes: string;
  big_sha256?: string;
  big_bytes?: number;
  big_download_sha256?: string;
  prediction: number[];
  versions: string[];
  alias_version: string;
  download_uri: string;
  model: { tags: Record<string, string>; aliases: Record<string, string>; description: string };
  search_runs: string[];
  search_experiments: string[];
  search_models: string[];
  search_versions: string[];
  deleted_run_state: string;
  restored_run_state: string;
  deleted_experiment_state: string;
  restored_experiment_state: string;
  deleted_version_error: string | null;
}

const BIG_MB = 100;


for (const server of servers) {
  describe(`the MLflow ${server.version} Python client through mlgate`, () => {
    const direct = new MlflowDirect(server.url);
    let gw: TestGateway;
    let token: string;
    let certPath: string;

    beforeAll(async () => {
      // No policy file: the built-in one (everyone READ, creators MANAGE); alice is no admin.
      gw = await startTestGateway({ upstream: server.url, users: { alice: 'alice-password', admin: 'admin-password' } });
      certPath = join(gw.dir, 'certs', 'mlgate.crt');
      const issued = runCli(['token', 'issue', 'alice', '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir });
      expect(issued.status, issued.stderr).toBe(0);
      token = issued.stdout.trim();
    });
    afterAll(async () => {
      await gw?.close();
    });

    async function userSession(prefix: string, credentials: { basic?: [string, string]; token?: string }): Promise<SessionResult> {
      const run = await runMlflowClient<SessionResult>(server, 'user_session.py', { trackingUri: gw.url, certPath, ...credentials }, { prefix, big_mb: BIG_MB });
      return run.result;
    }

    /** What MLflow itself holds after the session, compared with what the client saw through mlgate. */
    async function expectSessionInMlflow(session: SessionResult, auth: string) {
      expect(session.mlflow).toBe(server.version);

      // The run: everything logged arrived, attributed to the authenticated user, not the OS login.
      const { run } = await direct.api<{ run: { info: { user_id: string; experiment_id: string; lifecycle_stage: string }; data: { params: { key: string; value: string }[]; metrics: { key: string; value: number }[]; tags: { key: string; value: string }[] } } }>(
        'GET', 'runs/get', { run_id: session.run_id });
      expect(run.info.experiment_id).toBe(session.experiment_id);
      expect(run.info.user_id).toBe('alice');
      expect(run.info.lifecycle_stage).toBe('active');
      const tags = Object.fromEntries(run.data.tags.map((t) => [t.key, t.value]));
      expect(tags['mlflow.user']).toBe('alice');
      expect(tags.stage).toBe('dev');
      expect(tags.batch_tag).toBe('t');
      expect(tags.temp).toBeUndefined();
      expect(Object.fromEntries(run.data.params.map((p) => [p.key, p.value]))).toEqual({ alpha: '0.5', l1: '0.1', layers: '3', batch_param: 'b' });
      const metrics = Object.fromEntries(run.data.metrics.map((m) => [m.key, m.value]));
      expect(metrics).toMatchObject({ loss: 1 / 20, acc: 0.9, f1: 0.8, batch_metric: 3 });
      expect(session.run.user_id).toBe('alice');
      expect(session.run.tags['mlflow.user']).toBe('alice');
      expect(session.loss_history).toHaveLength(20);

      // The experiment: created by alice (owner tag), restored after the delete.
      const { experiment } = await direct.api<{ experiment: { name: string; lifecycle_stage: string; tags: { key: string; value: string }[] } }>(
        'GET', 'experiments/get', { experiment_id: session.experiment_id });
      expect(experiment.lifecycle_stage).toBe('active');
      expect(Object.fromEntries(experiment.tags.map((t) => [t.key, t.value]))).toMatchObject({ team: 'conformance', 'mlgate.owner': 'alice' });
      expect(session.deleted_experiment_state).toBe('deleted');
      expect(session.restored_experiment_state).toBe('active');
      expect([session.deleted_run_state, session.restored_run_state]).toEqual(['deleted', 'active']);

      // Artifacts: listed and downloaded through the gateway as uploaded; the large one byte for byte.
      expect(session.artifacts).toEqual(expect.arrayContaining(['notes.txt', 'plots', 'large']));
      expect(session.plots).toEqual(['plots/a.csv', 'plots/b.csv']);
      expect(session.notes).toBe('hello from the conformance suite\n');
      expect(session.big_bytes).toBe(BIG_MB * 1024 * 1024);
      expect(session.big_download_sha256).toBe(session.big_sha256);
      const listed = await direct.api<{ files: { path: string; file_size?: string }[] }>('GET', 'artifacts/list', { run_id: session.run_id, path: 'large' });
      expect(listed.files).toEqual([{ path: 'large/big.bin', is_dir: false, file_size: BIG_MB * 1024 * 1024 }]);

      // The registered model: owned by alice, its second version deleted, alias removed, tags kept.
      const { registered_model: model } = await direct.api<{ registered_model: { tags?: { key: string; value: string }[]; description: string; aliases?: unknown[] } }>(
        'GET', 'registered-models/get', { name: session.model_name });
      expect(Object.fromEntries((model.tags ?? []).map((t) => [t.key, t.value]))).toMatchObject({ task: 'echo', 'mlgate.owner': 'alice' });
      expect(model.description).toBe('an echo model');
      expect(model.aliases ?? []).toEqual([]);
      expect(session.model).toMatchObject({ aliases: { champion: '2' }, description: 'an echo model' });
      expect(session.versions).toEqual(['1', '2']);
      expect(session.alias_version).toBe('2');
      expect(session.deleted_version_error).toBe('RESOURCE_DOES_NOT_EXIST');
      expect((await direct.call('GET', '/api/2.0/mlflow/model-versions/get', { name: session.model_name, version: '2' })).status).toBe(404);
      const { model_version: version1 } = await direct.api<{ model_version: { run_id: string; source: string } }>('GET', 'model-versions/get', { name: session.model_name, version: '1' });
      expect(version1.run_id).toBe(session.run_id);
      expect(session.prediction).toEqual([1, 2, 3]);

      // Searches through the gateway found what MLflow holds.
      expect(session.search_runs).toEqual([session.run_id]);
      expect(session.search_experiments).toEqual([session.experiment_id]);
      expect(session.search_models).toEqual([session.model_name]);
      expect(session.search_versions).toEqual(['1', '2']);

      // Every call went through as alice with this kind of credential, and none was refused; the
      // one 404 is the client reading back the version it deleted.
      const calls = gw.logs.filter((line) => line.msg === 'request' && line.user === 'alice' && line.auth === auth);
      expect(calls.length).toBeGreaterThan(40);
      const failed = calls.filter((line) => (line.status as number) >= 400);
      expect(failed.map((line) => `${line.status} ${line.method} ${line.path}`)).toEqual(['404 GET /api/2.0/mlflow/model-versions/get']);
    }

    it(`logs a run, ${BIG_MB} MB artifact and a registered model with HTTP Basic, all attributed to the user`, async () => {
      gw.logs.length = 0;
      const session = await userSession(`basic-${server.version}`, { basic: ['alice', 'alice-password'] });
      await expectSessionInMlflow(session, 'basic');
    });

    it(`does the same with an issued token (MLFLOW_TRACKING_TOKEN)`, async () => {
      gw.logs.length = 0;
      const session = await userSession(`token-${server.version}`, { token });
      await expectSessionInMlflow(session, 'bearer');
    });

    it('refuses the client without credentials, and with a wrong password, before MLflow sees the call', async () => {
      const marker = `refused-${server.version}-${Date.now()}`;
      for (const credentials of [{}, { basic: ['alice', 'wrong'] as [string, string] }]) {
        const run = await runMlflowClient<{ error_code?: string }[]>(server, 'steps.py', { trackingUri: gw.url, certPath, ...credentials }, {
          steps: [{ call: 'client.create_experiment', args: [marker] }],
        });
        expect(run.result).toEqual([expect.objectContaining({ error_code: 'UNAUTHENTICATED' })]);
      }
      expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: marker })).status).toBe(404);
    });

    it('verifies the gateway\'s certificate: without MLFLOW_TRACKING_SERVER_CERT_PATH the client refuses to connect', async () => {
      const marker = `unverified-${server.version}-${Date.now()}`;
      const run = await runMlflowClient<{ error_code?: string; message?: string }[]>(server, 'steps.py', { trackingUri: gw.url, basic: ['alice', 'alice-password'] }, {
        steps: [{ call: 'client.create_experiment', args: [marker] }],
      });
      expect(run.result[0]?.message).toMatch(/CERTIFICATE_VERIFY_FAILED/);
      expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: marker })).status).toBe(404);
    });

    it('serves the MLflow UI\'s /ajax-api/ calls with the browser session cookie, as the signed-in user', async () => {
      const cookie = await signIn(gw, 'alice', 'alice-password');
      const ui = async (method: string, path: string, body?: unknown) => {
        const res = await gw.request(`/ajax-api/2.0/${path}`, {
          method,
          headers: { cookie, origin: gw.url, 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        expect(res.status, `${method} ${path}: ${res.text}`).toBe(200);
        return res;
      };
      const name = `ui-${server.version}`;
      const { experiment_id: experimentId } = (await ui('POST', 'mlflow/experiments/create', { name })).json<{ experiment_id: string }>();
      const { run } = (await ui('POST', 'mlflow/runs/create', { experiment_id: experimentId, run_name: 'from-ui', start_time: Date.now(), user_id: 'somebody-else' })).json<{ run: { info: { run_id: string; artifact_uri: string } } }>();
      const runId = run.info.run_id;
      await ui('POST', 'mlflow/runs/log-metric', { run_id: runId, key: 'm', value: 1.5, timestamp: Date.now(), step: 0 });
      await ui('POST', 'mlflow/runs/set-tag', { run_id: runId, key: 'note', value: 'from the UI' });
      await ui('PUT', `mlflow-artifacts/artifacts/${experimentId}/${runId}/artifacts/ui.txt`, 'uploaded from the UI');
      const artifact = await gw.request(`/get-artifact?path=ui.txt&run_uuid=${runId}`, { headers: { cookie } });
      expect(artifact.status, artifact.text).toBe(200);
      expect(JSON.parse(artifact.text)).toBe('uploaded from the UI');
      const found = (await ui('POST', 'mlflow/runs/search', { experiment_ids: [experimentId] })).json<{ runs: { info: { run_id: string } }[] }>();
      expect(found.runs.map((r) => r.info.run_id)).toEqual([runId]);
      const history = (await gw.request(`/ajax-api/2.0/mlflow/metrics/get-history?run_uuid=${runId}&metric_key=m&max_results=100`, { headers: { cookie } })).json<{ metrics: { value: number }[] }>();
      expect(history.metrics.map((m) => m.value)).toEqual([1.5]);

      const held = await direct.api<{ run: { info: { user_id: string }; data: { tags: { key: string; value: string }[]; metrics: { key: string; value: number }[] } } }>('GET', 'runs/get', { run_id: runId });
      expect(held.run.info.user_id).toBe('alice');
      expect(Object.fromEntries(held.run.data.tags.map((t) => [t.key, t.value]))).toMatchObject({ 'mlflow.user': 'alice', note: 'from the UI' });
      expect(held.run.data.metrics.map((m) => [m.key, m.value])).toEqual([['m', 1.5]]);
      const experiment = await direct.api<{ experiment: { tags: { key: string; value: string }[] } }>('GET', 'experiments/get', { experiment_id: experimentId });
      expect(Object.fromEntries(experiment.experiment.tags.map((t) => [t.key, t.value]))['mlgate.owner']).toBe('alice');

      // Without the cookie, or from another site with it, nothing is carried out.
      const noCookie = await gw.request('/ajax-api/2.0/mlflow/runs/set-tag', {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ run_id: runId, key: 'note', value: 'anonymous' }),
      });
      expect(noCookie.status).toBe(401);
      const crossSite = await gw.request('/ajax-api/2.0/mlflow/runs/set-tag', {
        method: 'POST', headers: { cookie, origin: 'https://evil.example', 'content-type': 'application/json' }, body: JSON.stringify({ run_id: runId, key: 'note', value: 'cross-site' }),
      });
      expect(crossSite.status).toBe(403);
      const after = await direct.api<{ run: { data: { tags: { key: string; value: string }[] } } }>('GET', 'runs/get', { run_id: runId });
      expect(Object.fromEntries(after.run.data.tags.map((t) => [t.key, t.value])).note).toBe('from the UI');
    });
  });
}
