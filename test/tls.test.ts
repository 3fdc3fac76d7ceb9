// TLS termination as clients see it: chains, protocol floors, renewal without restarts, HSTS, the
// plain-HTTP redirect port and --no-tls. Every client here verifies the certificate it is shown.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureCertificate, generateSelfSignedCertificate, selfSignedNames } from '../src/server/certificate.ts';
import { jsonLogLines, listeningUrl, spawnCli, stopCli } from './helpers/cli.ts';
import { htpasswdLines, startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { request } from './helpers/http-client.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { fingerprintOf, freePort, hasOpenssl, makeCertificateChain, probeTls } from './helpers/tls.ts';

const opensslMissing = !hasOpenssl();
const ALICE: [string, string] = ['alice', 'alice-password'];

let upstream: MlflowUpstream;
let work: string;
const gateways: TestGateway[] = [];

async function gateway(config: Record<string, unknown> = {}, tlsOn = true): Promise<TestGateway> {
  const gw = await startTestGateway({ upstream: upstream.url, config, tls: tlsOn });
  gateways.push(gw);
  return gw;
}

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  work = mkdtempSync(join(tmpdir(), 'mlgate-tls-'));
});
afterAll(async () => {
  await Promise.all(gateways.map((gw) => gw.close(0)));
  await upstream.close();
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(opensslMissing)('certificate and key from files (made with openssl)', () => {
  it('serves the intermediate from a chain file, so clients that trust only the root verify it', async () => {
    const set = makeCertificateChain(work, 'chain');
    const gw = await gateway({ tls: { cert: set.chain, key: set.key } });
    const root = readFileSync(set.root, 'utf8');

    const seen = await probeTls(gw.port, { ca: root });
    expect(seen.chain).toEqual(['mlgate leaf', 'chain test intermediate', 'chain test root']);
    expect(seen.fingerprint256).toBe(fingerprintOf(set.leaf));

    const res = await request(`${gw.url}/echo`, { ca: root, auth: ALICE });
    expect(res.status).toBe(200);
  });

  it('without the intermediate in the file the same client refuses (the control for the test above)', async () => {
    const set = makeCertificateChain(work, 'leafonly');
    const gw = await gateway({ tls: { cert: set.leaf, key: set.key } });
    await expect(probeTls(gw.port, { ca: readFileSync(set.root, 'utf8') })).rejects.toThrow(/unable to verify the first certificate/i);
  });

  it('refuses to start with a key that does not belong to the certificate, naming both files', async () => {
    const a = makeCertificateChain(work, 'mismatch-a');
    const b = makeCertificateChain(work, 'mismatch-b');
    await expect(startTestGateway({ upstream: upstream.url, config: { tls: { cert: a.chain, key: b.key } } }))
      .rejects.toThrow(new RegExp(`${a.chain}.*${b.key}.*cannot be used together`));
  });

  it('refuses to start with only one of tls.cert and tls.key instead of falling back to a self-signed one', async () => {
    const set = makeCertificateChain(work, 'half');
    await expect(startTestGateway({ upstream: upstream.url, config: { tls: { cert: set.chain } } })).rejects.toThrow(/tls\.cert: is set without tls\.key|tls\.key is not set/);
    await expect(startTestGateway({ upstream: upstream.url, config: { tls: { cert: join(work, 'missing.crt'), key: set.key } } }))
      .rejects.toThrow(/cannot read the TLS certificate \(tls\.cert\) .*missing\.crt: ENOENT/);
  });
});

describe('protocol versions', () => {
  // OpenSSL 3 will not even offer TLS 1.1 at its default security level; level 0 lets this client
  // really attempt it, so a refusal below comes from the gateway, not from the client.
  const tls11Client = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;

  it('accepts TLS 1.2 and 1.3 by default and refuses a client that can only do TLS 1.1', async () => {
    const gw = await gateway();
    expect((await probeTls(gw.port, { ca: gw.ca })).protocol).toBe('TLSv1.3');
    expect((await probeTls(gw.port, { ca: gw.ca, maxVersion: 'TLSv1.2' })).protocol).toBe('TLSv1.2');
    await expect(probeTls(gw.port, { ca: gw.ca, ...tls11Client })).rejects.toThrow(/protocol version|unsupported protocol|no protocols available/i);

    // The same client does get TLS 1.1 from a server that still allows it.
    const lenient = tls.createServer({ cert: gw.ca, key: readFileSync(join(gw.dir, 'certs', 'mlgate.key')), minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (socket) => socket.end());
    await new Promise<void>((resolve) => lenient.listen(0, '127.0.0.1', resolve));
    try {
      const port = (lenient.address() as { port: number }).port;
      expect((await probeTls(port, { ca: gw.ca, ...tls11Client })).protocol).toBe('TLSv1.1');
    } finally {
      lenient.close();
    }
  });

  it('tls.minVersion: TLSv1.3 refuses TLS 1.2, also after the certificate is reloaded', async () => {
    const gw = await gateway({ tls: { minVersion: 'TLSv1.3' } });
    expect((await probeTls(gw.port, { ca: gw.ca })).protocol).toBe('TLSv1.3');
    await expect(probeTls(gw.port, { ca: gw.ca, maxVersion: 'TLSv1.2' })).rejects.toThrow(/protocol version|unsupported protocol/i);

    const certs = join(gw.dir, 'certs');
    await generateSelfSignedCertificate({ cert: join(certs, 'mlgate.crt'), key: join(certs, 'mlgate.key') }, ['localhost', '127.0.0.1']);
    await waitForLog(gw.logs, (line) => line.msg === 'TLS certificate reloaded');
    const renewed = readFileSync(join(certs, 'mlgate.crt'), 'utf8');
    expect((await probeTls(gw.port, { ca: renewed })).fingerprint256).toBe(fingerprintOf(join(certs, 'mlgate.crt')));
    await expect(probeTls(gw.port, { ca: renewed, maxVersion: 'TLSv1.2' })).rejects.toThrow(/protocol version|unsupported protocol/i);
  });
});

/** A GET over a kept-alive agent, reporting which socket and which certificate it used. */
function keepAliveGet(url: string, agent: https.Agent): Promise<{ status: number; reused: boolean; fingerprint256: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, auth: ALICE.join(':') }, (res) => {
      const fingerprint256 = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, fingerprint256 }));
    });
    req.on('error', reject);
  });
}

