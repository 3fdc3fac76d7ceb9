import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext, type SecureVersion, type TLSSocket } from 'node:tls';
import { certificateName } from '../config/schema.ts';
import { snapshotFile, watchFileChanges } from '../config/watch-file.ts';
import { GatewayRequest } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';
import type { ClientCertificateStep } from '../auth/client-certificate.ts';
import { ADD_NAME_COMMAND, certificateNames, type CertificatePaths } from './certificate.ts';

/** Distinct unmatched SNI names remembered (and warned about) per certificate: clients choose them freely. */
const MAX_UNCOVERED_NAMES = 100;

interface ListenerOptions {
  /** selfSigned: the pair mlgate made, which `mlgate cert generate` can extend; otherwise the user's own. */
  certificate?: CertificatePaths & { selfSigned?: boolean };
  minVersion: SecureVersion;
  watchIntervalMs: number;
  /** limits.headerTimeout: the TLS handshake and a request's headers must each be done within it. */
  headerTimeoutMs: number;
  /** limits.keepAliveTimeout: an idle keep-alive connection is closed after it. */
  keepAliveTimeoutMs: number;
  /** ACME TLS-ALPN-01 (RFC 8737): the challenge certificate for a name being validated right now. */
  acmeAlpnChallenge?: (servername: string) => SecureContext | undefined;
  /** tls.clientCertificates: the CAs and CRL every secure context verifies client certificates with. */
  clientCertificates?: Pick<ClientCertificateStep, 'trust' | 'onChange'>;
}

const ACME_TLS_ALPN = 'acme-tls/1';

interface Listener {
  server: http.Server;
  /** Whether the certificate being served right now is valid for this host name or IP address. */
  covers(host: string): boolean;
  /** Reads the certificate files now (SIGHUP), rather than at the next change the watch sees. */
  reloadCertificate(): void;
  stopWatching(): void;
}

interface LoadedCertificate {
  cert: Buffer;
  key: Buffer;
  leaf: X509Certificate;
}

/**
 * Reads and checks the pair as one unit, so a file that is unreadable, not PEM, or whose key does
 * not belong to the certificate is reported by name instead of as a bare OpenSSL error.
 */
