// An identity provider's users with the real MLflow (issue 16): alice and bob sign in in headless
// Chromium from the MLflow UI's URL through a real OpenID provider (test/helpers/oidc-provider.ts);
// the provider's group team-a gives alice EDIT on team-a/* experiments and bob (no group) only
// READ; alice makes a token on the /-/tokens page that the real MLflow Python client logs a run
// with, and revokes it there; and the page's sign-out ends her session at mlgate and at the
// provider. Everything is read back from MLflow itself, around the gateway.
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumProblem, launchChromium, spkiPin } from '../helpers/chromium.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { mlflowServersFor } from '../helpers/mlflow-servers.ts';
import { IDP_CLIENT_ID, IDP_CLIENT_SECRET, startTestIdp, type TestIdp } from '../helpers/oidc-provider.ts';
import { MlflowDirect, runMlflowClient } from '../helpers/real-mlflow.ts';

const servers = mlflowServersFor('an identity provider\'s users with the real MLflow');
const PROBLEM = chromiumProblem();

const COOKIE = '__Host-mlgate-session';
const SECRET_VARIABLE = 'MLGATE_TEST_OIDC_CLIENT_SECRET';
const HTML = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

type Step = { ok?: unknown; error_code?: string; message?: string };
interface StoredRun {
  info: { run_id: string; user_id: string; status: string };
  data: { metrics?: { key: string; value: number }[]; tags?: { key: string; value: string }[] };
}

function tagsOf(run: StoredRun): Record<string, string> {
  return Object.fromEntries((run.data.tags ?? []).map((t) => [t.key, t.value]));
}

