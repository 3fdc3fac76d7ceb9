// Mutual TLS with the real MLflow Python client: MLFLOW_TRACKING_CLIENT_CERT_PATH names a PEM file
// holding a certificate made by `openssl ca` and its key, and no password or token is set. The run
// it logs is the certificate's user's in MLflow itself; a revoked certificate (in the CRL at start,
// or revoked by editing the CRL while the gateway runs) is refused before MLflow sees the call.
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeClientCa, type ClientCa, type ClientCertificate } from '../helpers/client-pki.ts';
import { startTestGateway, waitForLog, type TestGateway } from '../helpers/gateway.ts';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { MlflowDirect, runMlflowClient } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('client certificates with the real MLflow client');

type Step = { ok?: unknown; error_code?: string; message?: string };

for (const server of servers) {
  describe(`client certificates with the MLflow ${server.version} Python client`, () => {
    const direct = new MlflowDirect(server.url);
    let gw: TestGateway;
    let work: string;
    let ca: ClientCa;
    let crl: string;
    let dana: ClientCertificate;
    let erin: ClientCertificate;

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), 'mlgate-mtls-'));
      ca = makeClientCa(work, 'ml');
      dana = ca.issue('dana', { cn: 'dana', email: 'dana@example.com' });
      erin = ca.issue('erin', { cn: 'erin' });
      ca.revoke(erin);
      crl = join(work, 'ml.crl');
      ca.publishCrl(crl);
      gw = await startTestGateway({ upstream: server.url, users: { admin: 'admin-password' }, config: { tls: { clientCertificates: { ca: ca.cert, crl, mode: 'required' } } } });
    });
    afterAll(async () => {
      await gw?.close();
      rmSync(work, { recursive: true, force: true });
    });

    const client = (who: ClientCertificate | undefined, steps: unknown[]) => runMlflowClient<Step[]>(server, 'steps.py', {
      trackingUri: gw.url, certPath: join(gw.dir, 'certs', 'mlgate.crt'), extra: who ? { MLFLOW_TRACKING_CLIENT_CERT_PATH: who.pem } : {},
    }, { steps });

    it('logs a run as the certificate\'s user; a revoked certificate, or none, is refused', async () => {
      const name = `mtls-${server.version}-${Date.now()}`;
      const run = await client(dana, [
        { call: 'client.create_experiment', args: [name], save: 'experiment' },
        { call: 'client.create_run', args: ['$experiment'], save: 'run' },
        { call: 'client.log_metric', args: ['$run.info.run_id', 'accuracy', 0.91] },
        { call: 'client.set_terminated', args: ['$run.info.run_id'] },
      ]);
      expect(run.result.filter((step) => step.error_code), JSON.stringify(run.result)).toEqual([]);
      const runId = (run.result[1]!.ok as { info: { run_id: string } }).info.run_id;
      const { run: stored } = await direct.api<{ run: { info: { user_id: string; status: string }; data: { metrics: { key: string; value: number }[] } } }>('GET', 'runs/get', { run_id: runId });
      expect(stored.info.user_id).toBe('dana');
      expect(stored.info.status).toBe('FINISHED');
      expect(stored.data.metrics).toEqual([expect.objectContaining({ key: 'accuracy', value: 0.91 })]);
      const calls = gw.logs.filter((line) => line.msg === 'request' && line.user === 'dana');
      expect(calls.length).toBeGreaterThanOrEqual(4);
      expect(calls.every((line) => line.auth === 'client-cert' && line.status === 200)).toBe(true);

      const revoked = await client(erin, [{ call: 'client.create_experiment', args: [`${name}-revoked`] }]);
      expect(revoked.result).toEqual([{ error_code: 'UNAUTHENTICATED', message: expect.stringContaining('client certificate refused: it has been revoked') }]);
      const none = await client(undefined, [{ call: 'client.create_experiment', args: [`${name}-none`] }]);
      expect(none.result).toEqual([{ error_code: 'UNAUTHENTICATED', message: expect.stringContaining('MLFLOW_TRACKING_CLIENT_CERT_PATH') }]);
      for (const suffix of ['revoked', 'none']) {
        expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: `${name}-${suffix}` })).status).toBe(404);
      }
    });

    it('a certificate revoked by editing the CRL is refused without a restart', async () => {
      const name = `mtls-later-${server.version}-${Date.now()}`;
      ca.revoke(dana);
      ca.publishCrl(`${crl}.new`);
      renameSync(`${crl}.new`, crl);
      await waitForLog(gw.logs, (line) => line.msg === 'client certificate CA and CRL reloaded');
      const refused = await client(dana, [{ call: 'client.create_experiment', args: [name] }]);
      expect(refused.result).toEqual([{ error_code: 'UNAUTHENTICATED', message: expect.stringContaining('client certificate refused: it has been revoked') }]);
      expect((await direct.call('GET', '/api/2.0/mlflow/experiments/get-by-name', { experiment_name: name })).status).toBe(404);
    });
  });
}
