// Bearer JWTs from an identity provider, verified with jose: HS* tokens with a shared secret
// (jwt.secret), the others with jwt.publicKey: a PEM public key or certificate, or a JWKS URL
// (fetched, cached, refetched for an unknown kid at most once per jwt.jwksCooldown). Which key
// verifies a token follows from its algorithm alone, never from anything else the token says, so
// an HS256 token "signed" with the public key is refused (algorithm confusion). A verified token is
// remembered under a hash of itself until it expires or jwt.cacheTtl passes, whichever is first, so
// a job sending the same token on every request costs one signature check.
import { createHash, createPublicKey, type JsonWebKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, importJWK, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../state/bounded-cache.ts';
import { HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS, type Config, type JwtAlgorithm } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { claimAt, groupsFrom } from './external-names.ts';
import type { BearerVerdict, Principal } from './principal.ts';

type JwtConfig = Config['jwt'];

const JWKS_UNAVAILABLE: BearerVerdict = { ok: false, unavailable: true, reason: "the identity provider's signing keys cannot be fetched right now; retry shortly" };
const JWKS_WARNING_INTERVAL_MS = 60_000;

/** Longest user name taken from a claim, as for htpasswd users. */
const MAX_USER_LENGTH = 255;

interface Verified {
  principal: Principal;
  /** ms since the epoch. */
  until: number;
}

export class JwtVerifier {
  private readonly cache: LRUCache<string, Verified> | undefined;
  private readonly inflight = new Map<string, Promise<BearerVerdict>>();
  /** An outage is logged once per JWKS_WARNING_INTERVAL_MS, not once per request. */
  private jwksWarnedAt = 0;

  constructor(
    private readonly config: JwtConfig,
    private readonly key: JWTVerifyGetKey,
    readonly algorithms: readonly JwtAlgorithm[],
    private readonly logger: Logger,
  ) {
    this.cache = config.cacheSize > 0 && config.cacheTtl > 0 ? boundedCache(config.cacheSize) : undefined;
  }

  /** Synchronous for a token verified recently; never rejects. */
  verify(token: string): BearerVerdict | Promise<BearerVerdict> {
    const cacheKey = createHash('sha256').update(token).digest('base64');
    const hit = this.cache?.get(cacheKey);
    if (hit && hit.until > Date.now()) return { ok: true, principal: hit.principal };
    const running = this.inflight.get(cacheKey);
    if (running) return running;
    const check = this.verifySignature(token, cacheKey).finally(() => this.inflight.delete(cacheKey));
    this.inflight.set(cacheKey, check);
    return check;
  }

  private async verifySignature(token: string, cacheKey: string): Promise<BearerVerdict> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: [...this.algorithms],
        issuer: this.config.issuer,
        audience: this.config.audience.length ? this.config.audience : undefined,
        clockTolerance: this.config.clockTolerance / 1000,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      return this.refusal(err, token);
    }
    const { userClaim, groupsClaim } = this.config;
    const user = claimAt(payload, userClaim);
    if (user === undefined || user === null || user === '') return { ok: false, reason: `the token has no ${userClaim} claim (jwt.userClaim)` };
    if (typeof user !== 'string' || /\p{Cc}/u.test(user) || user.length > MAX_USER_LENGTH) return { ok: false, reason: `the token's ${userClaim} claim is not a usable user name` };
    const principal: Principal = Object.freeze({ user, method: 'bearer', groups: Object.freeze(groupsFrom(claimAt(payload, groupsClaim))), external: true });
    const until = Math.min(payload.exp! * 1000, Date.now() + this.config.cacheTtl);
    if (until > Date.now()) this.cache?.set(cacheKey, { principal, until });
    return { ok: true, principal };
  }

  /** jose's error code (and claim) -> what the client is told; the message text is never relied on. */
  private refusal(err: unknown, token: string): BearerVerdict {
    const { code, claim, reason } = err as { code?: string; claim?: string; reason?: string };
    switch (code) {
      case 'ERR_JWT_EXPIRED':
        return { ok: false, reason: 'the token has expired' };
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
        if (reason === 'missing') return { ok: false, reason: `the token has no ${claim} claim` };
        switch (claim) {
          case 'nbf': return { ok: false, reason: 'the token is not valid yet (nbf is in the future)' };
          case 'iss': return { ok: false, reason: 'the token is from another issuer (iss)' };
          case 'aud': return { ok: false, reason: 'the token is meant for another audience (aud)' };
          default: return { ok: false, reason: `the token's ${claim} claim is invalid` };
        }
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return { ok: false, reason: 'the signature is invalid' };
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
        return { ok: false, reason: `the algorithm ${algorithmOf(token)} is not allowed (jwt.algorithms: ${this.algorithms.join(', ')})` };
      case 'ERR_JOSE_NOT_SUPPORTED':
        return { ok: false, reason: `the algorithm ${algorithmOf(token)} is not supported` };
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID':
        return { ok: false, reason: 'the token is not a well-formed JWT' };
      case 'ERR_JWKS_NO_MATCHING_KEY':
        return { ok: false, reason: 'no signing key matches the token (unknown kid)' };
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return { ok: false, reason: 'several signing keys match the token; it needs a kid' };
      default:
        if (err instanceof JwksUnavailableError) {
          if (Date.now() - this.jwksWarnedAt < JWKS_WARNING_INTERVAL_MS) return JWKS_UNAVAILABLE;
          this.jwksWarnedAt = Date.now();
          this.logger.warn({ jwksUrl: this.config.publicKey, err: err.cause }, 'cannot fetch the JWT signing keys (jwt.publicKey)');
          return JWKS_UNAVAILABLE;
        }
        this.logger.error({ err }, 'unexpected error while verifying a JWT');
        return { ok: false, reason: 'the token could not be verified' };
    }
  }
}

