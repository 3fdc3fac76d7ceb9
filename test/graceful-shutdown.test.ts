// SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) against the real CLI: requests already in
// flight finish, new connections are refused, and the process exits 0 within the grace period.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { jsonLogLines, listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines, startTestGateway } from './helpers/gateway.ts';
import { request, type TestResponse } from './helpers/http-client.ts';
import { isListening } from './helpers/tls.ts';

const ALICE: [string, string] = ['alice', 'alice-password'];

/**
 * An upstream that answers /slow only when the test releases it: "still in flight" is then a state
 * the test controls, not a duration it hopes is long enough.
 */
interface HoldingUpstream {
  url: string;
  /** Resolves once the request tagged so has reached the upstream. */
  arrived(tag: string): Promise<void>;
  release(tag: string): void;
  close(): Promise<void>;
}

async function startHoldingUpstream(): Promise<HoldingUpstream> {
  const held = new Map<string, http.ServerResponse>();
  const waiting = new Map<string, () => void>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const tag = url.pathname === '/slow' ? url.searchParams.get('tag') : null;
    if (tag === null) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    held.set(tag, res);
    waiting.get(tag)?.();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    arrived: (tag) => (held.has(tag) ? Promise.resolve() : new Promise((resolve) => waiting.set(tag, resolve))),
    release(tag) {
      held.get(tag)!.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ slow: true }));
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

let upstream: HoldingUpstream;
let dir: string;
let running: RunningCli | undefined;

beforeAll(async () => {
  upstream = await startHoldingUpstream();
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
  // One process: these tests read one process's shutdown log (workers stopping together: test/workers.test.ts).
  const cli = spawnCli(['serve', '--port', '0', '--host', '127.0.0.1'], { cwd: dir, env: { MLGATE_UPSTREAM: upstream.url, MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_WORKERS: '1', ...env } });
  running = cli;
  const url = await listeningUrl(cli);
  return { cli, url, port: Number(new URL(url).port), ca: readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8') };
}

interface HeldRequest {
  tag: string;
  done: Promise<{ res?: TestResponse; err?: Error }>;
  /** Whether the client has its answer (or error) yet. */
  settled(): boolean;
}

/** Sends a request the upstream holds until released; resolves once the upstream has it. */
async function inFlight(url: string, ca: string): Promise<HeldRequest> {
  const tag = Math.random().toString(36).slice(2);
  let settled = false;
  const done = request(`${url}/slow?tag=${tag}`, { ca, auth: ALICE })
    .then((res) => ({ res }), (err: Error) => ({ err }))
    .finally(() => (settled = true));
  await upstream.arrived(tag);
  return { tag, done, settled: () => settled };
}

/** Polls with fresh connections until the port refuses them. */
async function refused(port: number): Promise<void> {
  // Only against hanging: 30 s is no claim about how soon, just a clearer failure than the test's timeout.
  const giveUp = Date.now() + 30_000;
  while (await isListening(port)) {
    if (Date.now() > giveUp) throw new Error(`port ${port} still accepts connections after the signal`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The process's own log lines, with the time its clock gave each. */
function logged(cli: RunningCli): { msg: string; time: number; inFlight?: number }[] {
  return jsonLogLines(cli.output().stdout) as unknown as { msg: string; time: number; inFlight?: number }[];
}

describe('graceful shutdown of the real CLI', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: finishes the in-flight request, refuses new connections meanwhile, exits 0`, async () => {
      // A grace period no test outlasts: only the held request decides when shutdown may end.
      const { cli, url, port, ca } = await startCli({ MLGATE_SHUTDOWN_GRACE: '1h' });
      const slow = await inFlight(url, ca);

      cli.child.kill(signal);
      await refused(port);
      // Refused while the request was still in flight: the upstream has not even answered it.
      expect(slow.settled()).toBe(false);
      expect(cli.child.exitCode).toBeNull();

      upstream.release(slow.tag);
      const { res, err } = await slow.done;
      expect(err).toBeUndefined();
      expect(res!.status).toBe(200);
      expect(res!.json()).toEqual({ slow: true });
      expect(await cli.exited).toBe(0);
      expect(cli.output().stdout).toMatch(/"signal":"SIG(TERM|INT)"[^\n]*"msg":"shutting down/);
      expect(cli.output().stdout).toContain('"msg":"mlgate stopped"');
    });
  }

  it('cuts a request that outlives shutdownGrace, after waiting that long, and exits 0', async () => {
    const { cli, url, port, ca } = await startCli({ MLGATE_SHUTDOWN_GRACE: '300ms' });
    const slow = await inFlight(url, ca); // never released: only the grace period can end it

    cli.child.kill('SIGTERM');
    await refused(port);
    expect(await cli.exited).toBe(0);
    const { res, err } = await slow.done;
    expect(res, 'the held request should have been cut, not answered').toBeUndefined();
    expect(err!.message).toMatch(/socket hang up|ECONNRESET|aborted/i);

    // By the process's own clock, which cannot run short: it waited the whole grace period with
    // the request in flight before cutting it.
    const lines = logged(cli);
    const shuttingDown = lines.find((line) => line.msg.startsWith('shutting down'));
    const graceOver = lines.find((line) => line.msg.includes('grace period over'));
    const stopped = lines.find((line) => line.msg === 'mlgate stopped');
    expect(graceOver?.inFlight).toBe(1);
    expect(graceOver!.time - shuttingDown!.time).toBeGreaterThanOrEqual(300);
    expect(lines.indexOf(stopped!)).toBeGreaterThan(lines.indexOf(graceOver!));
  });

  it('a second signal during the grace period stops at once with status 1', async () => {
    const { cli, url, port, ca } = await startCli({ MLGATE_SHUTDOWN_GRACE: '1h' });
    const slow = await inFlight(url, ca); // never released
    cli.child.kill('SIGTERM');
    await refused(port); // the first signal was taken: the shutdown is under way
    cli.child.kill('SIGINT');
    // With an hour of grace and a request that never ends, only the second signal can end it, and
    // status 1 says it did.
    expect(await cli.exited).toBe(1);
    expect((await slow.done).res).toBeUndefined();
    expect(cli.output().stdout).not.toContain('"msg":"mlgate stopped"');
  });
});

describe('closing the gateway', () => {
  it('closes its kept-alive upstream connections instead of leaving them to time out', async () => {
    let open = 0;
    let allClosed: () => void = () => {};
    const mlflow = http.createServer((_req, res) => res.end('{}'));
    mlflow.keepAliveTimeout = 0; // never closes an idle connection: only the gateway can
    mlflow.on('connection', (socket) => {
      open++;
      socket.on('close', () => {
        if (--open === 0) allClosed();
      });
    });
    await new Promise<void>((resolve) => mlflow.listen(0, '127.0.0.1', resolve));
    // The gateway's idle-connection sweep runs on a fake clock that never moves, so it cannot be
    // what closes them either.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const gw = await startTestGateway({ upstream: `http://127.0.0.1:${(mlflow.address() as AddressInfo).port}` });
      await Promise.all([1, 2, 3].map(() => gw.request('/api/2.0/mlflow/experiments/search', { auth: ALICE })));
      expect(open).toBeGreaterThan(0);

      const closed = new Promise<void>((resolve) => (allClosed = resolve));
      await gw.close(1000);
      await closed;
      expect(open).toBe(0);
    } finally {
      vi.useRealTimers();
      mlflow.closeAllConnections();
      mlflow.close();
    }
  });
});
