// One reading of every request: MLflow's. MLflow parses a body with protobuf's JSON parser, swallows
// a parse error and runs the handler on the half-filled message (fields in JSON order up to the first
// value protobuf rejects). A body whose bad value comes before the ids the gateway checked must not
// make MLflow act on other ids. Against the real MLflow: the attacks from the review, and a property
// (fast-check) that whatever body is sent, the run MLflow acts on is the run the gateway checked.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic } from '../helpers/http-client.ts';
import { MlflowDirect } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('request parsing against the real MLflow');


const mallory = basic('mallory', 'mallory-password');

for (const server of servers) {
  describe(`a body MLflow would read only in part, against MLflow ${server.version}`, () => {
    const direct = new MlflowDirect(server.url);
    let gw: TestGateway;
    let ownExperiment: string;
    let ownRun: string;
    let theirRun: string;
    let theirExperiment: string;

    beforeAll(async () => {
      gw = await startTestGateway({
        upstream: server.url, users: { mallory: 'mallory-password' },
        policy: { rules: [{ experiment: 'theirs-*', users: ['*'], level: 'NO_PERMISSIONS' }], default: 'READ' },
      });
      ({ experiment_id: theirExperiment } = await direct.api<{ experiment_id: string }>('POST', 'experiments/create', { name: `theirs-parse-${server.version}` }));
      theirRun = (await direct.api<{ run: { info: { run_id: string } } }>('POST', 'runs/create', { experiment_id: theirExperiment })).run.info.run_id;
      const json = { authorization: mallory, 'content-type': 'application/json' };
      const created = await gw.request('/api/2.0/mlflow/experiments/create', { method: 'POST', headers: json, body: JSON.stringify({ name: `mallory-parse-${server.version}` }) });
      ownExperiment = created.json<{ experiment_id: string }>().experiment_id;
      const run = await gw.request('/api/2.0/mlflow/runs/create', { method: 'POST', headers: json, body: JSON.stringify({ experiment_id: ownExperiment }) });
      ownRun = run.json<{ run: { info: { run_id: string } } }>().run.info.run_id;
    });
    afterAll(async () => {
      await gw?.close();
    });

    const post = (path: string, body: string) => gw.request(path, { method: 'POST', headers: { authorization: mallory, 'content-type': 'application/json' }, body });

    async function metricsOf(runId: string): Promise<string[]> {
      const { run } = await direct.api<{ run: { data: { metrics?: { key: string }[] } } }>('GET', 'runs/get', { run_id: runId });
      return (run.data.metrics ?? []).map((m) => m.key);
    }

    it('refuses runs/log-metric naming their run in run_uuid before a bad value and hers in run_id, and logs nothing there', async () => {
      const bodies = [
        `{"run_uuid": "${theirRun}", "timestamp": 1.5, "run_id": "${ownRun}", "key": "stolen", "value": 1, "step": 0}`,
        `{"run_uuid": "${theirRun}", "step": 99999999999, "run_id": "${ownRun}", "key": "stolen", "value": 1, "timestamp": 1}`,
        `{"run_uuid": "${theirRun}", "value": "one", "run_id": "${ownRun}", "key": "stolen", "timestamp": 1, "step": 0}`,
        `{"run_uuid": "${theirRun}", "run_id": "${ownRun}", "key": "stolen", "value": 1, "timestamp": 1, "step": 0}`,
      ];
      for (const body of bodies) {
        const res = await post('/api/2.0/mlflow/runs/log-metric', body);
        expect(res.status, `${body}: ${res.text}`).toBe(400);
        expect(res.json().error_code).toBe('INVALID_PARAMETER_VALUE');
      }
      expect(await metricsOf(theirRun)).not.toContain('stolen');
      expect(await metricsOf(ownRun)).not.toContain('stolen');
    });

    it('refuses runs/update with the same trick, leaving their run as it was', async () => {
      const res = await post('/api/2.0/mlflow/runs/update', `{"run_uuid": "${theirRun}", "end_time": "soon", "run_id": "${ownRun}", "status": "KILLED"}`);
      expect(res.status, res.text).toBe(400);
      const { run } = await direct.api<{ run: { info: { status: string } } }>('GET', 'runs/get', { run_id: theirRun });
      expect(run.info.status).toBe('RUNNING');
    });

    it.skipIf(server.version.startsWith('2.'))(`refuses a search whose bad value would make MLflow drop the experiment ids and search every experiment${server.version.startsWith('2.') ? ` (skipped: MLflow 3 routes; this server is ${server.version})` : ''}`, async () => {
      for (const [path, body] of [
        ['/api/3.0/mlflow/datasets/search', `{"max_results": 1.5, "experiment_ids": ["${ownExperiment}"]}`],
        ['/ajax-api/3.0/mlflow/traces/metrics', `{"max_results": "x", "experiment_ids": ["${ownExperiment}"]}`],
      ] as const) {
        const res = await post(path, body);
        expect(res.status, `${path}: ${res.text}`).toBe(400);
        expect(res.json().message).toMatch(/parser would not read this request whole/);
      }
    });

    it('acts, for any body, only on the run the gateway checked (fast-check, against the real server)', async () => {
      let n = 0;
      const bad = fc.constantFrom<unknown>(1.5, 'x', true, 2 ** 70, [1], { a: 1 }, null);
      const field = (name: string, good: fc.Arbitrary<unknown>) => fc.option(fc.tuple(fc.constant(name), fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: bad })), { nil: undefined });
      const runRef = fc.constantFrom('own', 'theirs');
      await fc.assert(
        fc.asyncProperty(
          field('run_id', runRef), field('run_uuid', runRef), field('value', fc.double({ noNaN: true, noDefaultInfinity: true })),
          field('timestamp', fc.integer({ min: 0, max: 2 ** 40 })), field('step', fc.integer({ min: 0, max: 1000 })),
          fc.boolean(), fc.integer({ min: 0, max: 1000 }),
          async (runId, runUuid, value, timestamp, step, reverse, seed) => {
            const key = `k${++n}`;
            const entries = [runId, runUuid, value, timestamp, step, ['key', key] as const].filter((e): e is NonNullable<typeof e> => e !== undefined)
              .map(([name, v]) => [name, v === 'own' ? ownRun : v === 'theirs' ? theirRun : v] as const);
            // Shuffle deterministically so that bad values come before and after the ids.
            entries.sort((a, b) => ((a[0].length * 31 + seed) % 7) - ((b[0].length * 31 + seed) % 7));
            if (reverse) entries.reverse();
            const body = `{${entries.map(([name, v]) => `${JSON.stringify(name)}: ${JSON.stringify(v)}`).join(', ')}}`;
            const res = await post('/api/2.0/mlflow/runs/log-metric', body);
            // Nothing reaches their run, whatever the gateway answered.
            expect(await metricsOf(theirRun), body).not.toContain(key);
            if (res.status === 200) expect(await metricsOf(ownRun), body).toContain(key);
            else expect([400, 403], `${body}: ${res.status} ${res.text}`).toContain(res.status);
          },
        ),
        { numRuns: 40, seed: 31 },
      );
    });
  });
}
