// Which names the certificate covers, as seen from where users connect: this machine's addresses,
// the start-up lines that list them, the warning when the machine gained one, and SNI names nobody
// added. Every connection goes to 127.0.0.1; a client checks the certificate *as* another address.
import { spawn, spawnSync } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSelfSignedCertificate } from '../src/server/certificate.ts';
import { jsonLogLines, listeningUrl, runCli, spawnCli, stopCli } from './helpers/cli.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';
import { hasOpenssl, MACHINE_ADDRESSES as ADDRESSES, opensslAddress } from './helpers/tls.ts';

/** TEST-NET-3: on no machine, so a client checking against it must refuse the certificate. */
const FOREIGN_ADDRESS = '203.0.113.77';
const pythonRequests = spawnSync('python3', ['-c', 'import requests'], { encoding: 'utf8' }).status === 0;

let upstream: MlflowUpstream;
let work: string;
const gateways: TestGateway[] = [];

async function gateway(config: Record<string, unknown> = {}): Promise<TestGateway> {
  const gw = await startTestGateway({ upstream: upstream.url, config });
  gateways.push(gw);
  return gw;
}

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  work = mkdtempSync(join(tmpdir(), 'mlgate-names-'));
});
afterAll(async () => {
  await Promise.all(gateways.map((gw) => gw.close(0)));
  await upstream.close();
  rmSync(work, { recursive: true, force: true });
});

/**
 * A handshake with 127.0.0.1 that checks the certificate as `as` (an IP sends no SNI, as in a
 * browser), or sends `servername` for a DNS name. Resolves with the verification error, if any.
 */
function handshake(port: number, ca: string, as: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1', port, ca,
      ...(/^[\d.]+$|:/.test(as) ? { servername: '' } : { servername: as }),
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(as, cert),
    }, () => {
      socket.end();
      resolve(undefined);
    });
    socket.once('error', (err) => resolve(err.message));
  });
}


describe.skipIf(ADDRESSES.length === 0)("this machine's addresses", () => {
  it('a certificate made here lists every non-loopback, non-link-local address of os.networkInterfaces()', () => {
    const dir = join(work, 'certs');
    const result = runCli(['cert', 'generate'], { cwd: work });
    expect(result.status, result.stderr).toBe(0);
    const cert = new X509Certificate(readFileSync(join(dir, 'mlgate.crt')));
    for (const address of ADDRESSES) expect(cert.checkIP(address), address).toBe(address);
    expect(cert.checkIP(FOREIGN_ADDRESS)).toBeUndefined();
    for (const address of ADDRESSES) expect(result.stdout, address).toMatch(new RegExp(`^names: .*\\b${address.replace(/[.]/g, '\\.')}\\b`, 'm'));
    if (hasOpenssl()) {
      const printed = spawnSync('openssl', ['x509', '-noout', '-ext', 'subjectAltName', '-in', join(dir, 'mlgate.crt')], { encoding: 'utf8' });
      const entries = printed.stdout.split('\n')[1]!.trim().split(/,\s*/);
      expect(entries).toEqual(expect.arrayContaining(ADDRESSES.map(opensslAddress)));
      // Link-local addresses change with the link and need a zone in a URL: nobody pins them.
      expect(entries.filter((entry) => /^IP Address:FE[89AB]/i.test(entry))).toEqual([]);
    }
  });

  it('a client connecting to 127.0.0.1 but checking the certificate as each address accepts it (and refuses it as a foreign one)', async () => {
    const gw = await gateway();
    for (const address of ADDRESSES) expect(await handshake(gw.port, gw.ca!, address), address).toBeUndefined();
    expect(await handshake(gw.port, gw.ca!, FOREIGN_ADDRESS)).toMatch(/IP: 203\.0\.113\.77 is not in the cert's list/);
  });

  it.skipIf(!pythonRequests)("Python's ssl and urllib3 (what requests uses) accept it as each address, over 127.0.0.1", async () => {
    const gw = await gateway();
    const certFile = join(gw.dir, 'certs', 'mlgate.crt');
    const script = `
import json, os, socket, ssl, urllib3
port, cert, out = int(os.environ["PORT"]), os.environ["CERT"], {}
for address in json.loads(os.environ["ADDRESSES"]):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, ctx.wrap_socket(raw, server_hostname=address):
            handshake = "ok"
    except ssl.SSLCertVerificationError as err:
        handshake = "refused"
    try:
        pool = urllib3.HTTPSConnectionPool("127.0.0.1", port, ca_certs=cert, cert_reqs="CERT_REQUIRED", server_hostname=address, retries=False, timeout=20)
        status = pool.request("GET", "/-/healthz").status
    except urllib3.exceptions.SSLError:
        status = "refused"
    out[address] = [handshake, status]
print(json.dumps(out))
`;
    const child = spawn('python3', ['-c', script], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(gw.port), CERT: certFile, ADDRESSES: JSON.stringify([...ADDRESSES, FOREIGN_ADDRESS]) },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk; });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk; });
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(status, stderr).toBe(0);
    const seen = JSON.parse(stdout) as Record<string, [string, number | string]>;
    expect(seen).toEqual({
      ...Object.fromEntries(ADDRESSES.map((address) => [address, ['ok', 200]])),
      [FOREIGN_ADDRESS]: ['refused', 'refused'],
    });
  });
});

