// Every location is a resource: a field through which a request names where data lives is checked
// like the resource it points at. An ordinary user (mallory, NO_PERMISSIONS on the hidden
// experiment) must not read its artifacts through a model version of her own whose source points
// into it, nor make MLflow write or fetch anywhere through an experiment's artifact_location.
// Against the real MLflow; every refusal is read back around the gateway.
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic } from '../helpers/http-client.ts';
import { MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('artifact locations against the real MLflow');


const mallory = basic('mallory', 'mallory-password');
const POLICY = {
  rules: [{ experiment: 'hidden-*', users: ['*'], level: 'NO_PERMISSIONS' }, { model: 'hidden-*', users: ['*'], level: 'NO_PERMISSIONS' }],
  default: 'READ',
};

interface Setup {
  direct: MlflowDirect;
  gw: TestGateway;
  hiddenExperiment: string;
  hiddenRun: string;
  hiddenArtifactUri: string;
  ownExperiment: string;
  ownRun: string;
  ownArtifactUri: string;
  model: string;
}

async function setUp(mlflowUrl: string, tag: string): Promise<Setup> {
  const direct = new MlflowDirect(mlflowUrl);
  const gw = await startTestGateway({ upstream: mlflowUrl, users: { mallory: 'mallory-password' }, policy: POLICY });
  const { experiment_id: hiddenExperiment } = await direct.api<{ experiment_id: string }>('POST', 'experiments/create', { name: `hidden-${tag}` });
  const hidden = await direct.api<{ run: { info: { run_id: string; artifact_uri: string } } }>('POST', 'runs/create', { experiment_id: hiddenExperiment });
  const json = { authorization: mallory, 'content-type': 'application/json' };
  const own = await gw.request('/api/2.0/mlflow/experiments/create', { method: 'POST', headers: json, body: JSON.stringify({ name: `mallory-${tag}` }) });
  expect(own.status, own.text).toBe(200);
  const run = await gw.request('/api/2.0/mlflow/runs/create', { method: 'POST', headers: json, body: JSON.stringify({ experiment_id: own.json().experiment_id }) });
  const ownInfo = run.json<{ run: { info: { run_id: string; artifact_uri: string } } }>().run.info;
  const model = `mallory-model-${tag}`;
  expect((await gw.request('/api/2.0/mlflow/registered-models/create', { method: 'POST', headers: json, body: JSON.stringify({ name: model }) })).status).toBe(200);
  return {
    direct, gw, hiddenExperiment, hiddenRun: hidden.run.info.run_id, hiddenArtifactUri: hidden.run.info.artifact_uri,
    ownExperiment: own.json<{ experiment_id: string }>().experiment_id, ownRun: ownInfo.run_id, ownArtifactUri: ownInfo.artifact_uri, model,
  };
}

function ownExperimentOf(s: Setup): string {
  return s.ownExperiment;
}

function createVersion(s: Setup, body: Record<string, unknown>) {
  return s.gw.request('/api/2.0/mlflow/model-versions/create', {
    method: 'POST', headers: { authorization: mallory, 'content-type': 'application/json' }, body: JSON.stringify({ name: s.model, ...body }),
  });
}

async function versionsInMlflow(s: Setup): Promise<string[]> {
  const found = await s.direct.api<{ model_versions?: { source: string }[] }>('GET', 'model-versions/search', { filter: `name = '${s.model}'` });
  return (found.model_versions ?? []).map((v) => v.source);
}

for (const server of servers) {
  describe(`locations a user names, against MLflow ${server.version} (proxied artifacts)`, () => {
    let s: Setup;
    beforeAll(async () => {
      s = await setUp(server.url, `loc-${server.version}`);
      // Something worth stealing in the hidden run.
      const put = await fetch(`${server.url}/api/2.0/mlflow-artifacts/artifacts/${s.hiddenExperiment}/${s.hiddenRun}/artifacts/secret.txt`, { method: 'PUT', body: 'the secret' });
      expect(put.status).toBe(200);
    });
    afterAll(async () => {
      await s?.gw.close();
    });

    it('refuses a model version whose source points into a hidden experiment, by any scheme, and creates nothing', async () => {
      const proxied = `api/2.0/mlflow-artifacts/artifacts/${s.hiddenExperiment}/${s.hiddenRun}/artifacts`;
      const sources = [
        `mlflow-artifacts:/${s.hiddenExperiment}/${s.hiddenRun}/artifacts`,
        `mlflow-artifacts://somehost/${s.hiddenExperiment}/${s.hiddenRun}/artifacts`,
        `${server.url}/${proxied}`,
        `${s.gw.url}/${proxied}`,
        `runs:/${s.hiddenRun}/`,
        `s3://bucket/${s.hiddenExperiment}/${s.hiddenRun}/artifacts`,
        `file:///tmp/${s.hiddenExperiment}`,
        `${s.ownArtifactUri}/../../${s.hiddenExperiment}`,
        `${s.ownArtifactUri}/%2e%2e/%2e%2e/${s.hiddenExperiment}`,
        'artifacts',
      ];
      for (const source of sources) {
        for (const extra of [{}, { run_id: s.ownRun }]) {
          const res = await createVersion(s, { source, ...extra });
          expect([400, 403], `${source} ${JSON.stringify(extra)}: ${res.status} ${res.text}`).toContain(res.status);
        }
      }
      expect(await versionsInMlflow(s)).toEqual([]);
      // And the version that would have served the secret cannot be read through the gateway.
      const read = await s.gw.request(`/model-versions/get-artifact?name=${s.model}&version=1&path=secret.txt`, { headers: { authorization: mallory } });
      expect(read.text).not.toContain('the secret');
    });

    it('refuses a run_id that disagrees with a runs:/ source', async () => {
      const res = await createVersion(s, { source: `runs:/${s.hiddenRun}/model`, run_id: s.ownRun });
      expect(res.status).toBe(400);
      expect(await versionsInMlflow(s)).toEqual([]);
    });

    it('refuses an experiment whose artifact_location a non-admin chose, in either spelling, and creates none', async () => {
      const json = { authorization: mallory, 'content-type': 'application/json' };
      const attempts = [
        { name: `elsewhere-a-${server.version}`, artifact_location: `mlflow-artifacts:/${s.hiddenExperiment}` },
        { name: `elsewhere-b-${server.version}`, artifact_location: 'file:///tmp/mlgate-anywhere' },
        { name: `elsewhere-c-${server.version}`, artifactLocation: 'http://127.0.0.1:9/' },
      ];
      for (const body of attempts) {
        const res = await s.gw.request('/api/2.0/mlflow/experiments/create', { method: 'POST', headers: json, body: JSON.stringify(body) });
        expect(res.status, res.text).toBe(403);
        expect(res.json().message).toMatch(/only admins may set artifact_location/);
        expect((await s.direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: body.name })).status).toBe(404);
      }
    });

    it('still registers what the MLflow client registers: runs:/ and mlflow-artifacts:/ sources of her own run, and a location inside its artifacts', async () => {
      for (const source of [`runs:/${s.ownRun}/model`, `${s.ownArtifactUri}/model`]) {
        const res = await createVersion(s, { source, run_id: s.ownRun });
        expect(res.status, `${source}: ${res.text}`).toBe(200);
      }
      expect(await versionsInMlflow(s)).toHaveLength(2);
    });
  });

  const v2 = server.version.startsWith('2.');
  describe.runIf(!v2)(`what a prompt-optimization job reads, against MLflow ${server.version}${v2 ? ` (skipped: MLflow 3 routes; this server is ${server.version})` : ''}`, () => {
    let s: Setup;
    const promptTags = (text: string) => [{ key: 'mlflow.prompt.is_prompt', value: 'true' }, { key: 'mlflow.prompt.text', value: text }];
    beforeAll(async () => {
      s = await setUp(server.url, `prompt-${server.version}`);
      await s.direct.api('POST', 'registered-models/create', { name: `hidden-prompt-${server.version}`, tags: [{ key: 'mlflow.prompt.is_prompt', value: 'true' }] });
      await s.direct.api('POST', 'model-versions/create', { name: `hidden-prompt-${server.version}`, source: 'prompt-template', tags: promptTags('the secret prompt {{x}}') });
    });
    afterAll(async () => {
      await s?.gw.close();
    });

    const job = (sourcePromptUri: string) => s.gw.request('/api/3.0/mlflow/prompt-optimization/jobs', {
      method: 'POST', headers: { authorization: mallory, 'content-type': 'application/json' },
      body: JSON.stringify({ experiment_id: ownExperimentOf(s), source_prompt_uri: sourcePromptUri, config: { optimizer_type: 'OPTIMIZER_TYPE_GEPA' } }),
    });

    it('refuses a job in her own experiment that would read a hidden prompt, in every URI form, and starts no run', async () => {
      for (const uri of [`prompts:/hidden-prompt-${server.version}/1`, `prompts:/hidden-prompt-${server.version}@latest`, `prompts:/hidden-prompt-${server.version}`]) {
        const res = await job(uri);
        expect(res.status, `${uri}: ${res.text}`).toBe(403);
      }
      expect((await job('models:/x/1')).status).toBe(400);
      const runs = await s.direct.api<{ runs?: unknown[] }>('POST', 'runs/search', { experiment_ids: [ownExperimentOf(s)], max_results: 10 });
      // Her own run from setUp only: no optimization run was created.
      expect(runs.runs ?? []).toHaveLength(1);
    });

    it('passes a job on a prompt she may read on to MLflow', async () => {
      const res = await job(`prompts:/${s.model}/1`);
      // This server runs no jobs (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false): MLflow's own answer, not the gateway's.
      expect(res.status, res.text).not.toBe(403);
    });
  });

  describe(`locations a user names, against MLflow ${server.version} without the artifact proxy`, () => {
    let own: RunningMlflow;
    let s: Setup;
    let fetched = 0;
    let listener: Server;
    beforeAll(async () => {
      own = await startMlflowServer(server, { serveArtifacts: false });
      s = await setUp(own.url, `noproxy-${server.version}`);
      listener = createServer((_req, res) => { fetched++; res.end('internal page'); });
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      await s?.gw.close();
      await own?.close();
      listener?.close();
    });

    it('refuses a source MLflow would fetch from an internal URL (request forgery), or read from the server\'s disk', async () => {
      const port = (listener.address() as { port: number }).port;
      for (const source of [`http://127.0.0.1:${port}/secret`, s.hiddenArtifactUri, `${s.hiddenArtifactUri}/model`]) {
        for (const extra of [{}, { run_id: s.ownRun }]) {
          const res = await createVersion(s, { source, ...extra });
          expect([400, 403], `${source}: ${res.status} ${res.text}`).toContain(res.status);
        }
      }
      expect(await versionsInMlflow(s)).toEqual([]);
      const read = await s.gw.request(`/model-versions/get-artifact?name=${s.model}&version=1&path=secret`, { headers: { authorization: mallory } });
      expect(read.status).not.toBe(200);
      expect(fetched).toBe(0);
    });

    it('registers a location inside her own run\'s artifacts (what the client sends without the proxy)', async () => {
      expect(s.ownArtifactUri).not.toMatch(/^mlflow-artifacts:/);
      const res = await createVersion(s, { source: `${s.ownArtifactUri}/model`, run_id: s.ownRun });
      expect(res.status, res.text).toBe(200);
      expect(await versionsInMlflow(s)).toEqual([`${s.ownArtifactUri}/model`]);
    });
  });
}
