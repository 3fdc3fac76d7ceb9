// SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) against the real CLI: requests already in
// flight finish, new connections are refused, and the process exits 0 within the grace period.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines, startTestGateway } from './helpers/gateway.ts';
import { request, type TestResponse } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { isListening } from './helpers/tls.ts';

const ALICE: [string, string] = ['alice', 'alice-password'];

let upstream: MlflowUpstream;
let dir: string;
let running: RunningCli | undefined;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  dir = mkdtempSync(join(tmpdir(), 'mlgate-shutdown-'));
  mkdirSync(join(dir, 'config'));
  writeFileSync(join(dir, 'config', 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
});
afterEach(async () => {
  if (running) await stopCli(running, 'SIGKILL').catch(() => {});
  running = undefined;
});
afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startCli(env: NodeJS.ProcessEnv = {}): Promise<{ cli: RunningCli; url: string; port: number; ca: string }> {
  const cli = spawnCli(['serve', '--port', '0', '--host', '127.0.0.1'], { cwd: dir, env: { MLGATE_UPSTREAM: upstream.url, MLGATE_AUTH_BCRYPT_COST: '4', ...env } });
  running = cli;
  const url = await listeningUrl(cli);
  return { cli, url, port: Number(new URL(url).port), ca: readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8') };
}

/** Starts a slow request and resolves once the upstream has it, i.e. it is truly in flight. */
async function inFlight(url: string, ca: string, ms: number): Promise<{ done: Promise<{ res?: TestResponse; err?: Error; at: number }> }> {
  const path = `/slow?ms=${ms}&tag=${Math.random().toString(36).slice(2)}`;
  const done = request(url + path, { ca, auth: ALICE }).then((res) => ({ res, at: Date.now() }), (err: Error) => ({ err, at: Date.now() }));
  const deadline = Date.now() + 10_000;
  while (!upstream.requests.some((r) => r.url === path)) {
    if (Date.now() > deadline) throw new Error(`the upstream never saw ${path}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { done };
}

/** Polls with fresh connections until the port refuses them; resolves with when that happened. */
async function refusedAt(port: number, withinMs: number): Promise<number> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (!(await isListening(port))) return Date.now();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`port ${port} still accepted connections ${withinMs} ms after the signal`);
}

describe('graceful shutdown of the real CLI', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: finishes the in-flight request, refuses new connections meanwhile, exits 0`, async () => {
      const { cli, url, port, ca } = await startCli();
      const slow = await inFlight(url, ca, 1500);

      const signalledAt = Date.now();
      cli.child.kill(signal);
      const closedAt = await refusedAt(port, 1000);
      const { res, err, at: finishedAt } = await slow.done;

      expect(err).toBeUndefined();
      expect(res!.status).toBe(200);
      expect(res!.json()).toEqual({ slow: true });
      // Refused while the slow request was still running, not merely after everything ended.
      expect(closedAt).toBeLessThan(finishedAt);
      expect(closedAt - signalledAt).toBeLessThan(1000);
      expect(await cli.exited).toBe(0);
      expect(cli.output().stdout).toMatch(/"signal":"SIG(TERM|INT)"[^\n]*"msg":"shutting down/);
      expect(cli.output().stdout).toContain('"msg":"mlgate stopped"');
    });
  }

  it('cuts a request that outlives shutdownGrace and still exits 0 promptly', async () => {
    const { cli, url, port, ca } = await startCli({ MLGATE_SHUTDOWN_GRACE: '300ms' });
    const slow = await inFlight(url, ca, 5000);

    const signalledAt = Date.now();
    cli.child.kill('SIGTERM');
    await refusedAt(port, 1000);
    const code = await cli.exited;
    const exitedAfter = Date.now() - signalledAt;
    const { res, err } = await slow.done;

    expect(code).toBe(0);
    expect(exitedAfter).toBeGreaterThanOrEqual(250);
    expect(exitedAfter).toBeLessThan(3000);
    expect(res, 'the 5 s request should have been cut, not answered').toBeUndefined();
    expect(err!.message).toMatch(/socket hang up|ECONNRESET|aborted/i);
    expect(cli.output().stdout).toContain('grace period over');
  });

  it('a second signal during the grace period stops at once with status 1', async () => {
    const { cli, url, ca } = await startCli();
    const slow = await inFlight(url, ca, 5000);
    cli.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const signalledAt = Date.now();
    cli.child.kill('SIGINT');
    expect(await cli.exited).toBe(1);
    expect(Date.now() - signalledAt).toBeLessThan(2000);
    expect((await slow.done).res).toBeUndefined();
  });
});

describe('closing the gateway', () => {
  it('closes its kept-alive upstream connections instead of leaving them to time out', async () => {
    let open = 0;
    const mlflow = http.createServer((_req, res) => res.end('{}'));
    mlflow.keepAliveTimeout = 60_000; // so only the gateway can be the one closing them
    mlflow.on('connection', (socket) => {
      open++;
      socket.on('close', () => open--);
    });
    await new Promise<void>((resolve) => mlflow.listen(0, '127.0.0.1', resolve));
    try {
      const gw = await startTestGateway({ upstream: `http://127.0.0.1:${(mlflow.address() as AddressInfo).port}` });
      await Promise.all([1, 2, 3].map(() => gw.request('/api/2.0/mlflow/experiments/search', { auth: ALICE })));
      expect(open).toBeGreaterThan(0);

      await gw.close(1000);
      const deadline = Date.now() + 1000;
      while (open > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(open).toBe(0);
    } finally {
      mlflow.closeAllConnections();
      mlflow.close();
    }
  });
});
