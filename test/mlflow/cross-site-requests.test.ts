// A page on another site cannot act with the credentials a browser attaches by itself (a Basic
// password it remembers, the session cookie): MLflow's upload-artifact takes a text/plain form body as
// the file, so a cross-site form could otherwise write into a run. Clients that send no Origin or
// Sec-Fetch-* (the MLflow client, curl) are unaffected, and so are bearer tokens, which no browser
// attaches on its own. Against the real MLflow, read back around the gateway.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { basic } from '../helpers/http-client.ts';
import { MlflowDirect, startMlflowServer, type RunningMlflow } from '../helpers/real-mlflow.ts';
import { signIn } from '../helpers/sign-in.ts';
import { runCli } from '../helpers/cli.ts';
import { join } from 'node:path';

const servers = mlflowServersFor('cross-site requests against the real MLflow');
const TRUSTED = 'https://notebooks.example.com:8443';
/** An app MLflow 3 lets in (--cors-allowed-origins) but the gateway does not trust: it calls with a bearer token. */
const TOKEN_APP = 'https://dashboard.example.com';


for (const server of servers) {
  describe(`a page on another site, against MLflow ${server.version}`, () => {
    let own: RunningMlflow | undefined;
    let direct = new MlflowDirect(server.url);
    let gw: TestGateway;
    let runId: string;
    let token: string;
    const alice = basic('alice', 'alice-password');

    beforeAll(async () => {
      // MLflow 3 checks Origin itself: a team that trusts another site's pages tells MLflow too.
      if (!server.version.startsWith('2.')) own = await startMlflowServer(server, { extraArgs: ['--cors-allowed-origins', `${TRUSTED},${TOKEN_APP}`] });
      direct = new MlflowDirect((own ?? server).url);
      gw = await startTestGateway({ upstream: (own ?? server).url, users: { alice: 'alice-password' }, config: { auth: { trustedOrigins: [TRUSTED] } } });
      const json = { authorization: alice, 'content-type': 'application/json' };
      const created = await gw.request('/api/2.0/mlflow/experiments/create', { method: 'POST', headers: json, body: JSON.stringify({ name: `cross-site-${server.version}` }) });
      expect(created.status, created.text).toBe(200);
      const run = await gw.request('/api/2.0/mlflow/runs/create', { method: 'POST', headers: json, body: JSON.stringify({ experiment_id: created.json().experiment_id }) });
      runId = run.json<{ run: { info: { run_id: string } } }>().run.info.run_id;
      const issued = runCli(['token', 'issue', 'alice', '--config', join(gw.dir, 'mlgate.yaml')], { cwd: gw.dir });
      expect(issued.status, issued.stderr).toBe(0);
      token = issued.stdout.trim();
    });
    afterAll(async () => {
      await gw?.close();
      await own?.close();
    });

    /** A form post of a text body to upload-artifact: what a cross-site <form enctype="text/plain"> sends. */
    function uploadArtifact(file: string, headers: Record<string, string>) {
      return gw.request(`/ajax-api/2.0/mlflow/upload-artifact?run_uuid=${runId}&path=${file}`, {
        method: 'POST', headers: { 'content-type': 'text/plain', ...headers }, body: `written by ${file}`,
      });
    }

    async function artifactsInMlflow(): Promise<string[]> {
      const listed = await direct.api<{ files?: { path: string }[] }>('GET', 'artifacts/list', { run_id: runId });
      return (listed.files ?? []).map((f) => f.path);
    }

    it('refuses an unsafe request with a remembered Basic password from a foreign Origin, a null Origin, or Sec-Fetch-Site: cross-site', async () => {
      const attacks: [string, Record<string, string>][] = [
        ['foreign-origin.txt', { authorization: alice, origin: 'https://evil.example' }],
        ['token-app-origin.txt', { authorization: alice, origin: TOKEN_APP }],
        ['null-origin.txt', { authorization: alice, origin: 'null' }],
        ['sibling-origin.txt', { authorization: alice, origin: 'https://other.127.0.0.1.nip.io' }],
        ['fetch-site.txt', { authorization: alice, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' }],
      ];
      for (const [file, headers] of attacks) {
        const res = await uploadArtifact(file, headers);
        expect(res.status, `${file}: ${res.text}`).toBe(403);
        expect(res.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: expect.stringMatching(/cross-site request refused/) });
      }
      expect(await artifactsInMlflow()).not.toEqual(expect.arrayContaining([expect.stringMatching(/origin|fetch-site/)]));
      const logged = gw.logs.filter((line) => line.msg === 'request' && line.status === 403 && String(line.path).includes('upload-artifact'));
      expect(logged).toHaveLength(attacks.length);
    });

    it('refuses the same with the session cookie, and from a foreign Origin with the cookie even on a trusted-looking path', async () => {
      const cookie = await signIn(gw, 'alice', 'alice-password');
      const res = await uploadArtifact('cookie.txt', { cookie, origin: 'https://evil.example' });
      expect(res.status).toBe(403);
      expect(await artifactsInMlflow()).not.toContain('cookie.txt');
    });

    it('lets through clients that send no Origin (the MLflow client, curl), this site\'s own pages, trusted origins, and bearer tokens from anywhere', async () => {
      const cookie = await signIn(gw, 'alice', 'alice-password');
      const allowed: [string, Record<string, string>][] = [
        ['curl.txt', { authorization: alice }],
        ['same-origin.txt', { authorization: alice, origin: gw.url, 'sec-fetch-site': 'same-origin' }],
        ['trusted.txt', { authorization: alice, origin: TRUSTED, 'sec-fetch-site': 'cross-site' }],
        ['cookie-trusted.txt', { cookie, origin: TRUSTED, 'sec-fetch-site': 'cross-site' }],
        ['bearer.txt', { authorization: `Bearer ${token}`, origin: TOKEN_APP, 'sec-fetch-site': 'cross-site' }],
      ];
      for (const [file, headers] of allowed) {
        const res = await uploadArtifact(file, headers);
        expect(res.status, `${file}: ${res.text}`).toBe(200);
      }
      expect(await artifactsInMlflow()).toEqual(expect.arrayContaining(allowed.map(([file]) => file)));
      // A cross-site GET changes nothing; its answer is the browser's to withhold from the page.
      const read = await gw.request(`/get-artifact?path=curl.txt&run_uuid=${runId}`, { headers: { authorization: alice, origin: 'https://evil.example' } });
      expect(read.status).toBe(200);
    });
  });
}