describe('certificate renewal while running', () => {
  it('serves the new certificate to new connections and keeps open ones working', async () => {
    const live = { cert: join(work, 'live', 'server.crt'), key: join(work, 'live', 'server.key') };
    await generateSelfSignedCertificate(live, ['localhost', '127.0.0.1']);
    const oldPem = readFileSync(live.cert, 'utf8');
    const oldFingerprint = fingerprintOf(live.cert);
    const gw = await gateway({ tls: { cert: live.cert, key: live.key } });

    const next = { cert: join(work, 'next', 'server.crt'), key: join(work, 'next', 'server.key') };
    await generateSelfSignedCertificate(next, ['localhost', '127.0.0.1']);
    const newPem = readFileSync(next.cert, 'utf8');
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: [oldPem, newPem] });
    try {
      const before = await keepAliveGet(`${gw.url}/echo`, agent);
      expect(before).toMatchObject({ status: 200, reused: false, fingerprint256: oldFingerprint });

      // Renewal the way certbot's deploy hook or a hand copy does it: the key first, then the
      // certificate. In between they disagree, and the gateway must keep serving the old pair.
      copyFileSync(next.key, live.key);
      await waitForLog(gw.logs, (line) => line.msg === 'TLS certificate reload failed; keeping the previous one');
      expect((await probeTls(gw.port, { ca: [oldPem, newPem] })).fingerprint256).toBe(oldFingerprint);
      copyFileSync(next.cert, live.cert);
      await waitForLog(gw.logs, (line) => line.msg === 'TLS certificate reloaded');

      const fresh = await probeTls(gw.port, { ca: newPem });
      expect(fresh.fingerprint256).toBe(fingerprintOf(next.cert));
      expect(fresh.fingerprint256).not.toBe(before.fingerprint256);

      // The connection opened before the renewal is still up, still on the old certificate.
      const after = await keepAliveGet(`${gw.url}/echo`, agent);
      expect(after).toMatchObject({ status: 200, reused: true, fingerprint256: before.fingerprint256 });
    } finally {
      agent.destroy();
    }
  });
});

