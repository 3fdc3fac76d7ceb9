// Which MLflow the gateway fronts, against the real ones (issue 15): through `mlgate serve` in front
// of each real MLflow, the start-up log and an admin's /-/readyz name exactly the version the server
// reports on GET /version, and workspaces off (the shared servers run without --enable-workspaces;
// 2.17.2 has no server-info route at all). Neither is newer than the route lists, so no warning.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowServerInfo } from '../../src/authz/mlflow-server-info.ts';
import { jsonLogLines, listeningUrl, spawnCli, stopCli, type RunningCli } from '../helpers/cli.ts';
import { htpasswdLines } from '../helpers/gateway.ts';
import { request } from '../helpers/http-client.ts';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('the MLflow version the gateway reports');

for (const server of servers) {
  describe(`mlgate serve in front of MLflow ${server.version}`, () => {
    let dir: string;
    let cli: RunningCli;
    let url: string;
    let reported: string;

    beforeAll(async () => {
      reported = (await request(`${server.url}/version`)).text;
      dir = mkdtempSync(join(tmpdir(), 'mlgate-version-'));
      writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ admin: 'admin-password', alice: 'alice-password' }), { mode: 0o600 });
      cli = spawnCli(['serve', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--log-level', 'info', '--htpasswd', 'htpasswd', '--upstream', server.url], { cwd: dir });
      url = await listeningUrl(cli);
    });
    afterAll(async () => {
      if (cli) await stopCli(cli);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('the server reports the version it is', () => {
      expect(reported.trim()).toBe(server.version);
    });

    it('the start-up log names that version, workspaces off, and warns of nothing', async () => {
      const line = `MLflow ${reported.trim()} at ${server.url} (workspaces off)`;
      await cli.waitFor(new RegExp(line.replace(/[.()]/g, '\\$&')));
      const logs = jsonLogLines(cli.output().stdout);
      expect(logs.find((entry) => entry.msg === line)).toMatchObject({ level: 30, upstream: server.url, mlflowVersion: server.version, workspaces: false });
      expect(logs.filter((entry) => entry.level === 40)).toEqual([]);
    });

    it("an admin's /-/readyz names it; a non-admin's does not", async () => {
      const admin = await request(`${url}/-/readyz`, { auth: ['admin', 'admin-password'] });
      expect(admin.status).toBe(200);
      expect(admin.json().mlflow).toEqual({ version: reported.trim(), workspaces: false, newestKnown: '3.16' });
      const alice = await request(`${url}/-/readyz`, { auth: ['alice', 'alice-password'] });
      expect(alice.json()).toEqual({ status: 'ready', upstreams: 1, answering: 1 });
    });
  });
}

// The fact the workspace feature reads: a real MLflow 3 started with --enable-workspaces says so.
for (const install of mlflowServersFor('workspaces_enabled on the real MLflow', { mlflow3Only: true })) {
  describe(`MLflow ${install.version} with --enable-workspaces`, () => {
    let mlflow: RunningMlflow;
    beforeAll(async () => { mlflow = await startMlflowServer(install, { extraArgs: ['--enable-workspaces'] }); });
    afterAll(async () => { await mlflow?.close(); });

    it('MlflowServerInfo learns its version and workspaces on', async () => {
      const info = new MlflowServerInfo({ upstream: new URL(mlflow.url), timeoutMs: 5000 });
      try {
        expect(await info.facts()).toEqual({ version: install.version, workspacesEnabled: true, checkedAt: expect.any(Number) });
      } finally {
        info.close();
      }
    });
  });
}
