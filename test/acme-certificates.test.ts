// acme.domains against a real ACME CA: Debian's pebble, which validates HTTP-01 on the gateway's
// redirect port, resolving the test name through a DNS stub to 127.0.0.1. Nothing leaves loopback.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { generateSelfSignedCertificate } from '../src/server/certificate.ts';
import { startGateway, type Gateway } from '../src/server/gateway.ts';
import { startDnsStub, type DnsStub } from './helpers/dns-stub.ts';
import { captureLogs, htpasswdLines, waitForLog } from './helpers/gateway.ts';
import { probeTls } from './helpers/tls.ts';

const NAME = 'mlflow.acme.mlgate.test';
const hasPebble = spawnSync('pebble', ['-h'], { stdio: 'ignore' }).error === undefined;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function httpsGet(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https.get(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode}`))));
    }).on('error', reject);
  });
}

interface Pebble {
  directory: string;
  /** pebble's own HTTPS certificate (directoryCa). */
  tlsCertPath: string;
  /** The root its certificates chain to; made anew at each pebble start. */
  root: string;
  output(): string;
  stop(): Promise<void>;
}

async function startPebble(dir: string, ports: { httpPort: number; tlsPort: number }, dns: DnsStub): Promise<Pebble> {
  const paths = { cert: join(dir, 'pebble.crt'), key: join(dir, 'pebble.key') };
  await generateSelfSignedCertificate(paths, ['localhost', '127.0.0.1']);
  const [listen, management] = [await freePort(), await freePort()];
  const configPath = join(dir, 'pebble.json');
  writeFileSync(configPath, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${listen}`, managementListenAddress: `127.0.0.1:${management}`,
      certificate: paths.cert, privateKey: paths.key, ...ports, ocspResponderURL: '', externalAccountBindingRequired: false,
    },
  }));
  // No sleeps before validating, no nonces refused for practice, and every order proves its names
  // again (a renewal too), so each one exercises the challenge.
  const child: ChildProcess = spawn('pebble', ['-config', configPath, '-dnsserver', dns.address], {
    env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ca = readFileSync(paths.cert, 'utf8');
  const directory = `https://127.0.0.1:${listen}/dir`;
  for (let attempt = 0; ; attempt++) {
    try {
      await httpsGet(directory, ca);
      break;
    } catch (err) {
      if (attempt > 100 || child.exitCode !== null) throw new Error(`pebble did not start: ${(err as Error).message}\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const root = await httpsGet(`https://127.0.0.1:${management}/roots/0`, ca);
  return {
    directory, tlsCertPath: paths.cert, root, output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One HTTP/1.1 request on a connection that stays open; resolves with the response head and body. */
function ask(socket: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (text.includes('"status":"ok"')) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET /-/healthz HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`);
  });
}

interface Setup {
  dir: string;
  dns: DnsStub;
  pebble: Pebble;
  gateway: Gateway;
  logs: Record<string, unknown>[];
  redirectHttpPort: number;
  /** Stops the gateway and starts it again from the same files (pebble keeps running). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** pebble, and the gateway started from a config file as a user starts it, each on its own ports. */
async function startSetup(acme: Record<string, unknown>, withRedirectPort: boolean): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-acme-'));
  const dns = await startDnsStub();
  const [port, redirectHttpPort] = [await freePort(), await freePort()];
  // The port pebble checks HTTP-01 on is closed when the gateway has no redirect port.
  const pebble = await startPebble(dir, { httpPort: withRedirectPort ? redirectHttpPort : await freePort(), tlsPort: port }, dns);
  const configPath = join(dir, 'mlgate.yaml');
  writeFileSync(join(dir, 'htpasswd'), await htpasswdLines({ alice: 'alice-password' }));
  writeFileSync(configPath, stringify({
    host: '127.0.0.1', port, upstream: 'http://127.0.0.1:9', watchInterval: '50ms', shutdownGrace: '1s',
    tls: { selfSignedDir: join(dir, 'certs'), ...(withRedirectPort && { redirectHttpPort }) },
    acme: { domains: [NAME], email: 'ops@mlgate.test', directory: pebble.directory, directoryCa: pebble.tlsCertPath, ...acme },
    auth: { htpasswd: join(dir, 'htpasswd'), bcryptCost: 4, hashWorkers: 1 },
    session: { keyFile: join(dir, 'session.key'), revocationsFile: join(dir, 'revocations.json') },
    tokens: { file: join(dir, 'tokens.json') },
    authz: { policyFile: join(dir, 'policy.yaml') },
  }));
  const start = async () => {
    const { logs, stream } = captureLogs();
    return { logs, gateway: await startGateway(loadConfig({ configPath, env: {}, cwd: dir }).config, { logger: pino({ level: 'debug' }, stream) }) };
  };
  const setup: Setup = {
    dir, dns, pebble, redirectHttpPort, ...(await start()),
    async restart() {
      await setup.gateway.close(100);
      Object.assign(setup, await start());
    },
    async close() {
      await setup.gateway.close(100);
      await pebble.stop();
      await dns.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return setup;
}

async function obtained(setup: Setup): Promise<Record<string, unknown>> {
  return waitForLog(setup.logs, (line) => line.msg === 'ACME certificate obtained', 30_000).catch((err: Error) => {
    throw new Error(`${err.message}\npebble:\n${setup.pebble.output()}`);
  });
}

describe.skipIf(!hasPebble)(`ACME certificates from a real CA${hasPebble ? '' : ' (skipped: pebble is not installed; apt-get install pebble)'}`, () => {
  let setup: Setup;
  let pebble: Pebble;
  let gateway: Gateway;
  let logs: Record<string, unknown>[];

  beforeAll(async () => {
    // Every check renews: renewBefore is longer than any certificate lives.
    setup = await startSetup({ renewBefore: '36500d', checkInterval: '2s' }, true);
    ({ pebble, gateway, logs } = setup);
  }, 60_000);

  afterAll(async () => {
    await setup?.close();
  });

  it('serves a certificate a client verifies against the CA\'s root for the name, obtained over HTTP-01', async () => {
    await obtained(setup);
    expect(logs.find((line) => line.msg === 'ACME: answering a challenge')).toMatchObject({ domain: NAME, type: 'http-01' });
    for (const step of ['ACME: ordering a certificate', 'ACME: order placed', 'ACME: answering a challenge', 'ACME: challenge validated']) {
      expect(logs.some((line) => line.msg === step), step).toBe(true);
    }
    const served = await probeTls(gateway.port, { servername: NAME, ca: pebble.root });
    expect(served.chain.length).toBeGreaterThanOrEqual(2);
    // Not trusted without the CA's root: it is not the temporary self-signed one either.
    await expect(probeTls(gateway.port, { servername: NAME })).rejects.toThrow();
  }, 60_000);

  it('the redirect port answers only challenges under way, and redirects everything else', async () => {
    const get = (path: string) => new Promise<{ status?: number; location?: string }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: setup.redirectHttpPort, path, headers: { host: NAME } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode, location: res.headers.location });
      }).on('error', reject);
    });
    expect(await get('/.well-known/acme-challenge/not-a-token')).toMatchObject({ status: 404 });
    expect(await get('/ajax-api/2.0/mlflow/experiments/search')).toEqual({ status: 308, location: `https://${NAME}:${gateway.port}/ajax-api/2.0/mlflow/experiments/search` });
  });

  it('a renewal swaps the certificate for new connections; an open one carries on', async () => {
    const socket = tls.connect({ host: '127.0.0.1', port: gateway.port, servername: NAME, ca: pebble.root });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    const before = socket.getPeerCertificate().fingerprint256;
    expect(await ask(socket)).toMatch(/^HTTP\/1\.1 200/);
    let closed = false;
    socket.once('close', () => (closed = true));

    const renewed = await waitForLog(logs, (line) => line.msg === 'ACME certificate renewed' && line.fingerprint256 !== before, 30_000);
    await waitForLog(logs, (line) => line.msg === 'TLS certificate reloaded' && line.fingerprint256 === renewed.fingerprint256, 5000);
    const after = await probeTls(gateway.port, { servername: NAME, ca: pebble.root });
    expect(after.fingerprint256).not.toBe(before);

    expect(closed).toBe(false);
    expect(await ask(socket)).toMatch(/^HTTP\/1\.1 200/);
    expect(socket.getPeerCertificate().fingerprint256).toBe(before);
    socket.destroy();
  }, 60_000);

  it('with the CA down, the failure is logged with its reason and next retry; the last certificate stays served', async () => {
    await pebble.stop();
    const failed = await waitForLog(logs, (line) => line.msg === 'ACME renewal failed; serving the current certificate until a retry succeeds', 30_000);
    expect(failed.err).toMatch(/^cannot reach the ACME directory https:\/\/127\.0\.0\.1:\d+\/dir: connect ECONNREFUSED/);
    expect(Date.parse(String(failed.retryAt))).toBeGreaterThan(Date.now() - 5000);
    expect(failed.retryIn).toBe('2s');
    const lastObtained = logs.filter((line) => line.msg === 'ACME certificate renewed' || line.msg === 'ACME certificate obtained').at(-1)!;
    const served = await probeTls(gateway.port, { servername: NAME, ca: pebble.root });
    expect(served.fingerprint256).toBe(lastObtained.fingerprint256);
  }, 60_000);
});

describe.skipIf(!hasPebble)(`ACME TLS-ALPN-01 on the gateway's own port${hasPebble ? '' : ' (skipped: pebble is not installed; apt-get install pebble)'}`, () => {
  let setup: Setup;

  beforeAll(async () => {
    setup = await startSetup({ challenge: 'tls-alpn-01' }, false);
  }, 60_000);

  afterAll(async () => {
    await setup?.close();
  });

  it('the CA validates with ALPN acme-tls/1 and the certificate is served to ordinary clients', async () => {
    await obtained(setup);
    expect(setup.logs.find((line) => line.msg === 'ACME: answering a challenge')).toMatchObject({ domain: NAME, type: 'tls-alpn-01', alpn: 'acme-tls/1' });
    const browserLike = await probeTls(setup.gateway.port, { servername: NAME, ca: setup.pebble.root, ALPNProtocols: ['h2', 'http/1.1'] });
    expect(browserLike.chain.length).toBeGreaterThanOrEqual(2);
    await expect(probeTls(setup.gateway.port, { servername: NAME, ca: setup.pebble.root })).resolves.toBeDefined();
  }, 60_000);

  it('acme-tls/1 with no challenge under way is refused', async () => {
    await obtained(setup);
    await expect(probeTls(setup.gateway.port, { servername: NAME, rejectUnauthorized: false, ALPNProtocols: ['acme-tls/1'] })).rejects.toThrow();
  });

  it('a restart serves the certificate it has at once, and orders none while it is far from expiry', async () => {
    const before = await probeTls(setup.gateway.port, { servername: NAME, ca: setup.pebble.root });
    await setup.restart();
    const after = await probeTls(setup.gateway.port, { servername: NAME, ca: setup.pebble.root });
    expect(after.fingerprint256).toBe(before.fingerprint256);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(setup.logs.filter((line) => String(line.msg).startsWith('ACME') || String(line.msg).includes('temporary'))).toEqual([]);
  }, 30_000);
});

describe('acme configuration', () => {
  const problemsOf = (file: Record<string, unknown>): string[] => {
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-acme-config-'));
    try {
      writeFileSync(join(dir, 'mlgate.yaml'), stringify(file));
      loadConfig({ configPath: join(dir, 'mlgate.yaml'), env: {}, cwd: dir });
      return [];
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      return err.problems;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('defaults to Let\'s Encrypt\'s production directory and no domains (off)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-acme-config-'));
    try {
      const { config } = loadConfig({ env: {}, cwd: dir });
      expect(config.acme).toEqual({ domains: [], challenge: 'auto', directory: 'https://acme-v02.api.letsencrypt.org/directory', checkInterval: 12 * 3_600_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the file, line and key of each conflict with the tls section', () => {
    expect(problemsOf({ tls: { cert: 'a.pem', key: 'a.key', redirectHttpPort: 80 }, acme: { domains: ['mlflow.example.com'] } })).toEqual([
      expect.stringMatching(/^mlgate\.yaml:6: acme\.domains: is set together with tls\.cert\/tls\.key/),
    ]);
    expect(problemsOf({ tls: { enabled: false }, acme: { domains: ['mlflow.example.com'] } })).toEqual([
      expect.stringMatching(/^mlgate\.yaml:\d+: acme\.domains: needs TLS on/),
    ]);
    expect(problemsOf({ acme: { domains: ['mlflow.example.com'], challenge: 'http-01' } })).toEqual([
      expect.stringMatching(/^mlgate\.yaml:\d+: acme\.challenge: http-01 needs tls\.redirectHttpPort/),
    ]);
    expect(problemsOf({ acme: { domains: ['mlflow.example.com'] } })).toEqual([]);
    expect(problemsOf({ workers: 2, acme: { domains: ['mlflow.example.com'] } })).toEqual([
      expect.stringMatching(/^mlgate\.yaml:\d+: acme\.domains: needs workers: 1 or auto/),
    ]);
    // auto (the default) runs one process with ACME: test/workers.test.ts.
    expect(problemsOf({ workers: 'auto', acme: { domains: ['mlflow.example.com'] } })).toEqual([]);
  });

  it('refuses names HTTP-01 cannot prove, a plain-HTTP directory and a check every few milliseconds', () => {
    expect(problemsOf({ tls: { redirectHttpPort: 80 }, acme: { domains: ['*.example.com', '10.0.0.1'], directory: 'http://ca.example/dir', checkInterval: '10ms' } })).toEqual([
      expect.stringMatching(/acme\.domains\[0\]: must be a DNS name without a wildcard/),
      expect.stringMatching(/acme\.domains\[1\]: must be a DNS name without a wildcard/),
      expect.stringMatching(/acme\.directory: must be the https:\/\/ URL of an ACME directory/),
      expect.stringMatching(/acme\.checkInterval: must be at least 1s/),
    ]);
  });
});