describe('Strict-Transport-Security', () => {
  it('is sent on every HTTPS response by default, including errors and health checks', async () => {
    const gw = await gateway();
    for (const [path, auth, status] of [['/echo', ALICE, 200], ['/echo', undefined, 401], ['/-/healthz', undefined, 200]] as const) {
      const res = await gw.request(path, { auth: auth as [string, string] | undefined });
      expect(res.status).toBe(status);
      expect(res.headers['strict-transport-security'], path).toBe('max-age=31536000');
    }
  });

  it('takes its value from tls.hsts, and tls.hsts: false turns it off', async () => {
    const custom = await gateway({ tls: { hsts: 'max-age=600; includeSubDomains' } });
    expect((await custom.request('/echo', { auth: ALICE })).headers['strict-transport-security']).toBe('max-age=600; includeSubDomains');
    const off = await gateway({ tls: { hsts: false } });
    const res = await off.request('/echo', { auth: ALICE });
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toBeUndefined();
  });

  it('is never sent over plain HTTP (tls.enabled: false), even when configured', async () => {
    const plain = await gateway({ tls: { hsts: 'max-age=600' } }, false);
    expect(plain.url).toMatch(/^http:\/\//);
    const res = await plain.request('/echo', { auth: ALICE });
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toBeUndefined();
  });
});

/** A plain-HTTP request with whatever Host header and request target a client cares to send. */
function plainRequest(port: number, path: string, headers: http.OutgoingHttpHeaders = {}, method = 'GET'): Promise<{ status: number; location?: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }));
    });
    req.on('error', reject);
    req.end(method === 'POST' ? '{"name":"x"}' : undefined);
  });
}

describe('plain-HTTP redirect port (tls.redirectHttpPort)', () => {
  let gw: TestGateway;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    gw = await gateway({ tls: { redirectHttpPort: port, hosts: ['mlflow.example.org'] } });
  });

  it('answers 308 to the HTTPS port with path and query kept', async () => {
    // A run that exists, so that the request the redirect leads to is one MLflow answers with 200.
    const run = upstream.store.addRun(upstream.store.addExperiment('redirected').experiment_id).info.run_id;
    const res = await plainRequest(port, `/api/2.0/mlflow/runs/get?run_id=${run}&x=%2Fy`, { host: `127.0.0.1:${port}` });
    expect(res.status).toBe(308);
    expect(res.location).toBe(`https://127.0.0.1:${gw.port}/api/2.0/mlflow/runs/get?run_id=${run}&x=%2Fy`);

    // The target is the gateway itself: a verifying client following it lands on the login.
    const followed = await request(res.location!, { ca: gw.ca });
    expect(followed.status).toBe(401);
    expect((await request(res.location!, { ca: gw.ca, auth: ALICE })).status).toBe(200);
  });

  it('keeps host names the certificate covers', async () => {
    expect((await plainRequest(port, '/x', { host: 'localhost' })).location).toBe(`https://localhost:${gw.port}/x`);
    expect((await plainRequest(port, '/x', { host: `MLflow.Example.org:${port}` })).location).toBe(`https://mlflow.example.org:${gw.port}/x`);
  });

  it('cannot be bent to another host by a malicious Host header or request target', async () => {
    const expected = `https://127.0.0.1:${gw.port}/x?y=1`;
    for (const host of ['evil.example.com', `evil.example.com:${port}`, 'mlflow.example.org@evil.example.com', 'mlflow.example.org/evil', '[::ffff:1.2.3.4]', '']) {
      const res = await plainRequest(port, '/x?y=1', { host });
      expect(res.status, host).toBe(308);
      expect(res.location, host).toBe(expected);
    }
    const absolute = await plainRequest(port, 'http://evil.example.com/x?y=1', { host: 'evil.example.com' });
    expect(absolute.location).toBe(expected);
    const doubleSlash = await plainRequest(port, '//evil.example.com/x', { host: '127.0.0.1' });
    expect(new URL(doubleSlash.location!).host).toBe(`127.0.0.1:${gw.port}`);
  });

  it('only redirects: nothing reaches the upstream over plain HTTP, even with valid credentials', async () => {
    const before = upstream.requests.length;
    const res = await plainRequest(port, '/api/2.0/mlflow/experiments/create', { authorization: `Basic ${Buffer.from(ALICE.join(':')).toString('base64')}`, 'content-type': 'application/json' }, 'POST');
    expect(res.status).toBe(308);
    expect(upstream.requests.length).toBe(before);
  });
});