/** The key set could not be fetched: the identity provider's fault, not the token's. */
class JwksUnavailableError extends Error {}

/** Verdicts from the key set itself about this token; anything else it throws is a failed fetch. */
const KEY_SET_VERDICTS = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'ERR_JOSE_NOT_SUPPORTED']);

/** undefined when neither jwt.secret nor jwt.publicKey is set (JWTs are then refused). */
export async function createJwtVerifier(config: JwtConfig, logger: Logger): Promise<JwtVerifier | undefined> {
  const { secret, publicKey } = config;
  if (secret === undefined && publicKey === undefined) return undefined;
  if (config.audience.length === 0) logger.warn('jwt.audience is not set: a token the identity provider signed for any application is accepted');

  const jwksUrl = publicKey !== undefined && /^https?:\/\//i.test(publicKey) ? new URL(publicKey) : undefined;
  const pem = publicKey !== undefined && !jwksUrl ? publicJwkOf(publicKey, logger) : undefined;
  const fitting: JwtAlgorithm[] = [
    ...(secret !== undefined ? HMAC_ALGORITHMS : []),
    ...(jwksUrl ? PUBLIC_KEY_ALGORITHMS : pem ? algorithmsFor(pem) : []),
  ];
  const algorithms = config.algorithms.length ? config.algorithms : fitting;
  const misfits = algorithms.filter((alg) => !fitting.includes(alg));
  if (misfits.length) {
    const keysDescribed = pem ? `the ${describeKey(pem)} in jwt.publicKey, which verifies` : 'the keys configured, which verify';
    throw new Error(`jwt.algorithms: ${misfits.join(', ')} cannot be verified with ${keysDescribed} only ${fitting.join(', ') || 'algorithms mlgate does not support'}`);
  }

  // One imported key per algorithm, made once. jose checks the algorithm against the allowed list
  // before it asks for a key, so every lookup below finds one.
  const keys = new Map<string, CryptoKey>();
  for (const alg of algorithms) {
    if (isHmac(alg)) keys.set(alg, await importHmacKey(secret!, alg));
    else if (pem) keys.set(alg, (await importJWK({ ...pem, alg }, alg)) as CryptoKey);
  }
  const jwks = jwksUrl && createRemoteJWKSet(jwksUrl, {
    cooldownDuration: config.jwksCooldown,
    cacheMaxAge: config.jwksCacheMaxAge,
    timeoutDuration: config.jwksTimeout,
  });
  const key: JWTVerifyGetKey = async (header, token) => {
    const imported = keys.get(header.alg!);
    if (imported || !jwks) return imported!;
    try {
      return await jwks(header, token);
    } catch (err) {
      if (KEY_SET_VERDICTS.has((err as { code?: string }).code ?? '')) throw err;
      // The provider is unreachable and the keys are stale (jwksCacheMaxAge): keys it served before still verify.
      const known = jwks.jwks();
      if (known) return createLocalJWKSet(known)(header, token).catch(() => { throw new JwksUnavailableError('JWKS fetch failed', { cause: err }); });
      throw new JwksUnavailableError('JWKS fetch failed', { cause: err });
    }
  };
  logger.info({ secret: secret !== undefined, publicKey: jwksUrl ? jwksUrl.href : pem ? describeKey(pem) : undefined, algorithms, issuer: config.issuer, audience: config.audience, userClaim: config.userClaim, groupsClaim: config.groupsClaim }, 'JWT bearer tokens accepted');
  return new JwtVerifier(config, key, algorithms, logger);
}

function isHmac(alg: string): boolean {
  return (HMAC_ALGORITHMS as readonly string[]).includes(alg);
}

function importHmacKey(secret: string, alg: string): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', Buffer.from(secret, 'utf8'), { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, ['verify']);
}

/** jwt.publicKey: a PEM file (public key or certificate), or the PEM text itself. */
function publicJwkOf(value: string, logger: Logger): JsonWebKey {
  const inline = value.trimStart().startsWith('-----BEGIN');
  let pem: string;
  try {
    pem = inline ? value : readFileSync(value, 'utf8');
  } catch (err) {
    throw new Error(`jwt.publicKey: cannot read ${value}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) logger.warn('jwt.publicKey holds a private key; only its public half is used. Give mlgate the public key alone.');
  try {
    return createPublicKey(pem).export({ format: 'jwk' });
  } catch (err) {
    throw new Error(`jwt.publicKey: ${inline ? 'the value' : value} is not a PEM public key or certificate (${(err as Error).message})`);
  }
}

function algorithmsFor(jwk: JsonWebKey): JwtAlgorithm[] {
  switch (jwk.kty) {
    case 'RSA': return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
    case 'EC': return jwk.crv === 'P-256' ? ['ES256'] : jwk.crv === 'P-384' ? ['ES384'] : jwk.crv === 'P-521' ? ['ES512'] : [];
    case 'OKP': return jwk.crv === 'Ed25519' ? ['EdDSA', 'Ed25519'] : [];
    default: return [];
  }
}

function describeKey(jwk: JsonWebKey): string {
  return jwk.crv ? `${jwk.kty} ${jwk.crv} key` : `${jwk.kty} key`;
}

/** The token's alg header, safe to quote in a WWW-Authenticate header. */
function algorithmOf(token: string): string {
  try {
    const { alg } = decodeProtectedHeader(token);
    return typeof alg === 'string' && /^[A-Za-z0-9-]{1,20}$/.test(alg) ? alg : '?';
  } catch {
    return '?';
  }
}