describe('start-up', () => {
  it('logs the names the served certificate covers and the command that adds one', async () => {
    const gw = await gateway({ tls: { hosts: ['mlflow.example.org'] } });
    const line = gw.logs.find((entry) => entry.msg === 'TLS certificate covers these names');
    expect(line).toMatchObject({ level: 30, cert: join(gw.dir, 'certs', 'mlgate.crt'), addNames: 'npm run mlgate -- cert generate --host NAME --force' });
    expect(line!.names).toEqual(['localhost', '127.0.0.1', '::1', hostname(), ...ADDRESSES, 'mlflow.example.org']);
    expect(gw.logs.filter((entry) => entry.level === 40)).toEqual([]);
  });

  it('a configured certificate: its own names, and no mlgate command (that would not change what is served)', async () => {
    const own = { cert: join(work, 'own', 'server.crt'), key: join(work, 'own', 'server.key') };
    await generateSelfSignedCertificate(own, ['mlflow.corp.example', '10.9.8.7']);
    const before = readFileSync(own.cert, 'utf8');
    const gw = await gateway({ tls: { cert: own.cert, key: own.key } });
    const line = gw.logs.find((entry) => entry.msg === 'TLS certificate covers these names');
    expect(line).toMatchObject({ cert: own.cert, names: ['mlflow.corp.example', '10.9.8.7'] });
    expect(String(line!.addNames)).not.toContain('cert generate');
    // Not this machine's names, yet nothing warns or re-makes: the certificate is the user's.
    expect(gw.logs.filter((entry) => entry.level === 40)).toEqual([]);
    expect(readFileSync(own.cert, 'utf8')).toBe(before);
  });
});