describe('self-signed certificate generation (certificate.ts)', () => {
  const tlsConfig = (dir: string, hosts: string[] = []) => ({
    enabled: true, selfSignedDir: dir, hosts, minVersion: 'TLSv1.2' as const, hsts: 'max-age=1', cert: undefined, key: undefined, redirectHttpPort: undefined,
  });

  it('covers loopback, ::1, this machine and every tls.hosts name or IP; key 0600', async () => {
    const dir = join(work, 'gen-names');
    const result = await ensureCertificate(tlsConfig(dir, ['mlflow.example.org', '10.1.2.3', '[fd00::7]', '*.internal.example']));
    expect(result.generated).toBe(true);
    const cert = new X509Certificate(readFileSync(result.cert));
    for (const name of ['localhost', hostname(), 'mlflow.example.org', 'runs.internal.example']) expect(cert.checkHost(name), name).toBeDefined();
    for (const ip of ['127.0.0.1', '::1', '10.1.2.3', 'fd00::7']) expect(cert.checkIP(ip), ip).toBeDefined();
    expect(cert.checkHost('other.example.org')).toBeUndefined();
    expect(cert.ca).toBe(true); // its own trust anchor when pinned
    expect(statSync(result.key).mode & 0o777).toBe(0o600);
    const addresses = Object.values(networkInterfaces()).flat().filter((nic) => nic && !nic.internal && !/^fe80:|^169\.254\./i.test(nic.address)).map((nic) => nic!.address);
    expect(selfSignedNames(['[::1]', 'localhost', '[FD00:0:0:0:0:0:0:7]', 'fd00::7'])).toEqual(['localhost', '127.0.0.1', '::1', hostname(), ...new Set(addresses), 'fd00::7']);
  });

  it('reuses the pair while it fits, and replaces it when tls.hosts grows, the key is wrong or it expired', async () => {
    const dir = join(work, 'gen-reuse');
    const first = await ensureCertificate(tlsConfig(dir, ['a.example.org']));
    const pem = readFileSync(first.cert, 'utf8');
    expect(await ensureCertificate(tlsConfig(dir, ['a.example.org']))).toMatchObject({ generated: false });
    expect(await ensureCertificate(tlsConfig(dir, []))).toMatchObject({ generated: false });
    expect(readFileSync(first.cert, 'utf8')).toBe(pem);

    const grown = await ensureCertificate(tlsConfig(dir, ['a.example.org', 'b.example.org']));
    expect(grown).toMatchObject({ generated: true, reason: expect.stringContaining('b.example.org') });
    expect(new X509Certificate(readFileSync(grown.cert)).checkHost('b.example.org')).toBe('b.example.org');

    const other = join(work, 'gen-other');
    await generateSelfSignedCertificate({ cert: join(other, 'c.crt'), key: join(other, 'c.key') }, ['localhost']);
    copyFileSync(join(other, 'c.key'), first.key);
    expect(await ensureCertificate(tlsConfig(dir, ['a.example.org']))).toMatchObject({ generated: true, reason: 'the key does not belong to the certificate' });

    await generateSelfSignedCertificate({ cert: first.cert, key: first.key }, selfSignedNames(['a.example.org']), 0);
    expect(await ensureCertificate(tlsConfig(dir, ['a.example.org']))).toMatchObject({ generated: true, reason: expect.stringMatching(/expired/) });
    expect(Date.parse(new X509Certificate(readFileSync(first.cert)).validTo)).toBeGreaterThan(Date.now());
  });
});