describe.skipIf(PROBLEM !== undefined || servers.length === 0)(`the identity provider's users with the real MLflow, in headless Chromium${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`, () => {
  let idp: TestIdp;
  let browser: Browser;
  const gateways: TestGateway[] = [];

  beforeAll(async () => {
    process.env[SECRET_VARIABLE] = IDP_CLIENT_SECRET;
    idp = await startTestIdp();
    for (const server of servers) {
      gateways.push(await startTestGateway({
        upstream: server.url,
        users: { admin: 'admin-password', carol: 'carol-password' },
        policy: { rules: [{ experiment: 'team-a/*', groups: ['team-a'], level: 'EDIT' }], default: 'READ' },
        config: { oidc: { providers: [{ name: 'test', label: 'Test IdP', issuer: idp.issuer, clientId: IDP_CLIENT_ID, clientSecretEnv: SECRET_VARIABLE, ca: idp.caFile, scopes: ['openid', 'profile', 'email', 'groups'] }] } },
      }));
    }
    // Registered once with every gateway's exact URIs: rebuilding the provider would forget its sessions.
    idp.configureClient({
      redirectUris: gateways.map((g) => `${g.url}/-/oidc/callback`),
      postLogoutRedirectUris: gateways.map((g) => `${g.url}/-/login?signed-out`),
    });
    // Only the gateways' and the provider's certificates are trusted (pinned).
    browser = await launchChromium([`--ignore-certificate-errors-spki-list=${[...gateways.map((g) => spkiPin(g.ca!)), spkiPin(idp.leafPem)].join(',')}`]);
  });
  afterAll(async () => {
    await browser?.close();
    for (const gw of gateways) await gw.close();
    await idp?.close();
    delete process.env[SECRET_VARIABLE];
  });

  servers.forEach((server, index) => {
    describe(`MLflow ${server.version}`, () => {
      const direct = new MlflowDirect(server.url);
      const gw = () => gateways[index]!;
      let alice: { context: BrowserContext; page: Page; cookie: string };
      let experimentId: string;
      let browserRunId: string;

      afterAll(async () => {
        await alice?.context.close();
      });

      /** From the MLflow UI's URL through the provider's sign-in page and back; the session cookie the browser then holds. */
      async function signInInBrowser(user: string): Promise<{ context: BrowserContext; page: Page; cookie: string }> {
        const context = await browser.newContext();
        const page = await context.newPage();
        await page.goto(`${gw().url}/#/experiments`);
        expect(page.url()).toBe(`${gw().url}/-/login?next=%2F#/experiments`);
        await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
        await page.waitForURL((url) => url.origin === idp.issuer);
        await page.locator('input[name=login]').fill(user);
        await page.locator('input[name=password]').fill('any');
        await page.locator('button[type=submit]').click();
        await page.waitForURL((url) => url.origin === gw().url && url.pathname === '/');
        // Back where the user asked to go: MLflow's own page at /, through the gateway (its React UI,
        // or, for an MLflow installed without the UI's build, the page saying so).
        expect(page.url()).toMatch(new RegExp(`^${gw().url.replace(/[.]/g, '\\.')}/#/experiments`));
        await expect(page.content()).resolves.toMatch(/<title>MLflow<\/title>|Unable to display MLflow UI/);
        const session = (await context.cookies(gw().url)).find((c) => c.name === COOKIE);
        expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax' });
        return { context, page, cookie: `${COOKIE}=${session!.value}` };
      }

      /** A call as the MLflow UI makes it, with the session cookie. */
      function ui(cookie: string, path: string, body: unknown) {
        return gw().request(`/ajax-api/2.0/mlflow/${path}`, {
          method: 'POST',
          headers: { cookie, origin: gw().url, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      }

      async function runsIn(experiment: string): Promise<StoredRun[]> {
        const found = await direct.api<{ runs?: StoredRun[] }>('POST', 'runs/search', { experiment_ids: [experiment], max_results: 100 });
        return found.runs ?? [];
      }

      it('signs alice and bob in from the MLflow UI; the provider\'s group team-a lets alice log in a team-a experiment and not bob', async () => {
        // Made directly in MLflow, owned by somebody else: only the group rule can give EDIT.
        ({ experiment_id: experimentId } = await direct.api<{ experiment_id: string }>('POST', 'experiments/create', {
          name: `team-a/idp-${server.version}-${Date.now()}`,
          tags: [{ key: 'mlgate.owner', value: 'carol' }],
        }));

        alice = await signInInBrowser('alice');
        expect((await gw().request('/-/whoami', { headers: { cookie: alice.cookie } })).json()).toEqual({ user: 'alice', groups: ['team-a'], method: 'session' });
        const created = await ui(alice.cookie, 'runs/create', { experiment_id: experimentId, run_name: 'from-the-browser', start_time: Date.now(), user_id: 'somebody-else', tags: [{ key: 'mlflow.user', value: 'somebody-else' }] });
        expect(created.status, created.text).toBe(200);
        browserRunId = created.json<{ run: { info: { run_id: string } } }>().run.info.run_id;
        const logged = await ui(alice.cookie, 'runs/log-metric', { run_id: browserRunId, key: 'loss', value: 0.25, timestamp: Date.now(), step: 0 });
        expect(logged.status, logged.text).toBe(200);

        const { run } = await direct.api<{ run: StoredRun }>('GET', 'runs/get', { run_id: browserRunId });
        expect(run.info.user_id).toBe('alice');
        expect(tagsOf(run)['mlflow.user']).toBe('alice');
        expect(run.data.metrics).toEqual([expect.objectContaining({ key: 'loss', value: 0.25 })]);

        const bob = await signInInBrowser('bob');
        try {
          expect((await gw().request('/-/whoami', { headers: { cookie: bob.cookie } })).json()).toEqual({ user: 'bob', groups: [], method: 'session' });
          const refused = await ui(bob.cookie, 'runs/create', { experiment_id: experimentId, start_time: Date.now() });
          expect(refused.status, refused.text).toBe(403);
          expect(refused.json()).toMatchObject({ error_code: 'PERMISSION_DENIED', message: `user bob has READ on experiment ${experimentId}; runs/create needs EDIT` });
          const refusedMetric = await ui(bob.cookie, 'runs/log-metric', { run_id: browserRunId, key: 'loss', value: 99, timestamp: Date.now(), step: 1 });
          expect(refusedMetric.status, refusedMetric.text).toBe(403);
          // READ still works for bob: he sees alice's run through the gateway.
          const seen = await gw().request(`/ajax-api/2.0/mlflow/runs/get?run_id=${browserRunId}`, { headers: { cookie: bob.cookie } });
          expect(seen.status, seen.text).toBe(200);
        } finally {
          await bob.context.close();
        }

        // Nothing bob sent reached MLflow.
        expect((await runsIn(experimentId)).map((r) => r.info.run_id)).toEqual([browserRunId]);
        const history = await direct.api<{ metrics: { value: number }[] }>('GET', 'metrics/get-history', { run_id: browserRunId, run_uuid: browserRunId, metric_key: 'loss', max_results: '100' });
        expect(history.metrics.map((m) => m.value)).toEqual([0.25]);
      });

      it('makes a token on the /-/tokens page that the real MLflow client logs a run with as alice, and revokes it there', async () => {
        const { page } = alice;
        await page.goto(`${gw().url}/-/tokens`);
        await page.getByLabel('What it is for').fill(`ci-${server.version}`);
        // A provider's user gets an expiring token by default (tokens.externalMaxTtl).
        await expect(page.getByLabel('Expires after').inputValue()).resolves.toBe('30d');
        await page.getByRole('button', { name: 'Make token' }).click();
        const token = await page.locator('#new-token').inputValue();
        expect(token.length).toBeGreaterThan(20);
        await expect(page.locator('pre').textContent()).resolves.toBe(`export MLFLOW_TRACKING_TOKEN=${token}`);
        const listed = (await gw().request('/-/api/tokens', { headers: { cookie: alice.cookie } })).json<{ tokens: { id: string; name: string; external: boolean; source: string | null; groups: string[]; expires: string }[] }>();
        expect(listed.tokens).toHaveLength(1);
        const made = listed.tokens[0]!;
        expect(made).toMatchObject({ name: `ci-${server.version}`, external: true, source: 'test', groups: ['team-a'] });
        expect(Date.parse(made.expires) - Date.now()).toBeLessThanOrEqual(30 * 86_400_000);

        const certPath = `${gw().dir}/certs/mlgate.crt`;
        const run = await runMlflowClient<Step[]>(server, 'steps.py', { trackingUri: gw().url, certPath, token }, {
          steps: [
            { call: 'mlflow.start_run', kwargs: { experiment_id: experimentId, run_name: 'from-ci' }, save: 'run' },
            { call: 'mlflow.log_metric', args: ['accuracy', 0.91] },
            { call: 'mlflow.end_run' },
          ],
        });
        expect(run.result.filter((step) => step.error_code), JSON.stringify(run.result)).toEqual([]);
        const ciRunId = (run.result[0]!.ok as { info: { run_id: string } }).info.run_id;
        const { run: stored } = await direct.api<{ run: StoredRun }>('GET', 'runs/get', { run_id: ciRunId });
        expect(stored.info.user_id).toBe('alice');
        expect(stored.info.status).toBe('FINISHED');
        expect(tagsOf(stored)['mlflow.user']).toBe('alice'); // not the OS login the client sent
        expect(stored.data.metrics).toEqual([expect.objectContaining({ key: 'accuracy', value: 0.91 })]);
        const calls = gw().logs.filter((line) => line.msg === 'request' && line.token === made.id);
        expect(calls.length).toBeGreaterThanOrEqual(3);
        expect(calls.every((line) => line.user === 'alice' && line.auth === 'bearer' && line.status === 200)).toBe(true);

        // Revoked with the page's button: the client is refused at once, and nothing is written.
        await page.goto(`${gw().url}/-/tokens`);
        await page.getByRole('button', { name: `Revoke token ci-${server.version}` }).click();
        await page.waitForURL(`${gw().url}/-/tokens?done=revoked`);
        await expect(page.getByRole('status').textContent()).resolves.toBe('The token was revoked; it no longer works.');
        const refused = await runMlflowClient<Step[]>(server, 'steps.py', { trackingUri: gw().url, certPath, token }, {
          // One call per client: after a refused POST the gateway closes the kept-alive connection
          // unannounced, so a second call on it can fail as a dropped connection instead.
          steps: [{ call: 'mlflow.start_run', kwargs: { experiment_id: experimentId, run_name: 'after-revoking' } }],
        });
        expect(refused.result).toEqual([expect.objectContaining({ error_code: 'UNAUTHENTICATED', message: expect.stringContaining('unknown or revoked token') })]);
        expect((await runsIn(experimentId)).map((r) => r.info.run_id).sort()).toEqual([browserRunId, ciRunId].sort());
        const history = await direct.api<{ metrics: { value: number }[] }>('GET', 'metrics/get-history', { run_id: ciRunId, run_uuid: ciRunId, metric_key: 'accuracy', max_results: '100' });
        expect(history.metrics.map((m) => m.value)).toEqual([0.91]);
      });

      it('signs out of both with the page\'s sign-out: the old cookie is refused, and signing in again asks the provider for the user', async () => {
        const { page, context, cookie } = alice;
        const signOutsBefore = idp.signOuts;
        await page.goto(`${gw().url}/-/tokens`);
        await page.getByRole('link', { name: 'Sign out' }).click();
        await page.waitForURL(`${gw().url}/-/logout`);
        await page.getByRole('button', { name: 'Sign out' }).click();
        await page.waitForURL((url) => url.origin === idp.issuer);
        await page.getByRole('button', { name: 'Yes, sign me out' }).click();
        await page.waitForURL(`${gw().url}/-/login?signed-out`);
        await expect(page.getByRole('status').textContent()).resolves.toBe('You have signed out.');
        expect(idp.signOuts).toBe(signOutsBefore + 1);
        expect((await context.cookies(gw().url)).find((c) => c.name === COOKIE)).toBeUndefined();

        // mlgate's session is over, even for the cookie kept from before.
        expect((await gw().request('/-/whoami', { headers: { cookie } })).status).toBe(401);
        const api = await ui(cookie, 'experiments/search', { max_results: 1 });
        expect(api.status, api.text).toBe(401);
        const write = await ui(cookie, 'runs/create', { experiment_id: experimentId, start_time: Date.now() });
        expect(write.status, write.text).toBe(401);
        const uiPage = await gw().request('/', { headers: { cookie, accept: HTML } });
        expect([302, 303]).toContain(uiPage.status);
        expect(uiPage.headers.location).toMatch(/^\/-\/login\?next=/);
        expect((await runsIn(experimentId))).toHaveLength(2);

        // The provider's session is over too: a new sign-in shows its sign-in form, not an instant return.
        await page.goto(`${gw().url}/#/experiments`);
        await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
        await page.waitForURL((url) => url.origin === idp.issuer);
        await expect(page.locator('input[name=login]').count()).resolves.toBe(1);
        expect((await context.cookies(gw().url)).find((c) => c.name === COOKIE)).toBeUndefined();
      });
    });
  });
});