describe.skipIf(ADDRESSES.length === 0)('a self-signed certificate made before the machine had its current addresses', () => {
  let dir: string;
  let cli: ReturnType<typeof spawnCli> | undefined;
  afterAll(async () => {
    if (cli) await stopCli(cli, 'SIGKILL').catch(() => {});
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is kept, with a warning naming the missing addresses and the command; that command keeps the key and the gateway serves the result', async () => {
    dir = mkdtempSync(join(tmpdir(), 'mlgate-moved-'));
    const paths = { cert: join(dir, 'certs', 'mlgate.crt'), key: join(dir, 'certs', 'mlgate.key') };
    await generateSelfSignedCertificate(paths, ['localhost', '127.0.0.1', '::1', hostname()]);
    const oldCert = readFileSync(paths.cert, 'utf8');
    const key = readFileSync(paths.key, 'utf8');

    // One process: the test waits for its one certificate reload (each worker reloads on its own watch).
    cli = spawnCli(['serve', '--workers', '1', '--port', '0', '--host', '127.0.0.1', '--upstream', upstream.url], { cwd: dir });
    const port = Number(new URL(await listeningUrl(cli)).port);
    const lines = jsonLogLines(cli.output().stdout);
    const warning = lines.find((line) => line.level === 40 && String(line.msg).startsWith('the self-signed TLS certificate does not cover'));
    expect(warning).toMatchObject({ cert: 'certs/mlgate.crt', missing: ADDRESSES, remake: 'npm run mlgate -- cert generate --force' });
    expect(lines.some((line) => String(line.msg).startsWith('generated a self-signed'))).toBe(false);
    expect(readFileSync(paths.cert, 'utf8')).toBe(oldCert);
    expect(await handshake(port, oldCert, ADDRESSES[0]!)).toMatch(/is not in the cert's list/);

    const remade = runCli(['cert', 'generate', '--force'], { cwd: dir });
    expect(remade.status, remade.stderr).toBe(0);
    expect(remade.stdout).toContain('wrote certs/mlgate.crt (certificate) for the existing private key certs/mlgate.key');
    expect(readFileSync(paths.key, 'utf8')).toBe(key);
    await cli.waitFor(/"msg":"TLS certificate reloaded"/);
    const newCert = readFileSync(paths.cert, 'utf8');
    expect(newCert).not.toBe(oldCert);
    for (const address of ADDRESSES) expect(await handshake(port, newCert, address), address).toBeUndefined();
    expect(new X509Certificate(newCert).publicKey.export({ type: 'spki', format: 'der' }))
      .toEqual(createPublicKey(key).export({ type: 'spki', format: 'der' }));
  });
});

describe('a TLS client asking (SNI) for a name the certificate does not cover', () => {
  const warnings = (gw: TestGateway, name?: string) =>
    gw.logs.filter((line) => line.msg === 'a TLS client asked for a name the certificate does not cover' && (name === undefined || line.servername === name));

  it('is logged once per name, with the command that adds it; covered names are not', async () => {
    const gw = await gateway({ tls: { hosts: ['mlflow.example.org', '*.runs.example.org'] } });
    expect(await handshake(gw.port, gw.ca!, 'typo.example.org')).toMatch(/Host: typo\.example\.org\.? is not in the cert's altnames/);
    expect(await handshake(gw.port, gw.ca!, 'TYPO.example.org.')).toBeDefined();
    for (const covered of ['localhost', 'mlflow.example.org', 'a.runs.example.org']) expect(await handshake(gw.port, gw.ca!, covered), covered).toBeUndefined();
    expect(await handshake(gw.port, gw.ca!, 'other.example.net')).toBeDefined();

    await waitForLog(gw.logs, (line) => line.servername === 'other.example.net');
    expect(warnings(gw)).toHaveLength(2);
    expect(warnings(gw, 'typo.example.org')).toEqual([expect.objectContaining({ level: 40, add: 'npm run mlgate -- cert generate --host typo.example.org --force' })]);
  });

  it('remembers at most 100 names, then says it stops logging them', async () => {
    const gw = await gateway();
    for (let i = 0; i < 103; i++) await handshake(gw.port, gw.ca!, `n${i}.example.net`);
    await waitForLog(gw.logs, (line) => String(line.msg).startsWith('TLS clients asked for more names'));
    expect(warnings(gw)).toHaveLength(100);
    expect(gw.logs.filter((line) => String(line.msg).startsWith('TLS clients asked for more names'))).toHaveLength(1);
  });

  it('a name no certificate could hold is not logged: the suggested command must not carry what a client wrote', async () => {
    const gw = await gateway();
    await handshake(gw.port, gw.ca!, 'x$(touch pwned).example');
    await handshake(gw.port, gw.ca!, 'fine.example.net');
    await waitForLog(gw.logs, (line) => line.servername === 'fine.example.net');
    expect(warnings(gw)).toHaveLength(1);
  });
});
