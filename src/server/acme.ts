import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { join } from 'node:path';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { formatDuration, type Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { certificateNames, generateSelfSignedCertificate, type CertificatePaths } from './certificate.ts';

/**
 * The first retry after a failure; each further one waits twice as long, up to acme.checkInterval.
 * A name that keeps failing stays under Let's Encrypt's limit of 5 failed validations an hour.
 */
const FIRST_RETRY_MS = 5 * 60_000;

interface AcmeCertificates {
  /** Where the certificate (with its chain) and key are; the listener serves and watches these. */
  paths: CertificatePaths;
  /** The key authorization for an HTTP-01 token the CA is validating right now. */
  challengeResponse(token: string): string | undefined;
  /** With TLS-ALPN-01: what to serve a client that asks for the name with ALPN acme-tls/1 right now. */
  alpnChallenge?: (servername: string) => SecureContext | undefined;
  /** Checks now and then every acme.checkInterval; onNewCertificate makes the listener take the new pair at once. */
  start(onNewCertificate: () => void): void;
  stop(): void;
}

type AcmeModule = typeof import('acme-client');

/**
 * Certificates from an ACME CA for acme.domains, kept in <tls.selfSignedDir>/acme. Until the first
 * one is obtained a temporary self-signed pair is served there: start-up must not wait on the CA
 * (which may be unreachable for hours), and either challenge needs the gateway's ports open anyway.
 */
export async function prepareAcme(config: Config, logger: Logger): Promise<AcmeCertificates> {
  const { acme: settings } = config;
  const dir = join(config.tls.selfSignedDir, 'acme');
  const paths = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  const accountKeyPath = join(dir, 'account.key');
  const domains = settings.domains;
  const log = logger.child({ acme: settings.directory, domains });

  // A CA's certificate that lacks a name just added to acme.domains still serves the others
  // until its replacement comes; only an unusable pair gives way to a temporary one.
  const current = readPair(paths);
  if (typeof current === 'string') {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await generateSelfSignedCertificate(paths, domains);
    log.warn({ cert: paths.cert, reason: current }, 'serving a temporary self-signed certificate until the ACME certificate is obtained');
  }

  const challengeType = settings.challenge === 'auto' ? (config.tls.redirectHttpPort === undefined ? 'tls-alpn-01' : 'http-01') : settings.challenge;
  const challenges = new Map<string, string>();
  const alpnChallenges = new Map<string, SecureContext>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let failures = 0;
  let onNewCertificate = () => {};

  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void check(), ms);
    // The renewal check alone must not keep a stopping process alive.
    timer.unref();
  };

  const check = async () => {
    const pair = readPair(paths);
    const reason = typeof pair === 'string' ? pair : dueReason(pair, domains, settings.renewBefore);
    if (!reason) return schedule(settings.checkInterval);
    const renewing = typeof pair !== 'string' && !isSelfSigned(pair);
    try {
      const leaf = await obtain(reason);
      if (stopped) return;
      failures = 0;
      log.info({ cert: paths.cert, fingerprint256: leaf.fingerprint256, validFrom: leaf.validFrom, validTo: leaf.validTo, issuer: leaf.issuer.replace(/\n/g, ', ') },
        renewing ? 'ACME certificate renewed' : 'ACME certificate obtained');
      onNewCertificate();
      schedule(settings.checkInterval);
    } catch (err) {
      if (stopped) return;
      failures += 1;
      const retryMs = Math.min(settings.checkInterval, FIRST_RETRY_MS * 2 ** (failures - 1));
      log.error({ err: describeError(err), reason, failures, retryIn: formatDuration(retryMs), retryAt: new Date(Date.now() + retryMs).toISOString() },
        renewing ? 'ACME renewal failed; serving the current certificate until a retry succeeds' : 'ACME certificate order failed; serving the temporary certificate until a retry succeeds');
      schedule(retryMs);
    }
  };

  const obtain = async (reason: string): Promise<X509Certificate> => {
    // Loaded only with acme.domains set: its HTTP and X.509 libraries cost memory every process would pay.
    const { default: acme } = await import('acme-client') as { default: AcmeModule };
    const agent = configureHttp(acme, settings.directoryCa);
    await reachDirectory(settings.directory, agent);
    const accountKey = await loadOrCreateAccountKey(acme, accountKeyPath);
    const client = new acme.Client({ directoryUrl: settings.directory, accountKey, backoffMin: 1000, backoffMax: 30_000 });
    log.info({ reason }, 'ACME: ordering a certificate');
    await client.createAccount({ termsOfServiceAgreed: true, ...(settings.email ? { contact: [`mailto:${settings.email}`] } : {}) });
    const order = await client.createOrder({ identifiers: domains.map((value) => ({ type: 'dns', value })) });
    log.info({ order: order.url }, 'ACME: order placed');
    for (const authz of await client.getAuthorizations(order)) {
      const domain = authz.identifier.value;
      // The CA may reuse an authorization it validated recently.
      if (authz.status === 'valid') {
        log.info({ domain }, 'ACME: name already validated');
        continue;
      }
      const challenge = authz.challenges.find((candidate) => candidate.type === challengeType);
      if (!challenge) throw new Error(`the CA offers no ${challengeType} challenge for ${domain} (offered: ${authz.challenges.map((c) => c.type).join(', ')}); see acme.challenge`);
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
      if (challenge.type === 'http-01') {
        challenges.set(challenge.token, keyAuthorization);
      } else {
        // The ECDSA key is made in milliseconds; acme-client's default RSA one takes far longer.
        const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey());
        alpnChallenges.set(domain.toLowerCase(), createSecureContext({ key: alpnKey, cert: alpnCert }));
      }
      try {
        const where = challenge.type === 'http-01' ? { path: `/.well-known/acme-challenge/${challenge.token}`, port: config.tls.redirectHttpPort } : { alpn: 'acme-tls/1', port: config.port };
        log.info({ domain, type: challenge.type, ...where }, 'ACME: answering a challenge');
        await client.completeChallenge(challenge);
        await client.waitForValidStatus(challenge);
        log.info({ domain, type: challenge.type }, 'ACME: challenge validated');
      } finally {
        challenges.delete(challenge.token);
        alpnChallenges.delete(domain.toLowerCase());
      }
    }
    const key = await acme.crypto.createPrivateEcdsaKey();
    const [, csr] = await acme.crypto.createCsr({ commonName: domains[0], altNames: domains }, key);
    const finalized = await client.finalizeOrder(order, csr);
    const chain = await client.getCertificate(finalized);
    if (stopped) throw new Error('the gateway stopped');
    await writePair(paths, chain, key);
    return new X509Certificate(chain);
  };

  return {
    paths,
    challengeResponse: (token) => challenges.get(token),
    alpnChallenge: challengeType === 'tls-alpn-01' ? (servername) => alpnChallenges.get(servername.toLowerCase()) : undefined,
    start(callback) {
      onNewCertificate = callback;
      schedule(0);
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * acme-client keeps its HTTP settings on one shared axios instance, so they are set before each
 * order (a process runs one gateway).
 */
function configureHttp(acme: AcmeModule, directoryCa: string | undefined): https.Agent | undefined {
  const agent = directoryCa ? new https.Agent({ ca: [...rootCertificates, readFileSync(directoryCa, 'utf8')] }) : undefined;
  acme.axios.defaults.httpsAgent = agent;
  return agent;
}

/**
 * acme-client retries a request that got no answer for over a minute and then fails with a
 * TypeError of its own that has lost the reason; one request of ours first names it at once.
 */
function reachDirectory(url: string, agent: https.Agent | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new Error(`cannot reach the ACME directory ${url}: ${why}`));
    const req = https.get(url, { agent, timeout: 30_000 }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else fail(`HTTP ${res.statusCode}`);
    });
    req.on('timeout', () => req.destroy(new Error('no answer in 30s')));
    req.on('error', (err) => fail(err.message));
  });
}

