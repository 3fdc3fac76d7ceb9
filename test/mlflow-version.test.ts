// Which MLflow the gateway fronts (issue 15): `mlgate serve` logs the version the upstream reports
// and whether it serves workspaces, and warns when that version is newer than the newest route list
// mlgate knows, with the consequence (unknown routes refused for non-admins) and the setting that
// relaxes it. Admins' /-/readyz says the same; anyone else's says no more than before.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowServerInfo, NEWEST_KNOWN_MLFLOW, newerThanKnown } from '../src/authz/mlflow-server-info.ts';
import { jsonLogLines, listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines } from './helpers/gateway.ts';
import { request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { freePort } from './helpers/tls.ts';

const NEWER_WARNING = 'MLflow 3.17.0 is newer than the newest MLflow whose routes mlgate knows (3.16): routes mlgate does not know are refused (403) '
  + 'for everyone but admins. If non-admins need them, update mlgate, or set authz.allowUnknownRoutes: true to forward them unchecked for everyone';

async function settle(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** `mlgate serve` on plain HTTP in front of `upstream`, with an admin and a non-admin (the built-in policy). */
function servingIn(upstreamOptions: Parameters<typeof startMlflowUpstream>[0]) {
  const running = {} as { upstream: MlflowUpstream; cli: RunningCli; url: string; dir: string };
  beforeAll(async () => {
    running.upstream = await startMlflowUpstream(upstreamOptions);
    running.dir = mkdtempSync(join(tmpdir(), 'mlgate-version-'));
    writeFileSync(join(running.dir, 'htpasswd'), await htpasswdLines({ admin: 'admin-password', alice: 'alice-password' }), { mode: 0o600 });
    running.cli = spawnCli(['serve', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--log-level', 'info', '--htpasswd', 'htpasswd', '--upstream', running.upstream.url], { cwd: running.dir });
    running.url = await listeningUrl(running.cli);
    // The start-up checks run once listening: wait for the version line.
    await settle(() => messages(30).some((msg) => msg.startsWith('MLflow ')));
  });
  afterAll(async () => {
    if (running.cli) await stopCli(running.cli);
    await running.upstream?.close();
    if (running.dir) rmSync(running.dir, { recursive: true, force: true });
  });
  const messages = (level: number) => jsonLogLines(running.cli.output().stdout).filter((line) => line.level === level).map((line) => String(line.msg));
  const readyz = (auth?: [string, string]) => request(`${running.url}/-/readyz`, { auth });
  return { running, messages, readyz };
}

describe('an MLflow newer than the newest route list mlgate knows (3.17.0)', () => {
  const { running, messages, readyz } = servingIn({ reportedVersion: '3.17.0', workspacesEnabled: false });

  it('the start-up log names the version and warns once with the consequence and authz.allowUnknownRoutes', async () => {
    await settle(() => messages(40).length > 0);
    expect(messages(30)).toContain(`MLflow 3.17.0 at ${running.upstream.url} (workspaces off)`);
    expect(messages(40)).toEqual([NEWER_WARNING]);
  });

  it("an admin's /-/readyz names the version and carries the same warning; readiness is unchanged", async () => {
    const res = await readyz(['admin', 'admin-password']);
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      status: 'ready', upstreams: 1, answering: 1, upstream: `${running.upstream.url} answered 200`,
      mlflow: { version: '3.17.0', workspaces: false, newestKnown: '3.16', warning: NEWER_WARNING },
    });
  });

  it('a non-admin and an anonymous caller get the state and counts only', async () => {
    for (const auth of [['alice', 'alice-password'] as [string, string], undefined]) {
      const res = await readyz(auth);
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ status: 'ready', upstreams: 1, answering: 1 });
    }
  });
});

describe('an MLflow the route lists cover (3.11.1, workspaces on)', () => {
  const { running, messages, readyz } = servingIn({ workspacesEnabled: true });

  it('the start-up log names it and warns of nothing', () => {
    expect(messages(30)).toContain(`MLflow 3.11.1 at ${running.upstream.url} (workspaces on)`);
    expect(messages(40)).toEqual([]);
  });

  it("an admin's /-/readyz names it, with no warning", async () => {
    const res = await readyz(['admin', 'admin-password']);
    expect(res.json().mlflow).toEqual({ version: '3.11.1', workspaces: true, newestKnown: '3.16' });
  });
});

