// `npm start` on a fresh checkout: no config file, no users, no certificate, MLflow maybe not running.
// The real CLI runs in an empty directory, as a user would run it, and is checked from the outside.
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.ts';
import { jsonLogLines, listeningUrl, spawnCli, stopCli, type RunningCli } from './helpers/cli.ts';
import { request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { fingerprintOf, freePort, isListening, probeTls } from './helpers/tls.ts';

const DEFAULT_UPSTREAM_PORT = 5000;
const upstreamPortBusy = await isListening(DEFAULT_UPSTREAM_PORT);
const pythonRequests = spawnSync('python3', ['-c', 'import requests'], { encoding: 'utf8' }).status === 0;

// What MLFLOW_TRACKING_SERVER_CERT_PATH does in the MLflow client: requests' verify=<file>.
// Also a handshake with VERIFY_X509_STRICT, which Python 3.13+ and urllib3 2.3+ turn on by default.
const PYTHON_CLIENT = `
import json, os, socket, ssl, requests
url, cert, auth = os.environ["URL"], os.environ["CERT"], (os.environ["USER_NAME"], os.environ["USER_PASSWORD"])
out = {}
r = requests.get(url + "/api/2.0/mlflow/experiments/search?max_results=5", auth=auth, verify=cert, timeout=20)
out["status"], out["body"] = r.status_code, r.json()
out["no_credentials"] = requests.get(url + "/api/2.0/mlflow/experiments/search", verify=cert, timeout=20).status_code
try:
    requests.get(url + "/-/healthz", timeout=20)
    out["system_trust"] = "accepted"
except requests.exceptions.SSLError:
    out["system_trust"] = "refused"
ctx = ssl.create_default_context(cafile=cert)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
host, port = url.split("//")[1].rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=20) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
    out["strict"] = tls.version()
print(json.dumps(out))
`;

/** Async on purpose: a blocking spawnSync would freeze the in-process upstream Python is talking to. */
async function runPythonClient(url: string, cert: string, user: string, password: string) {
  const child = spawn('python3', ['-c', PYTHON_CLIENT], {
    // The test runner's CA settings must not decide what Python trusts.
    env: { PATH: process.env.PATH, HOME: process.env.HOME, URL: url, CERT: cert, USER_NAME: user, USER_PASSWORD: password },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; });
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; });
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (status !== 0) throw new Error(`python client failed (${status}):\n${stderr}`);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { status: number; body: unknown; no_credentials: number; system_trust: string; strict: string };
}

/** Stands in for "mlflow server" on its default port, relaying to the fake MLflow upstream. */
function relayDefaultPort(targetPort: number): Promise<{ close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const target = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, target]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => { client.destroy(); target.destroy(); });
    }
    client.pipe(target).pipe(client);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(DEFAULT_UPSTREAM_PORT, '127.0.0.1', () => resolve({
      // The gateway keeps upstream connections alive; close() would otherwise wait for them.
      close: () => new Promise<void>((done) => {
        server.close(() => done());
        sockets.forEach((socket) => socket.destroy());
      }),
    }));
  });
}

let dir: string;
let upstream: MlflowUpstream;
let cli: RunningCli;
let url: string;
let password: string;
let firstCertificate: string;
let firstHtpasswd: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mlgate-first-start-'));
  upstream = await startMlflowUpstream();
  // Only the port differs from `npm start`, so tests can run beside a real gateway on 8888.
  cli = spawnCli(['serve', '--port', '0'], { cwd: dir });
  url = await listeningUrl(cli);
});