async function loadOrCreateAccountKey(acme: AcmeModule, path: string): Promise<Buffer> {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = await acme.crypto.createPrivateEcdsaKey();
  await writeAtomically(path, key, 0o600);
  return key;
}

/** The certificate when the pair can be served, else why not. */
function readPair(paths: CertificatePaths): X509Certificate | string {
  try {
    const leaf = new X509Certificate(readFileSync(paths.cert));
    if (!leaf.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))) return 'the key does not belong to the certificate';
    if (Date.parse(leaf.validTo) <= Date.now()) return `the certificate expired on ${leaf.validTo}`;
    return leaf;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'no certificate yet' : `the certificate or key is unreadable (${code ?? (err as Error).message})`;
  }
}

function isSelfSigned(leaf: X509Certificate): boolean {
  return leaf.issuer === leaf.subject && leaf.verify(leaf.publicKey);
}

/** Why a new certificate is needed now, or undefined while the current one is fine. */
function dueReason(leaf: X509Certificate, domains: readonly string[], renewBeforeMs: number | undefined): string | undefined {
  if (isSelfSigned(leaf)) return 'no certificate from the CA yet';
  const missing = domains.filter((domain) => leaf.checkHost(domain) === undefined);
  if (missing.length) return `acme.domains names it does not cover: ${missing.join(', ')} (it covers ${certificateNames(leaf).join(', ')})`;
  const notBefore = Date.parse(leaf.validFrom);
  const notAfter = Date.parse(leaf.validTo);
  const window = renewBeforeMs ?? (notAfter - notBefore) / 3;
  if (notAfter - Date.now() < window) return `it expires on ${leaf.validTo}, within ${renewBeforeMs === undefined ? 'the last third of its lifetime' : `acme.renewBefore (${formatDuration(renewBeforeMs)})`}`;
  return undefined;
}

/** An ACME problem document says what the CA refused; axios errors only say the status otherwise. */
function describeError(err: unknown): string {
  const detail = (err as { response?: { data?: { detail?: unknown } } }).response?.data?.detail;
  const message = err instanceof Error ? err.message : String(err);
  // What acme-client throws when the connection failed mid-order (see reachDirectory).
  if (err instanceof TypeError && message.includes("reading 'config'")) return 'the ACME server stopped answering during the order (no response)';
  return typeof detail === 'string' && !message.includes(detail) ? `${message}: ${detail}` : message;
}

/**
 * Key first, then certificate, each by rename: a reader sees either pair whole, except for the
 * instant between the renames, which the listener's reload reports and the next change repairs.
 */
async function writePair(paths: CertificatePaths, cert: string, key: Buffer): Promise<void> {
  await writeAtomically(paths.key, key, 0o600);
  await writeAtomically(paths.cert, cert, 0o644);
}

async function writeAtomically(path: string, data: string | Buffer, mode: number): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
  try {
    await writeFile(temporary, data, { mode });
    // writeFile's mode applies only to a new file and is cut by the umask.
    await chmod(temporary, mode);
    await rename(temporary, path);
  } finally {
    await rm(temporary, { force: true });
  }
}
