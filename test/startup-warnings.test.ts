// What `mlgate serve` says at start-up about a set-up that runs but would surprise someone later,
// each with the command that fixes it: nobody able to manage, MLflow not running, the port taken.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import { loadPolicy } from '../src/authz/policy.ts';
import { jsonLogLines, listeningUrl, runCli, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { htpasswdLines } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { freePort } from './helpers/tls.ts';

let upstream: MlflowUpstream;
let dir: string;
beforeAll(async () => { upstream = await startMlflowUpstream(); });
afterAll(async () => { await upstream.close(); });
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'mlgate-warnings-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Starts serve on plain HTTP, waits until it listens and until its start-up checks had time to log. */
async function serve(args: string[]): Promise<{ cli: RunningCli; warnings: () => string[] }> {
  const cli = spawnCli(['serve', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--log-level', 'info', ...args], { cwd: dir, env: { MLGATE_AUTH_BCRYPT_COST: '4' } });
  await listeningUrl(cli);
  const warnings = () => jsonLogLines(cli.output().stdout).filter((line) => line.level === 40).map((line) => String(line.msg));
  return { cli, warnings };
}

async function settle(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
}

describe('an htpasswd file without "admin" and no policy file', () => {
  it('warns once with the two-line policy that makes its first user an admin, and that policy works', async () => {
    writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ alice: 'a', bob: 'b' }), { mode: 0o600 });
    const { cli, warnings } = await serve(['--htpasswd', 'htpasswd', '--upstream', upstream.url]);
    const fix = "printf 'admins: [alice]\\ndefault: READ\\n' > config/policy.yaml";
    try {
      await settle(() => warnings().length > 0);
      expect(warnings()).toEqual([
        'nobody can manage permissions: there is no policy file (config/policy.yaml) and no user "admin" in htpasswd, the admin the built-in policy trusts. '
        + `Make alice an admin with: ${fix}`,
      ]);
    } finally {
      await stopCli(cli);
    }

    execFileSync('sh', ['-c', `mkdir -p config && ${fix}`], { cwd: dir });
    const policy = loadPolicy(join(dir, 'config', 'policy.yaml'));
    expect([...policy.admins.users]).toEqual(['alice']);
    expect(policy.defaultLevel).toBe('READ'); // as the built-in policy: only who is admin changes

    const again = await serve(['--htpasswd', 'htpasswd', '--upstream', upstream.url]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(again.warnings()).toEqual([]);
    } finally {
      await stopCli(again.cli);
    }
  });

  it('with sign-in through identity providers only: no password file is made, and the warning says to name admins in the policy', async () => {
    writeFileSync(join(dir, 'mlgate.yaml'), [
      'auth: { passwordSignIn: false }',
      // Discovery is on the first sign-in: the provider need not answer for the gateway to start.
      'oidc: { providers: [{ name: corp, issuer: "https://127.0.0.1:1/realms/corp", clientId: mlgate, namePrefix: "corp:" }] }',
      '',
    ].join('\n'));
    const { cli, warnings } = await serve(['--config', 'mlgate.yaml', '--upstream', upstream.url]);
    let fix: string;
    try {
      await settle(() => warnings().length > 0);
      expect(warnings()).toEqual([expect.stringMatching(/^nobody can manage permissions: people sign in only through identity providers, and the policy file \(config\/policy\.yaml\) names no admins\. .*printf/)]);
      fix = /e\.g\.: (printf .*)$/.exec(warnings()[0]!)![1]!;
      expect(existsSync(join(dir, 'config', 'htpasswd'))).toBe(false);
      expect(cli.output().stdout + cli.output().stderr).not.toMatch(/admin password/i);
    } finally {
      await stopCli(cli);
    }
    execFileSync('sh', ['-c', `mkdir -p config && ${fix}`], { cwd: dir });
    expect([...loadPolicy(join(dir, 'config', 'policy.yaml')).admins.groups]).toEqual(['mlflow-admins']);
    const again = await serve(['--config', 'mlgate.yaml', '--upstream', upstream.url]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(again.warnings()).toEqual([]);
    } finally {
      await stopCli(again.cli);
    }
  });

  it('says nothing when "admin" is in the file', async () => {
    writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ alice: 'a', admin: 'b' }), { mode: 0o600 });
    const { cli, warnings } = await serve(['--htpasswd', 'htpasswd', '--upstream', upstream.url]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(warnings()).toEqual([]);
    } finally {
      await stopCli(cli);
    }
  });
});

describe('an upstream that does not answer at start-up', () => {
  it('gets one warning line naming it and the "mlflow server" command; requests still get their 502', async () => {
    writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ admin: 'admin-password' }), { mode: 0o600 });
    const port = await freePort();
    const { cli, warnings } = await serve(['--htpasswd', 'htpasswd', '--upstream', `http://127.0.0.1:${port}`]);
    try {
      await settle(() => warnings().length > 0);
      expect(warnings()).toEqual([
        `the MLflow tracking server at http://127.0.0.1:${port} does not answer (ECONNREFUSED); requests get 502 until it does. Start it with: mlflow server --host 127.0.0.1 --port ${port}`,
      ]);
      expect(cli.child.exitCode).toBeNull();
    } finally {
      await stopCli(cli);
    }
  });
});

describe('a port that is already in use', () => {
  it('stops start-up with a message that suggests --port', async () => {
    writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ admin: 'admin-password' }), { mode: 0o600 });
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const result = runCli(['serve', '--port', String(port), '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'htpasswd', '--upstream', upstream.url], { cwd: dir });
      expect(result.status).toBe(1);
      expect(result.stderr).toBe(`mlgate: port ${port} on 127.0.0.1 is already in use (another mlgate, or another program); stop that, or choose another port with: npm run mlgate -- serve --port ${port + 1}\n`);
    } finally {
      taken.close();
    }
  });
});