describe('re-making the self-signed certificate at start-up', () => {
  const tlsConfig = (dir: string, hosts: string[] = []) => ({
    enabled: true, selfSignedDir: dir, hosts, minVersion: 'TLSv1.2' as const, hsts: 'max-age=1', cert: undefined, key: undefined, redirectHttpPort: undefined,
  });

  it('an expired one is re-made around the same key, keeping the names it had (added with cert generate --host)', async () => {
    const dir = join(work, 'remake-expired');
    const paths = { cert: join(dir, 'mlgate.crt'), key: join(dir, 'mlgate.key') };
    await generateSelfSignedCertificate(paths, selfSignedNames(['added-by-hand.example']), 0);
    const key = readFileSync(paths.key, 'utf8');
    const result = await ensureCertificate(tlsConfig(dir));
    expect(result).toMatchObject({ generated: true, keptKey: true, reason: expect.stringMatching(/expired/), missing: [] });
    expect(readFileSync(paths.key, 'utf8')).toBe(key);
    const cert = new X509Certificate(readFileSync(paths.cert));
    expect(cert.checkPrivateKey(createPrivateKey(key))).toBe(true);
    expect(cert.checkHost('added-by-hand.example')).toBe('added-by-hand.example');
    expect(Date.parse(cert.validTo)).toBeGreaterThan(Date.now());
  });

  it('a missing key is made anew; an existing one of another kind (RSA) is kept', async () => {
    const dir = join(work, 'remake-keys');
    const paths = { cert: join(dir, 'mlgate.crt'), key: join(dir, 'mlgate.key') };
    expect(await ensureCertificate(tlsConfig(dir))).toMatchObject({ generated: true, keptKey: false });

    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(paths.key, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const result = await ensureCertificate(tlsConfig(dir));
    expect(result).toMatchObject({ generated: true, keptKey: true, reason: 'the key does not belong to the certificate' });
    expect(new X509Certificate(readFileSync(paths.cert)).checkPrivateKey(privateKey)).toBe(true);
  });
});

describe('--no-tls on the command line', () => {
  it('serves plain HTTP without HSTS and without generating a certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-notls-'));
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
    writeFileSync(join(dir, 'config', 'mlgate.yaml'), 'tls:\n  hsts: max-age=600\n');
    const cli = spawnCli(['serve', '--no-tls', '--port', '0', '--host', '127.0.0.1', '--upstream', upstream.url], { cwd: dir });
    try {
      const url = await listeningUrl(cli);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(jsonLogLines(cli.output().stdout).find((line) => line.msg === 'mlgate listening')).toMatchObject({ tls: false });
      const res = await request(`${url}/echo`, { auth: ALICE });
      expect(res.status).toBe(200);
      expect(res.headers['strict-transport-security']).toBeUndefined();
      expect(res.json<{ headers: Record<string, string> }>().headers['x-forwarded-proto']).toBe('http');
      expect((await request(`${url}/echo`)).status).toBe(401);
      expect(existsSync(join(dir, 'certs'))).toBe(false);
      await expect(probeTls(Number(new URL(url).port), {})).rejects.toThrow();
    } finally {
      expect(await stopCli(cli)).toBe(0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
