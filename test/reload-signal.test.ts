// `systemctl reload mlgate` (SIGHUP): the users, tokens and policy files are read again at once,
// not at the next change the file watch sees (here an hour away), and a broken file keeps what is in force.
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines } from './helpers/gateway.ts';
import { basic, request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

let dir: string;
let upstream: MlflowUpstream;
let cli: RunningCli;
let url: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mlgate-sighup-'));
  upstream = await startMlflowUpstream();
  writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ admin: 'admin-password' }), { mode: 0o600 });
  writeFileSync(join(dir, 'mlgate.yaml'), `upstream: ${upstream.url}\nwatchInterval: 1h\nauth:\n  htpasswd: htpasswd\nauthz:\n  policyFile: policy.yaml\n`);
  cli = spawnCli(['serve', '--port', '0', '--no-tls', '--config', 'mlgate.yaml'], { cwd: dir });
  url = await listeningUrl(cli);
});

afterAll(async () => {
  if (cli) await stopCli(cli);
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

const search = (user: string, password: string) => request(`${url}/api/2.0/mlflow/experiments/search?max_results=1`, { headers: { authorization: basic(user, password) } });

describe('SIGHUP', () => {
  it('reads a user added to the htpasswd file at once, not at the next watch', async () => {
    appendFileSync(join(dir, 'htpasswd'), await htpasswdLines({ carol: 'carol-password' }));
    expect((await search('carol', 'carol-password')).status).toBe(401); // the watch is an hour away
    cli.child.kill('SIGHUP');
    await cli.waitFor(/htpasswd file reloaded/);
    expect((await search('carol', 'carol-password')).status).toBe(200);
  });

  it('keeps the users in force when the file has a broken line, and keeps serving', async () => {
    appendFileSync(join(dir, 'htpasswd'), 'not a valid line\n');
    const before = cli.output().stdout.length;
    cli.child.kill('SIGHUP');
    await cli.waitFor(/keeping|previous users/);
    expect(cli.output().stdout.slice(before)).not.toContain('htpasswd file reloaded');
    expect((await search('carol', 'carol-password')).status).toBe(200);
    expect(cli.child.exitCode).toBeNull();
  });
});