function readCertificate(paths: CertificatePaths, minVersion: SecureVersion): LoadedCertificate {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  };
  const cert = read(paths.cert, 'certificate (tls.cert)');
  const key = read(paths.key, 'private key (tls.key)');
  let leaf: X509Certificate;
  try {
    // A chain file starts with the server's own certificate; the intermediates follow it.
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`${paths.cert} is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    createSecureContext({ cert, key, minVersion });
  } catch (err) {
    throw new Error(`TLS certificate ${paths.cert} and key ${paths.key} cannot be used together: ${(err as Error).message}`);
  }
  return { cert, key, leaf };
}

/**
 * An HTTPS server (or plain HTTP with TLS off). The certificate is re-read when its files change,
 * e.g. after a renewal: new handshakes use it, open connections carry on.
 */
export function createListener(options: ListenerOptions, logger: Logger): Listener {
  // requestTimeout stays 0: it caps a whole request, and a 1 GiB upload that keeps moving must not
  // be cut (bodies that stall are the slow-request watch's, src/server/slow-requests.ts). Node checks
  // headersTimeout every connectionsCheckingInterval (30 s unless set): a fraction of it here.
  const common = {
    keepAliveTimeout: options.keepAliveTimeoutMs,
    headersTimeout: options.headerTimeoutMs,
    requestTimeout: 0,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(options.headerTimeoutMs / 4))),
    // Each request object carries its context (src/context/request-context.ts).
    IncomingMessage: GatewayRequest,
  };
  if (!options.certificate) return { server: http.createServer(common), covers: () => false, reloadCertificate: () => {}, stopWatching: () => {} };
  const paths = options.certificate;
  const { minVersion } = options;
  // Before the read: a renewal landing between the read and the watch's start is still a change.
  const since = { cert: snapshotFile(paths.cert), key: snapshotFile(paths.key) };
  let current = readCertificate(paths, minVersion);
  const addNames = options.certificate.selfSigned ? ADD_NAME_COMMAND : 'a certificate that includes them (tls.cert, tls.key)';
  logger.info({ cert: paths.cert, names: certificateNames(current.leaf), addNames }, 'TLS certificate covers these names');
  const uncovered = uncoveredNameLog(logger, paths.cert, options.certificate.selfSigned === true);
  const challenge = options.acmeAlpnChallenge;
  // Handshakes that chose acme-tls/1: the CA's validator, to be shown the challenge certificate.
  const validators = new WeakSet<TLSSocket>();
  const clientCertificates = options.clientCertificates;
  // Asked for, never enforced in the handshake: a refused or missing certificate gets a 401 that
  // says why (src/auth/client-certificate.ts), where a TLS alert would leave the MLflow client
  // retrying an SSL error for a minute.
  const mutual = clientCertificates && { requestCert: true, rejectUnauthorized: false };
  const server = https.createServer({
    ...common, handshakeTimeout: options.headerTimeoutMs, cert: current.cert, key: current.key, minVersion, ...mutual, ...clientCertificates?.trust(),
    // Otherwise only watches: the callback leaves the context as it is. Asked before the
    // certificate is sent, so a client that then rejects it (the case worth a line) is seen too.
    // Node calls both callbacks as methods of the connection's socket.
    SNICallback: function (this: TLSSocket, servername, done) {
      if (challenge && validators.has(this)) return done(null, challenge(servername));
      uncovered.check(servername, (name) => certificateCovers(current.leaf, name));
      done(null, undefined);
    },
    // Only with TLS-ALPN-01 on, since Node refuses a handshake whose ALPN the callback declines.
    // In TLS 1.3 (what ACME validators speak) OpenSSL asks for ALPN before the certificate, so
    // the choice here decides what the SNI callback above serves.
    ...(challenge && {
      ALPNCallback: function (this: TLSSocket, { servername, protocols }: { servername: string; protocols: string[] }) {
        if (protocols.includes(ACME_TLS_ALPN)) {
          if (!servername || !challenge(servername)) return undefined;
          validators.add(this);
          return ACME_TLS_ALPN;
        }
        // Browsers offer h2 too; this server speaks HTTP/1.1, as it did before ALPN was answered.
        return protocols.find((protocol) => protocol === 'http/1.1' || protocol === 'http/1.0');
      },
    }),
  });
  // A failed or timed-out handshake (limits.headerTimeout) must free the connection: left to Node,
  // a client that never sent a byte stayed connected after its handshake timeout.
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  const reload = () => {
    try {
      const next = readCertificate(paths, minVersion);
      // Both files are watched, so one renewal fires twice; only a real change is worth a log line.
      if (next.cert.equals(current.cert) && next.key.equals(current.key)) return;
      server.setSecureContext({ cert: next.cert, key: next.key, minVersion, ...clientCertificates?.trust() });
      current = next;
      uncovered.forget();
      logger.info({ cert: paths.cert, fingerprint256: next.leaf.fingerprint256, validTo: next.leaf.validTo, names: certificateNames(next.leaf) }, 'TLS certificate reloaded');
    } catch (err) {
      // Mid-renewal the key and certificate can disagree for a moment; the next change fixes it.
      logger.error({ cert: paths.cert, err: (err as Error).message }, 'TLS certificate reload failed; keeping the previous one');
    }
  };
  const stops = [watchFileChanges(paths.cert, options.watchIntervalMs, reload, since.cert), watchFileChanges(paths.key, options.watchIntervalMs, reload, since.key)];
  // A new CRL (or CA bundle) applies to new handshakes; open connections are re-checked per request.
  clientCertificates?.onChange(() => server.setSecureContext({ cert: current.cert, key: current.key, minVersion, ...clientCertificates.trust() }));
  return {
    server,
    covers: (host) => certificateCovers(current.leaf, host),
    reloadCertificate: reload,
    stopWatching: () => stops.forEach((stop) => stop()),
  };
}

/**
 * One warning per SNI name the certificate does not cover, so a user who reaches the gateway by a
 * name nobody added learns which name to add. Names that no certificate could hold are skipped: the
 * log line suggests a shell command, and a client must not be able to write into it. Memory is
 * bounded; a new certificate (which may cover them now) starts the count again.
 */
function uncoveredNameLog(logger: Logger, cert: string, selfSigned: boolean) {
  const warned = new Set<string>();
  let full = false;
  return {
    check(servername: string, covered: (name: string) => boolean): void {
      const name = servername.toLowerCase().replace(/\.$/, '');
      // Covered first: it is the common case, and it spares the name check on every handshake.
      if (full || warned.has(name) || covered(name) || !certificateName.safeParse(name).success) return;
      if (warned.size >= MAX_UNCOVERED_NAMES) {
        full = true;
        logger.warn({ cert, limit: MAX_UNCOVERED_NAMES }, 'TLS clients asked for more names the certificate does not cover; no more are logged until it changes');
        return;
      }
      warned.add(name);
      if (selfSigned) logger.warn({ cert, servername: name, add: ADD_NAME_COMMAND.replace('NAME', name) }, 'a TLS client asked for a name the certificate does not cover');
      else logger.warn({ cert, servername: name, add: 'a certificate that includes it (tls.cert, tls.key)' }, 'a TLS client asked for a name the certificate does not cover');
    },
    forget(): void {
      warned.clear();
      full = false;
    },
  };
}

function certificateCovers(leaf: X509Certificate, host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (!bare) return false;
  return (isIP(bare) ? leaf.checkIP(bare) : leaf.checkHost(bare)) !== undefined;
}

const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * A plain-HTTP port that only sends browsers and clients to the HTTPS one. The Host header is the
 * client's to choose, so it is kept only when the certificate covers it (any other name would fail
 * TLS anyway) or it is the very address the connection arrived on; otherwise that address is used.
 * Either way the redirect cannot point at a host this gateway does not answer for.
 * With ACME on, it also answers the CA's HTTP-01 challenges (RFC 8555 8.3), which must be plain HTTP.
 */
export function createHttpsRedirectServer(httpsPort: number, names: Pick<Listener, 'covers'>, acmeChallenge?: (token: string) => string | undefined): http.Server {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 10_000 }, (req, res) => {
    if (acmeChallenge && req.url?.startsWith(ACME_CHALLENGE_PREFIX) && (req.method === 'GET' || req.method === 'HEAD')) {
      // Only tokens of an order under way are answered; any other path under it is a plain 404.
      const answer = acmeChallenge(req.url.slice(ACME_CHALLENGE_PREFIX.length));
      res.writeHead(answer === undefined ? 404 : 200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
      res.end(req.method === 'HEAD' ? undefined : answer ?? 'no such ACME challenge\n');
      return;
    }
    const local = normalizeAddress(req.socket.localAddress ?? '127.0.0.1');
    const requested = parseHostHeader(req.headers.host);
    const host = requested && (names.covers(requested) || normalizeAddress(requested) === local) ? requested : local;
    const location = `https://${formatHost(host)}${httpsPort === 443 ? '' : `:${httpsPort}`}${pathAndQuery(req.url)}`;
    res.writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', connection: 'close' });
    res.end(req.method === 'HEAD' ? undefined : `Use ${location}\n`);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  return server;
}

/** "Example.org:80" -> "example.org", "[::1]:80" -> "::1"; anything else (paths, userinfo, junk) -> undefined. */
function parseHostHeader(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::\d{1,5})?$/.exec(value.trim());
  if (!match) return undefined;
  const host = (match[1] ?? match[2]!).toLowerCase().replace(/\.$/, '');
  if (match[1] !== undefined && isIP(host) !== 6) return undefined;
  return host;
}

/** An absolute-form request target (GET http://elsewhere/x) must not carry its authority along. */
function pathAndQuery(target: string | undefined): string {
  if (!target || target === '*') return '/';
  if (target.startsWith('/')) return target;
  try {
    const url = new URL(target);
    return url.pathname + url.search;
  } catch {
    return '/';
  }
}

function normalizeAddress(address: string): string {
  const lower = address.toLowerCase();
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

function formatHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}
