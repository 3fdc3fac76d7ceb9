// Client certificates (mutual TLS, docs/client-certificates.md): the listener asks every client for
// a certificate issued by one of the CAs in tls.clientCertificates.ca and OpenSSL verifies the
// chain (and the CRL) in the handshake; a handshake never fails over the client's certificate. The
// authentication step here reads the verdict, and answers a missing or refused certificate with a
// 401 in MLflow's JSON that says why, which a TLS alert could not.
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { readFileSync } from 'node:fs';
import { createSecureContext, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import type { Config } from '../config/schema.ts';
import { snapshotFile, watchFileChanges } from '../config/watch-file.ts';
import type { TrustedProxies } from '../context/client-ip.ts';
import type { RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';
import { crossSiteReason, externalOrigin, isSafeMethod } from './csrf.ts';
import type { Principal } from './principal.ts';
import { certificateKey, parseRevocationLists } from './revocation-list.ts';
import type { Authentication } from './session-step.ts';

type ClientCertificateConfig = Config['tls']['clientCertificates'];

/** Longest user name taken from a certificate, as for htpasswd and JWT users. */
const MAX_USER_LENGTH = 255;

/** What the listener's secure context gets: the CAs to verify against, and the CRLs to check. */
export interface ClientCertificateTrust {
  ca: Buffer;
  crl?: Buffer;
}

interface LoadedTrust extends ClientCertificateTrust {
  /** certificateKey() of every revoked certificate, for connections verified against an older CRL. */
  revoked: ReadonlySet<string>;
  cas: X509Certificate[];
  nextUpdate?: Date;
}

/** What one connection's certificate says, worked out once per connection. */
type Examined =
  | { kind: 'none' }
  | { kind: 'refused'; reason: string }
  /** keys: the leaf and its issuers (not the root), checked against the CRL in force on every request. */
  | { kind: 'user'; principal: Principal; keys: readonly string[] };

const NONE: Examined = Object.freeze({ kind: 'none' });

/** OpenSSL's verify results, as a client's user can act on them. */
const REASONS: Record<string, string> = {
  CERT_REVOKED: 'it has been revoked (tls.clientCertificates.crl)',
  CERT_HAS_EXPIRED: 'it has expired',
  CERT_NOT_YET_VALID: 'it is not valid yet',
  UNABLE_TO_GET_ISSUER_CERT: 'it was not issued by a CA this gateway trusts (tls.clientCertificates.ca)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'it was not issued by a CA this gateway trusts (tls.clientCertificates.ca)',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'it was not issued by a CA this gateway trusts (tls.clientCertificates.ca)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'it is self-signed, not issued by a CA this gateway trusts (tls.clientCertificates.ca)',
  SELF_SIGNED_CERT_IN_CHAIN: 'its chain ends at a CA this gateway does not trust (tls.clientCertificates.ca)',
  CERT_SIGNATURE_FAILURE: 'its signature does not verify',
  INVALID_PURPOSE: 'it is not meant for client authentication (its extendedKeyUsage lacks clientAuth)',
  UNABLE_TO_GET_CRL: 'the gateway has no revocation list from its issuer (tls.clientCertificates.crl needs one from every CA in the chain), or it was not issued by a CA this gateway trusts',
  CRL_HAS_EXPIRED: "the gateway's certificate revocation list has expired (tls.clientCertificates.crl needs a fresh one)",
  CRL_NOT_YET_VALID: "the gateway's certificate revocation list is not valid yet",
  CRL_SIGNATURE_FAILURE: "the gateway's certificate revocation list is not signed by the certificate's CA",
};

const FIELD_NAMES = { cn: "subject's CN", email: 'subjectAltName e-mail address', uri: 'subjectAltName URI' } as const;

export interface ClientCertificateStep {
  /** Read by the listener for every secure context it makes. */
  trust(): ClientCertificateTrust;
  /** Called after the CA or CRL file changed and was read: the listener swaps its secure context. */
  onChange(listener: () => void): void;
  /**
   * The request's connection's certificate as an Authentication; undefined when it has none and
   * none is required (the other methods then apply). A certificate wins over an Authorization
   * header or a session cookie, which are then not looked at.
   */
  authenticate(req: IncomingMessage, ctx: RequestContext): Authentication | undefined;
  /** Re-reads the CA and CRL files now (SIGHUP). */
  reload(): void;
  stop(): void;
}

interface StepOptions {
  config: ClientCertificateConfig & { ca: string };
  watchIntervalMs: number;
  proxies: TrustedProxies;
  /** auth.trustedOrigins: other sites' pages that may send unsafe requests with a browser's credentials. */
  trustedOrigins: ReadonlySet<string>;
  /**
   * The identity providers' name prefixes (oidc.providers[].namePrefix, e.g. "okta:"): a certificate
   * naming "okta:alice" (a URI SAN may) would be that provider's user, so it is refused.
   */
  providerPrefixes: readonly string[];
  logger: Logger;
}

function readPem(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${key} ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

function loadTrust(config: StepOptions['config']): LoadedTrust {
  const ca = readPem(config.ca, 'tls.clientCertificates.ca');
  const cas = [...ca.toString('utf8').matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((block, i) => {
    try {
      return new X509Certificate(block[0]);
    } catch (err) {
      throw new Error(`tls.clientCertificates.ca ${config.ca}: certificate number ${i + 1} cannot be read: ${(err as Error).message}`);
    }
  });
  if (cas.length === 0) throw new Error(`tls.clientCertificates.ca ${config.ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  const notCa = cas.find((cert) => !cert.ca);
  if (notCa) throw new Error(`tls.clientCertificates.ca ${config.ca}: ${notCa.subject.replace(/\n/g, ', ')} is not a CA certificate (basicConstraints CA:TRUE); the file lists the CAs that issue client certificates`);
  if (config.crl === undefined) {
    createSecureContext({ ca });
    return { ca, cas, revoked: new Set() };
  }
  const crl = readPem(config.crl, 'tls.clientCertificates.crl');
  let lists;
  try {
    lists = parseRevocationLists(crl.toString('utf8'));
    createSecureContext({ ca, crl });
  } catch (err) {
    throw new Error(`tls.clientCertificates.crl ${config.crl}: ${(err as Error).message}`);
  }
  return { ca, crl, cas, revoked: lists.revoked, nextUpdate: lists.nextUpdate };
}

/** Node's subjectaltname: "email:a@b, URI:spiffe://x"; values with unusual characters JSON-quoted. */
function altNames(peer: DetailedPeerCertificate, type: 'email' | 'URI'): string[] {
  const found: string[] = [];
  for (const match of (peer.subjectaltname ?? '').matchAll(/(?:^|, )([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    if (match[1] !== type) continue;
    const raw = match[2]!;
    try {
      found.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
    } catch {
      found.push(raw);
    }
  }
  return found;
}

function valuesOf(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/**
 * The connection's certificate, as the handshake left it: none, refused (and why), or a user.
 * Only what OpenSSL verified is read; a certificate it refused names nobody.
 */
function examine(socket: TLSSocket, config: StepOptions['config'], providerPrefixes: readonly string[]): Examined {
  const peer = socket.getPeerCertificate(true);
  if (!peer || Object.keys(peer).length === 0) return NONE;
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown');
    return { kind: 'refused', reason: REASONS[code] ?? `it does not verify (${code})` };
  }
  const values = config.user === 'cn' ? valuesOf(peer.subject?.CN) : altNames(peer, config.user === 'email' ? 'email' : 'URI');
  const field = FIELD_NAMES[config.user];
  if (values.length === 0) return { kind: 'refused', reason: `it has no ${field}, which names the user here (tls.clientCertificates.user: ${config.user})` };
  if (values.length > 1) return { kind: 'refused', reason: `it has ${values.length} values in its ${field}, so it names no one user (tls.clientCertificates.user: ${config.user})` };
  const user = values[0]!;
  if (user.length === 0 || user.length > MAX_USER_LENGTH || /[\p{Cc}\s]/u.test(user)) return { kind: 'refused', reason: `its ${field} is not a usable user name (empty, too long, or with spaces or control characters)` };
  const prefix = providerPrefixes.find((one) => one !== '' && user.startsWith(one));
  if (prefix !== undefined) return { kind: 'refused', reason: `its ${field} ${JSON.stringify(user.slice(0, 100))} starts with ${JSON.stringify(prefix)}, an identity provider's name prefix: it would be that provider's user` };
  const groups = config.groups === 'ou' ? valuesOf(peer.subject?.OU).filter((group) => group.length > 0 && !/[\p{Cc}\s]/u.test(group)) : [];
  const keys: string[] = [];
  for (let cert: DetailedPeerCertificate | undefined = peer; cert && keys.length < 10; cert = cert.issuerCertificate === cert ? undefined : cert.issuerCertificate) {
    if (cert.issuerCertificate === cert || !cert.raw) break; // the root: trusted as configured, never revoked by a list
    keys.push(certificateKey(cert.raw));
  }
  // external: a certificate's "admin" is not the htpasswd user admin (the built-in policy's admin).
  return { kind: 'user', principal: Object.freeze({ user, method: 'client-cert', groups: Object.freeze(groups), external: true }), keys };
}

function refusal(message: string): Authentication {
  // No Basic challenge: the answer is to send another certificate, and a browser must not prompt.
  return { ok: false, error: { status: 401, code: 'UNAUTHENTICATED', message, challenge: false } };
}

export function createClientCertificateStep(options: StepOptions): ClientCertificateStep {
  const { config, logger } = options;
  const since = { ca: snapshotFile(config.ca), crl: config.crl === undefined ? undefined : snapshotFile(config.crl) };
  let current = loadTrust(config);
  const examined = new WeakMap<TLSSocket, Examined>();
  const listeners: (() => void)[] = [];
  const required = refusal('a client certificate is required (tls.clientCertificates.mode: required) and this connection sent none: the MLflow client sends one with MLFLOW_TRACKING_CLIENT_CERT_PATH (a PEM file with the certificate and its unencrypted key)');

  const describe = (trust: LoadedTrust) => ({
    ca: config.ca, cas: trust.cas.map((cert) => cert.subject.replace(/\n/g, ', ')), crl: config.crl, revoked: config.crl === undefined ? undefined : trust.revoked.size,
    crlNextUpdate: trust.nextUpdate?.toISOString(),
  });
  const warnIfExpired = (trust: LoadedTrust) => {
    if (trust.nextUpdate && trust.nextUpdate.getTime() < Date.now()) {
      logger.warn({ crl: config.crl, nextUpdate: trust.nextUpdate.toISOString() }, 'the client certificate revocation list is past its nextUpdate: every client certificate is refused (CRL has expired) until a fresh list is in place');
    }
  };
  logger.info({ ...describe(current), mode: config.mode, user: config.user, groups: config.groups }, 'client certificates asked for (mutual TLS)');
  warnIfExpired(current);

  const reload = () => {
    try {
      const next = loadTrust(config);
      if (next.ca.equals(current.ca) && (next.crl === current.crl || (next.crl !== undefined && current.crl !== undefined && next.crl.equals(current.crl)))) return;
      current = next;
      for (const listener of listeners) listener();
      logger.info(describe(next), 'client certificate CA and CRL reloaded');
      warnIfExpired(next);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'client certificate CA or CRL reload failed; keeping the previous ones');
    }
  };
  const stops = [watchFileChanges(config.ca, options.watchIntervalMs, reload, since.ca)];
  if (config.crl !== undefined) stops.push(watchFileChanges(config.crl, options.watchIntervalMs, reload, since.crl));

  return {
    trust: () => ({ ca: current.ca, crl: current.crl }),
    onChange: (listener) => void listeners.push(listener),
    reload,
    stop: () => stops.forEach((stop) => stop()),
    authenticate(req, ctx) {
      const socket = req.socket as TLSSocket;
      if (typeof socket.getPeerCertificate !== 'function') return undefined;
      let seen = examined.get(socket);
      if (!seen) {
        seen = examine(socket, config, options.providerPrefixes);
        examined.set(socket, seen);
        if (seen.kind === 'refused') {
          const peer = socket.getPeerCertificate();
          logger.info({ reqId: ctx.id, ip: ctx.clientIp, subject: peer.subject?.CN, serialNumber: peer.serialNumber, fingerprint256: peer.fingerprint256, reason: seen.reason }, 'client certificate refused');
        }
      }
      if (seen.kind === 'none') return config.mode === 'required' ? required : undefined;
      if (seen.kind === 'refused') return refusal(`client certificate refused: ${seen.reason}`);
      // A connection older than the CRL in force was verified against an older one.
      if (seen.keys.some((key) => current.revoked.has(key))) {
        logger.info({ reqId: ctx.id, ip: ctx.clientIp, user: seen.principal.user }, 'client certificate revoked while its connection was open');
        return refusal(`client certificate refused: ${REASONS.CERT_REVOKED}`);
      }
      // A browser attaches its certificate to any site's requests, like a remembered password.
      if (ctx.upgrade || !isSafeMethod(req.method)) {
        const reason = crossSiteReason(req, externalOrigin(req, true, options.proxies).origin, options.trustedOrigins);
        if (reason !== undefined) {
          return { ok: false, error: { status: 403, code: 'PERMISSION_DENIED', message: `cross-site request refused: ${reason}. Requests with a browser's client certificate must come from this site's own pages` } };
        }
      }
      return { ok: true, principal: seen.principal };
    },
  };
}