afterAll(async () => {
  if (cli) await stopCli(cli, 'SIGKILL').catch(() => {});
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('first start with no configuration at all', () => {
  it('uses the embedded defaults: TLS on 0.0.0.0:8888 in front of http://127.0.0.1:5000', async () => {
    const { config, file } = loadConfig({ env: {}, cwd: dir });
    expect(file).toBeUndefined();
    expect(config).toMatchObject({ host: '0.0.0.0', port: 8888, upstream: ['http://127.0.0.1:5000'], tls: { enabled: true, selfSignedDir: 'certs' }, auth: { htpasswd: 'config/htpasswd' } });

    const listening = jsonLogLines(cli.output().stdout).find((line) => line.msg === 'mlgate listening')!;
    expect(listening).toMatchObject({ upstream: 'http://127.0.0.1:5000', tls: true, users: 1 });
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    // 0.0.0.0 means every interface: the gateway answers on a non-loopback address too.
    const external = Object.values(networkInterfaces()).flat().find((nic) => nic && nic.family === 'IPv4' && !nic.internal);
    if (external) {
      const port = Number(new URL(url).port);
      expect(await isListening(port, external.address)).toBe(true);
    }
  });

  it('creates config/htpasswd (0600) with "admin" and prints the password once, on stderr only', () => {
    const { stdout, stderr } = cli.output();
    const printed = /user:\s+(\S+)\s*\n\s*password:\s+(\S+)/.exec(stderr);
    expect(printed, `stderr was:\n${stderr}`).not.toBeNull();
    expect(printed![1]).toBe('admin');
    password = printed![2]!;
    expect(password.length).toBeGreaterThanOrEqual(16);
    expect(stderr).toMatch(/^.*Change it with: .*passwd admin\s*$/m);

    const htpasswd = join(dir, 'config', 'htpasswd');
    expect(statSync(htpasswd).mode & 0o777).toBe(0o600);
    firstHtpasswd = readFileSync(htpasswd, 'utf8');
    expect(firstHtpasswd).toMatch(/^admin:\$2[aby]\$\d\d\$/);
    expect(firstHtpasswd).not.toContain(password);

    const lines = jsonLogLines(stdout); // throws if anything but JSON log lines reached stdout
    expect(lines.length).toBeGreaterThan(0);
    expect(stdout).not.toContain(password);
  });

  it('generates a self-signed certificate in certs/ for loopback, ::1 and this machine, key 0600', async () => {
    const certFile = join(dir, 'certs', 'mlgate.crt');
    const keyFile = join(dir, 'certs', 'mlgate.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    firstCertificate = readFileSync(certFile, 'utf8');
    const cert = new X509Certificate(firstCertificate);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('::1')).toBeDefined();
    expect(cert.checkHost(hostname())).toBeDefined();
    expect(jsonLogLines(cli.output().stdout).some((line) => String(line.msg).startsWith('generated a self-signed TLS certificate'))).toBe(true);

    // Node's client pinned to the file verifies the server by IP and by name.
    const port = Number(new URL(url).port);
    const byIp = await probeTls(port, { ca: firstCertificate, servername: undefined });
    const byName = await probeTls(port, { ca: firstCertificate, servername: 'localhost' });
    expect(byIp.fingerprint256).toBe(cert.fingerprint256);
    expect(byName.fingerprint256).toBe(cert.fingerprint256);
    // ...and without the pin the same client refuses it, so the pin is what makes it trusted.
    await expect(probeTls(port, {})).rejects.toThrow(/self[- ]signed/i);
  });

  it("logs the names the certificate covers, this machine's addresses among them, and the command that adds one", () => {
    const addresses = [...new Set(Object.values(networkInterfaces()).flat()
      .filter((nic) => nic && !nic.internal && !/^fe80:|^169\.254\./i.test(nic.address)).map((nic) => nic!.address))];
    const lines = jsonLogLines(cli.output().stdout);
    const covers = lines.find((line) => line.msg === 'TLS certificate covers these names');
    expect(covers).toMatchObject({ cert: 'certs/mlgate.crt', addNames: 'npm run mlgate -- cert generate --host NAME --force' });
    expect(covers!.names).toEqual(['localhost', '127.0.0.1', '::1', hostname(), ...addresses]);
    expect(lines.some((line) => String(line.msg).includes('does not cover'))).toBe(false);
  });

  it("is trusted as each of this machine's non-loopback addresses by a client that connects over 127.0.0.1", async () => {
    const port = Number(new URL(url).port);
    const addresses = Object.values(networkInterfaces()).flat().filter((nic) => nic && !nic.internal && !/^fe80:|^169\.254\./i.test(nic.address)).map((nic) => nic!.address);
    for (const address of [...addresses, '203.0.113.77']) {
      const seen = probeTls(port, { ca: firstCertificate, servername: '', checkServerIdentity: (_host, cert) => tls.checkServerIdentity(address, cert) });
      if (address === '203.0.113.77') await expect(seen, 'an address of no machine').rejects.toThrow(/is not in the cert's list/);
      else expect((await seen).fingerprint256, address).toBe(new X509Certificate(firstCertificate).fingerprint256);
    }
  });

  it('never serves without credentials, even on first start', async () => {
    const ca = firstCertificate;
    for (const path of ['/api/2.0/mlflow/experiments/search', '/', '/-/whoami', '/static-files/index.html']) {
      const res = await request(url + path, { ca });
      expect(res.status, path).toBe(401);
      expect(res.headers['www-authenticate']).toMatch(/^Basic /);
    }
    expect((await request(`${url}/api/2.0/mlflow/experiments/search`, { ca, auth: ['admin', 'not-the-password'] })).status).toBe(401);
  });

  it.skipIf(upstreamPortBusy)('answers 502 naming the upstream and "mlflow server" while nothing runs on 127.0.0.1:5000', async () => {
    const res = await request(`${url}/api/2.0/mlflow/experiments/search`, { ca: firstCertificate, auth: ['admin', password] });
    expect(res.status).toBe(502);
    const body = res.json<{ error_code: string; message: string }>();
    expect(body.message).toContain('http://127.0.0.1:5000');
    expect(body.message).toMatch(/mlflow server --host 127\.0\.0\.1 --port 5000/);

    const page = await request(`${url}/`, { ca: firstCertificate, auth: ['admin', password], headers: { accept: 'text/html' } });
    expect(page.status).toBe(502);
    expect(page.text).toContain('mlflow server');
    expect(cli.child.exitCode).toBeNull(); // a missing upstream is not a reason to stop
  });

  it.skipIf(upstreamPortBusy)('forwards to http://127.0.0.1:5000 as soon as MLflow is started there', async () => {
    const relay = await relayDefaultPort(upstream.port);
    try {
      const res = await request(`${url}/api/2.0/mlflow/experiments/search`, { ca: firstCertificate, auth: ['admin', password], method: 'POST', body: '{"max_results":10}' });
      expect(res.status).toBe(200);
      expect(res.json()).toEqual({ experiments: [] });
      expect(upstream.requests.at(-1)!.headers['x-forwarded-user']).toBe('admin');
    } finally {
      await relay.close();
    }
  });

  it('exits 0 on SIGTERM', async () => {
    expect(await stopCli(cli, 'SIGTERM')).toBe(0);
  });
});

describe('second start in the same directory', () => {
  let second: RunningCli;
  let secondUrl: string;

  beforeAll(async () => {
    // Pointing at the fake MLflow through the environment, as a container would be configured.
    second = spawnCli(['serve', '--port', '0'], { cwd: dir, env: { MLGATE_UPSTREAM: upstream.url } });
    secondUrl = await listeningUrl(second);
  });
  afterAll(async () => {
    if (second) await stopCli(second, 'SIGKILL').catch(() => {});
  });

  it('prints no new password and keeps the users', () => {
    expect(second.output().stderr).not.toMatch(/password/i);
    expect(readFileSync(join(dir, 'config', 'htpasswd'), 'utf8')).toBe(firstHtpasswd);
  });

  it('reuses the certificate: same file, same fingerprint on the wire', async () => {
    expect(readFileSync(join(dir, 'certs', 'mlgate.crt'), 'utf8')).toBe(firstCertificate);
    expect(jsonLogLines(second.output().stdout).some((line) => String(line.msg).startsWith('generated a self-signed'))).toBe(false);
    const seen = await probeTls(Number(new URL(secondUrl).port), { ca: firstCertificate });
    expect(seen.fingerprint256).toBe(fingerprintOf(join(dir, 'certs', 'mlgate.crt')));
    expect(seen.fingerprint256).toBe(new X509Certificate(firstCertificate).fingerprint256);
  });

  it('accepts the printed password through Node\'s https client pinned to the certificate', async () => {
    const res = await request(`${secondUrl}/api/2.0/mlflow/experiments/search`, { ca: firstCertificate, auth: ['admin', password], method: 'POST', body: '{"max_results":10}' });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ experiments: [] });
  });

  it.skipIf(!pythonRequests)('is trusted by Python requests with verify=certs/mlgate.crt (MLFLOW_TRACKING_SERVER_CERT_PATH), by name and by IP', async () => {
    const port = new URL(secondUrl).port;
    const certFile = join(dir, 'certs', 'mlgate.crt');
    const before = upstream.requests.length;
    for (const base of [`https://localhost:${port}`, `https://127.0.0.1:${port}`]) {
      const out = await runPythonClient(base, certFile, 'admin', password);
      expect(out.status, base).toBe(200);
      expect(out.body).toEqual({ experiments: [] });
      expect(out.no_credentials).toBe(401);
      expect(out.system_trust).toBe('refused');
      expect(out.strict).toMatch(/^TLSv1\.[23]$/);
    }
    const seen = upstream.requests.slice(before).filter((r) => r.url.startsWith('/api/2.0/mlflow/experiments/search'));
    expect(seen).toHaveLength(2);
    expect(seen.every((r) => r.headers['x-forwarded-user'] === 'admin')).toBe(true);
  });

  it('exits 0 on SIGINT (Ctrl-C)', async () => {
    expect(await stopCli(second, 'SIGINT')).toBe(0);
  });
});

describe('an upstream that is down', () => {
  it('is not a start-up error: the gateway starts and answers 502 naming it and how to start MLflow', async () => {
    const closedPort = await freePort();
    const down = spawnCli(['serve', '--port', '0'], { cwd: dir, env: { MLGATE_UPSTREAM: `http://127.0.0.1:${closedPort}` } });
    try {
      const downUrl = await listeningUrl(down);
      const res = await request(`${downUrl}/api/2.0/mlflow/experiments/search`, { ca: firstCertificate, auth: ['admin', password] });
      expect(res.status).toBe(502);
      expect(res.json<{ message: string }>().message).toContain(`http://127.0.0.1:${closedPort}`);
      expect(res.json<{ message: string }>().message).toContain(`mlflow server --host 127.0.0.1 --port ${closedPort}`);
      expect(down.child.exitCode).toBeNull();
    } finally {
      expect(await stopCli(down)).toBe(0);
    }
  });
});

if (upstreamPortBusy) {
  describe('the default upstream port', () => {
    it.skip('skipped: something already listens on 127.0.0.1:5000, so "MLflow not running" and "forwards to :5000" cannot be shown here', () => {});
  });
}

if (!pythonRequests) {
  describe('Python requests client', () => {
    it.skip('skipped: python3 cannot "import requests" on this machine (pip install requests to run it)', () => {});
  });
}

describe('the first-start banner\'s "Change it with" command', () => {
  it('names the htpasswd file when it is not the default one the CLI finds by itself', async () => {
    const { changePasswordCommand } = await import('../src/auth/bootstrap-admin.ts');
    // The tests run in a checkout: the CLI is `npm run mlgate --` there.
    expect(changePasswordCommand('admin', 'config/htpasswd')).toBe('npm run mlgate -- user passwd admin');
    expect(changePasswordCommand('admin', join(process.cwd(), 'config', 'htpasswd'))).toBe('npm run mlgate -- user passwd admin');
    expect(changePasswordCommand('admin', '/srv/mlgate/htpasswd')).toBe('npm run mlgate -- user passwd admin --htpasswd /srv/mlgate/htpasswd');
    expect(changePasswordCommand('admin', '/srv/my users/htpasswd')).toBe("npm run mlgate -- user passwd admin --htpasswd '/srv/my users/htpasswd'");
  });

  it('is the one the banner prints', async () => {
    const { vi } = await import('vitest');
    const { printAdminPassword } = await import('../src/server/gateway.ts');
    const written: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => { written.push(String(chunk)); return true; });
    try {
      printAdminPassword('admin', 'not-a-real-password', '/srv/mlgate/htpasswd');
    } finally {
      spy.mockRestore();
    }
    expect(written.join('')).toContain('Change it with: npm run mlgate -- user passwd admin --htpasswd /srv/mlgate/htpasswd\n');
  });
});
