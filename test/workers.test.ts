// `workers: auto` runs one gateway process per core on one port, like nginx's worker_processes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLogLines, listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines } from './helpers/gateway.ts';
import { request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let upstream: MlflowUpstream;
let dir: string;
let cli: RunningCli;
let url: string;

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  dir = mkdtempSync(join(tmpdir(), 'mlgate-workers-'));
  writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
  cli = spawnCli(['serve', '--workers', '2', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
    cwd: dir,
    env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
  });
  url = await listeningUrl(cli);
  await cli.waitFor(/"msg":"mlgate listening"[^\n]*\n[^]*"msg":"mlgate listening"/);
});
afterAll(async () => {
  if (cli) await stopCli(cli);
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('several worker processes', () => {
  it('serve the same port from two processes, each authenticating', async () => {
    const listening = jsonLogLines(cli.output().stdout).filter((line) => line.msg === 'mlgate listening');
    expect(new Set(listening.map((line) => line.pid)).size).toBe(2);
    expect(new Set(listening.map((line) => line.url))).toEqual(new Set([url]));

    // A new connection per request: the primary hands connections to the workers in turn.
    for (let i = 0; i < 8; i++) {
      expect((await request(`${url}/echo`, { auth: ['alice', 'alice-password'] })).status).toBe(200);
      expect((await request(`${url}/echo`, { auth: ['alice', 'wrong'] })).status).toBe(401);
    }
    await cli.waitFor(/(?:"msg":"request"[^]*){16}/);
    const served = jsonLogLines(cli.output().stdout).filter((line) => line.msg === 'request');
    expect(new Set(served.map((line) => line.pid)).size).toBe(2);
  });

  it('stop together on SIGTERM and exit 0', async () => {
    expect(await stopCli(cli)).toBe(0);
    const stopped = jsonLogLines(cli.output().stdout).filter((line) => line.msg === 'mlgate stopped');
    expect(stopped.length).toBe(3); // two workers and the primary
  });
});

describe('workers that cannot start', () => {
  it('stop the primary with the reason when the port is taken, instead of restarting them forever', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const blocked = spawnCli(['serve', '--workers', '2', '--port', String(port), '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], {
      cwd: dir,
      env: { MLGATE_AUTH_BCRYPT_COST: '4', MLGATE_AUTH_HASH_WORKERS: '1' },
    });
    try {
      expect(await blocked.exited).toBe(1);
      const output = blocked.output().stdout + blocked.output().stderr;
      expect(output).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(output).toContain('a worker failed to start');
      expect(output).not.toContain('worker died; starting another');
    } finally {
      if (blocked.child.exitCode === null) blocked.child.kill('SIGKILL');
      taken.close();
    }
  });
});