describe('MlflowServerInfo', () => {
  let upstream: MlflowUpstream;
  beforeAll(async () => { upstream = await startMlflowUpstream({ workspacesEnabled: true }); });
  afterAll(async () => { await upstream.close(); });

  it('learns both facts with one probe shared by concurrent callers, and keeps them for refreshMs', async () => {
    const info = new MlflowServerInfo({ upstream: new URL(upstream.url), timeoutMs: 2000, userHeader: 'X-Forwarded-User' });
    try {
      const asked = () => upstream.requests.filter((req) => req.url === '/version').length;
      const before = asked();
      expect(info.last()).toBeUndefined();
      const all = await Promise.all(Array.from({ length: 5 }, () => info.facts()));
      expect(all[0]).toEqual({ version: '3.11.1', workspacesEnabled: true, checkedAt: expect.any(Number) });
      expect(new Set(all).size).toBe(1);
      expect(await info.facts()).toBe(all[0]);
      expect(info.last()).toBe(all[0]);
      expect(asked() - before).toBe(1);
      // mlgate's own calls are told apart in MLflow's logs, as the resolver's are.
      expect(upstream.requests.find((req) => req.url === '/version')?.headers['x-forwarded-user']).toBe('mlgate');
    } finally {
      info.close();
    }
  });

  it('MLflow 2.x has no server-info (404): workspaces false', async () => {
    const old = await startMlflowUpstream({ version: '2.17.2', workspacesEnabled: true });
    const info = new MlflowServerInfo({ upstream: new URL(old.url), timeoutMs: 2000 });
    try {
      expect(await info.facts()).toEqual({ version: '2.17.2', workspacesEnabled: false, checkedAt: expect.any(Number) });
    } finally {
      info.close();
      await old.close();
    }
  });

  it('an answer that is not a version leaves the version unknown, saying so', async () => {
    const other = await startMlflowUpstream({ reportedVersion: '<html>not MLflow</html>' });
    const info = new MlflowServerInfo({ upstream: new URL(other.url), timeoutMs: 2000 });
    try {
      const facts = await info.facts();
      expect(facts.version).toBeUndefined();
      expect(facts.problem).toBe(`the MLflow tracking server at ${other.url} answered GET /version with "<html>not MLflow</html>", not a version`);
    } finally {
      info.close();
      await other.close();
    }
  });

  it('an upstream that does not answer: both facts unknown, naming it, and asked again after 2 s, not refreshMs', async () => {
    const port = await freePort();
    const info = new MlflowServerInfo({ upstream: new URL(`http://127.0.0.1:${port}`), timeoutMs: 2000, refreshMs: 60_000 });
    try {
      const first = await info.facts();
      expect(first.version).toBeUndefined();
      expect(first.workspacesEnabled).toBeUndefined();
      expect(first.problem).toMatch(new RegExp(`^cannot reach the MLflow tracking server at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
      expect(await info.facts()).toBe(first);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const again = await info.facts();
      expect(again).not.toBe(first);
      expect(again.checkedAt).toBeGreaterThan(first.checkedAt);
    } finally {
      info.close();
    }
  });
});

describe('newerThanKnown', () => {
  it(`is true above ${NEWEST_KNOWN_MLFLOW}.x only, pre-releases and dev builds of a newer release included`, () => {
    for (const newer of ['3.17.0', '3.17.0rc1', '3.17.0.dev0', '3.20.1', '4.0.0', '4.0.0.dev0', '10.0']) expect(newerThanKnown(newer), newer).toBe(true);
    for (const known of ['3.16.0', '3.16.1', '3.16.2.dev0', '3.16.0rc1', '3.11.1', '3.2.0', '2.17.2', '2.99.0', 'not a version', '']) expect(newerThanKnown(known), known).toBe(false);
  });
});
