import { createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { dirname } from 'node:path';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { boundedCache } from '../state/bounded-cache.ts';
import type { Config } from '../config/schema.ts';
import { ReloadingFile, type FileReading } from '../config/reloading-file.ts';
import type { Logger } from '../log/logger.ts';
import { formToken, verifyFormToken } from './csrf.ts';
import type { SharedState } from '../state/redis-state.ts';
import { SessionRevocations } from './session-revocations.ts';

/** One browser sign-in, as carried by the session cookie. Times are seconds since the epoch. */
export interface Session {
  user: string;
  /** The session id (the JWT's jti): the same across renewals, refused once signed out. */
  id: string;
  /** When this cookie was issued (renewals move it). */
  issuedAt: number;
  /** When this cookie stops being accepted unless renewed first. */
  expiresAt: number;
  /** When the user typed the password; the absolute limit counts from here. */
  signedInAt: number;
  /** The identity provider (oidc.providers[].name) that vouched for the user; absent: the htpasswd file. */
  source?: string;
  /** The provider's groups for the user, as at sign-in (htpasswd sessions have none). */
  groups?: readonly string[];
}

interface IssuedCookie {
  session: Session;
  /** The cookie's value: a signed JWT. */
  value: string;
}

/** `unavailable`: refused only because the shared state store (state.redis) cannot be asked. */
export type SessionVerdict = { ok: true; session: Session } | { ok: false; reason: string; unavailable?: boolean };

/** The users file as sessions see it: a user's session ends when their line is removed or changed. */
interface UserDirectory {
  hashOf(user: string): string | undefined;
}

/** Whether a session from an identity provider still stands (the provider is configured, the name is still its own). */
type ExternalSessionCheck = (source: string, user: string) => { ok: true } | { ok: false; reason: string };

interface SessionManagerOptions {
  config: Config['session'];
  watchIntervalMs: number;
  /** state.redis: sign-outs shared with the other gateways. */
  shared?: SharedState;
}

const ISSUER = 'mlgate';
const AUDIENCE = 'mlgate-session';
const FLOW_AUDIENCE = 'mlgate-sign-in-flow';
/** Browsers send the __Host- name only over HTTPS for the whole site, and refuse to let a subdomain set it. */
const SECURE_COOKIE = '__Host-mlgate-session';
const PLAIN_COOKIE = 'mlgate-session';
/** A cookie is renewed once this share of the idle window has passed since it was issued. */
const RENEW_AFTER_IDLE_FRACTION = 0.1;
/** Verified cookies are remembered this long (expiry, sign-out and user changes are still checked each time). */
const VERIFIED_CACHE_TTL_MS = 60_000;
const VERIFIED_CACHE_SIZE = 10_000;
const MIN_KEY_LENGTH = 32;

interface Keys {
  /** Signs and verifies the cookie JWTs. */
  jwt: Uint8Array;
  /** Sign-out form tokens. */
  form: Uint8Array;
  /** Binds a session to the user's password hash at sign-in. */
  password: Uint8Array;
  /** Signs the state of a provider sign-in in progress. */
  flow: Uint8Array;
}

interface VerifiedCookie {
  session: Session;
  /** Keyed hash of the user's password hash at sign-in. */
  passwordFingerprint: string;
  /** The stored hash last seen to match passwordFingerprint. */
  matchedHash: string;
  /** Renewals already under way for this cookie, shared by the requests that carry it. */
  renewal?: Promise<IssuedCookie>;
}

/**
 * Browser sessions: signed JWT cookies (HS256 with the session key), verified once and then
 * remembered under a hash of the cookie, renewed while used (sliding idle expiry, never past the
 * absolute limit), refused after sign-out (persisted, shared with replicas), and all ended when the
 * key changes or a user's htpasswd line changes.
 */
export class SessionManager {
  private keys!: Keys;
  private keyText = '';
  /** Bumped when the key changes, so a verification that straddles the change is not remembered. */
  private generation = 0;
  private readonly verified = boundedCache<string, VerifiedCookie>(VERIFIED_CACHE_SIZE, { ttl: VERIFIED_CACHE_TTL_MS });
  private readonly revocations: SessionRevocations;
  private keyFile: ReloadingFile<string> | undefined;
  /** Asked on every check of a provider's session; absent: such sessions are refused. */
  externalCheck: ExternalSessionCheck | undefined;
  readonly idleTimeoutMs: number;
  readonly absoluteTimeoutMs: number;

  constructor(private readonly options: SessionManagerOptions, private readonly users: UserDirectory, private readonly logger: Logger) {
    this.idleTimeoutMs = options.config.idleTimeout;
    this.absoluteTimeoutMs = options.config.absoluteTimeout;
    this.revocations = new SessionRevocations({ path: options.config.revocationsFile, watchIntervalMs: options.watchIntervalMs }, logger, options.shared);
  }

  /** Loads (or on first start generates) the key, reads the ended sessions, and follows both files. */
  start(): void {
    const { secret, keyFile } = this.options.config;
    if (secret !== undefined) {
      this.useKey(secret);
    } else {
      const watched = { path: keyFile, watchIntervalMs: this.options.watchIntervalMs };
      this.keyFile = new ReloadingFile(watched, { read: (initial) => this.readKeyFile(initial), apply: (key) => this.useKey(key) }, this.logger);
      this.keyFile.start();
    }
    this.revocations.start();
  }

  stop(): void {
    this.keyFile?.stop();
    this.revocations.stop();
  }

  /** The cookie's name: the __Host- form when the browser talks HTTPS. */
  cookieName(secure: boolean): string {
    return secure ? SECURE_COOKIE : PLAIN_COOKIE;
  }

  /** The session cookie's value in a request, if it sent one. */
  readCookie(req: IncomingMessage, secure: boolean): string | undefined {
    return cookieValue(req.headers.cookie, this.cookieName(secure));
  }

  /** Starts a session for a user whose password was just checked. */
  issue(user: string): Promise<IssuedCookie> {
    const now = nowSeconds();
    const hash = this.users.hashOf(user);
    if (hash === undefined) throw new Error(`cannot start a session for ${user}: not in the htpasswd file`);
    return this.sign({ user, id: randomBytes(16).toString('base64url'), issuedAt: now, signedInAt: now, expiresAt: this.expiryFrom(now, now) }, this.fingerprint(hash), hash);
  }

  /**
   * Starts a session for a user an identity provider vouched for (the sign-in flow checked them):
   * the same cookie, expiry and sign-out as a password's, with the provider and its groups in it.
   */
  issueExternal(user: string, source: string, groups: readonly string[]): Promise<IssuedCookie> {
    const now = nowSeconds();
    return this.sign({ user, id: randomBytes(16).toString('base64url'), issuedAt: now, signedInAt: now, expiresAt: this.expiryFrom(now, now), source, groups }, '', '');
  }

  /**
   * A short-lived signed value for a sign-in in progress (the provider flow's state, nonce and PKCE
   * verifier, kept in the browser's cookie), signed with a key of its own derived from the session key.
   */
  sealFlow(claims: Record<string, string>, ttlSeconds: number): Promise<string> {
    return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(ISSUER).setAudience(FLOW_AUDIENCE)
      .setIssuedAt().setExpirationTime(nowSeconds() + ttlSeconds).sign(this.keys.flow);
  }

  /** The claims of a value sealFlow made and that has not expired, else undefined. */
  async openFlow(value: string): Promise<Record<string, unknown> | undefined> {
    try {
      const { payload } = await jwtVerify(value, this.keys.flow, { algorithms: ['HS256'], issuer: ISSUER, audience: FLOW_AUDIENCE, typ: 'JWT' });
      return payload;
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return undefined;
      throw err;
    }
  }

  /**
   * Whether a cookie is valid now. Synchronous for a cookie verified recently (the common case: every
   * call the MLflow UI makes), a promise the first time a cookie is seen.
   */
  verify(value: string): SessionVerdict | Promise<SessionVerdict> {
    const cacheKey = createHash('sha256').update(value).digest('base64url');
    const known = this.verified.get(cacheKey);
    if (known) {
      const verdict = this.stillValid(known);
      if (!verdict.ok) this.verified.delete(cacheKey);
      return this.sharedCheck(verdict);
    }
    const generation = this.generation;
    return this.verifySignature(value).then((verified) => {
      if ('reason' in verified) return { ok: false, reason: verified.reason };
      const verdict = this.stillValid(verified);
      if (verdict.ok && generation === this.generation) this.verified.set(cacheKey, verified);
      return this.sharedCheck(verdict);
    });
  }

  /** With state.redis: a valid session is also asked about in Redis (signed out on another gateway?). */
  private sharedCheck(verdict: SessionVerdict): SessionVerdict | Promise<SessionVerdict> {
    if (!verdict.ok) return verdict;
    const shared = this.revocations.sharedCheck(verdict.session.id);
    return shared ? shared.then((refusal) => (refusal === undefined ? verdict : { ok: false, ...refusal })) : verdict;
  }

  /**
   * A fresh cookie for a session whose cookie is old enough to renew: issued now, expiring an idle
   * window from now but never past the absolute limit. Undefined while the current cookie is recent, or
   * when renewing would not extend it. Concurrent requests with the same cookie share one renewal.
   */
  renewal(value: string, session: Session): Promise<IssuedCookie> | undefined {
    const now = nowSeconds();
    if ((now - session.issuedAt) * 1000 < this.idleTimeoutMs * RENEW_AFTER_IDLE_FRACTION) return undefined;
    const expiresAt = this.expiryFrom(now, session.signedInAt);
    if (expiresAt <= session.expiresAt) return undefined;
    const cacheKey = createHash('sha256').update(value).digest('base64url');
    const known = this.verified.get(cacheKey);
    if (!known) return undefined; // verified moments ago, so only a key change drops it; then it is refused next time
    known.renewal ??= this.sign({ ...session, issuedAt: now, expiresAt }, known.passwordFingerprint, known.matchedHash);
    return known.renewal;
  }

  /** Ends a session everywhere: this cookie and any renewal of it are refused from now on. */
  revoke(session: Session): Promise<void> {
    return this.revocations.revoke(session.id, Math.max(session.expiresAt, session.signedInAt + Math.ceil(this.absoluteTimeoutMs / 1000)));
  }

  /** The Set-Cookie value for a session cookie: HttpOnly, SameSite=Lax, Path=/, Secure over HTTPS. */
  setCookie(issued: IssuedCookie, secure: boolean): string {
    const maxAge = Math.max(0, issued.session.expiresAt - nowSeconds());
    return `${this.cookieName(secure)}=${issued.value}; Max-Age=${maxAge}; Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
  }

  /** The Set-Cookie value that removes the session cookie from the browser. */
  clearCookie(secure: boolean): string {
    return `${this.cookieName(secure)}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
  }

  /** The token a sign-out form carries for this session. */
  formToken(purpose: string, session: Session): string {
    return formToken(this.keys.form, purpose, session.id);
  }

  verifyFormToken(purpose: string, session: Session, token: unknown): boolean {
    return verifyFormToken(this.keys.form, purpose, session.id, token);
  }

  /**
   * A key of its own for something mlgate keeps server-side (providers' refresh tokens), derived from
   * the session key: a new session key (which signs everyone out) makes what it protected unreadable.
   */
  derivedKey(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', Buffer.from(this.keyText, 'utf8'), '', `mlgate session ${purpose}`, 32));
  }

  /** How many ended sessions are being refused (their cookies have not expired yet). */
  get revokedCount(): number {
    return this.revocations.size;
  }

  private expiryFrom(now: number, signedInAt: number): number {
    return Math.min(now + Math.floor(this.idleTimeoutMs / 1000), signedInAt + Math.floor(this.absoluteTimeoutMs / 1000));
  }

  /**
   * For a connection opened with a cookie and kept open for hours (a WebSocket): a check to repeat
   * while it lasts. Sign-out, a password change, the user's removal and the absolute limit end it;
   * the idle expiry does not, since the open connection is the activity (and its page renews the cookie).
   */
  async connectionCheck(value: string): Promise<{ ok: true; session: Session; check: () => SessionVerdict } | { ok: false; reason: string }> {
    const verified = await this.verifySignature(value);
    if ('reason' in verified) return { ok: false, reason: verified.reason };
    const verdict = this.stillValid(verified);
    if (!verdict.ok) return verdict;
    return { ok: true, session: verdict.session, check: () => this.stillValid(verified, false) };
  }

  private stillValid(cookie: VerifiedCookie, idleExpiry = true): SessionVerdict {
    const { session } = cookie;
    const now = nowSeconds();
    if (idleExpiry && session.expiresAt <= now) return { ok: false, reason: 'session expired' };
    if (session.signedInAt * 1000 + this.absoluteTimeoutMs <= now * 1000) return { ok: false, reason: 'session reached its absolute limit' };
    if (this.revocations.has(session.id)) return { ok: false, reason: 'session signed out' };
    if (session.source !== undefined) return this.externalCheck?.(session.source, session.user).ok === true ? { ok: true, session } : { ok: false, reason: this.externalReason(session) };
    const hash = this.users.hashOf(session.user);
    if (hash === undefined) return { ok: false, reason: 'user no longer in the htpasswd file' };
    if (hash !== cookie.matchedHash) {
      if (this.fingerprint(hash) !== cookie.passwordFingerprint) return { ok: false, reason: 'password changed since sign-in' };
      cookie.matchedHash = hash;
    }
    return { ok: true, session };
  }

  private externalReason(session: Session): string {
    const verdict = this.externalCheck?.(session.source!, session.user);
    return verdict && !verdict.ok ? verdict.reason : `identity provider ${session.source} is no longer configured`;
  }

  private async sign(session: Session, passwordFingerprint: string, matchedHash: string): Promise<IssuedCookie> {
    const external = session.source !== undefined ? { src: session.source, grp: session.groups ?? [] } : {};
    const value = await new SignJWT({ auth_time: session.signedInAt, pwd: passwordFingerprint, ...external })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(session.user)
      .setJti(session.id)
      .setIssuedAt(session.issuedAt)
      .setExpirationTime(session.expiresAt)
      .sign(this.keys.jwt);
    // The next request carries the new cookie: it is known valid already.
    this.verified.set(createHash('sha256').update(value).digest('base64url'), { session, passwordFingerprint, matchedHash });
    return { session, value };
  }

  private async verifySignature(value: string): Promise<VerifiedCookie | { reason: string }> {
    try {
      const { payload } = await jwtVerify(value, this.keys.jwt, { algorithms: ['HS256'], issuer: ISSUER, audience: AUDIENCE, typ: 'JWT' });
      const { sub, jti, iat, exp, auth_time: signedInAt, pwd, src, grp } = payload;
      if (typeof sub !== 'string' || typeof jti !== 'string' || typeof iat !== 'number' || typeof exp !== 'number' || typeof signedInAt !== 'number' || typeof pwd !== 'string') {
        return { reason: 'session cookie lacks a claim' };
      }
      if (src !== undefined) {
        if (typeof src !== 'string' || !Array.isArray(grp) || !grp.every((group) => typeof group === 'string')) return { reason: 'session cookie lacks a claim' };
        return { session: { user: sub, id: jti, issuedAt: iat, expiresAt: exp, signedInAt, source: src, groups: Object.freeze([...grp]) }, passwordFingerprint: '', matchedHash: '' };
      }
      const hash = this.users.hashOf(sub);
      const cookie = { session: { user: sub, id: jti, issuedAt: iat, expiresAt: exp, signedInAt }, passwordFingerprint: pwd, matchedHash: '' };
      if (hash !== undefined && this.fingerprint(hash) === pwd) cookie.matchedHash = hash;
      return cookie;
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { reason: 'session expired' };
      if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { reason: 'session cookie signed with another key (the session key changed)' };
      if (err instanceof joseErrors.JOSEError) return { reason: `session cookie refused (${err.code})` };
      throw err;
    }
  }

  private fingerprint(storedHash: string): string {
    return createHmac('sha256', this.keys.password).update(storedHash).digest('base64url').slice(0, 22);
  }

  private useKey(text: string): void {
    if (text === this.keyText) return;
    const material = Buffer.from(text, 'utf8');
    const derive = (purpose: string) => new Uint8Array(hkdfSync('sha256', material, '', `mlgate session ${purpose}`, 32));
    this.keys = { jwt: derive('jwt'), form: derive('form'), password: derive('password'), flow: derive('sign-in flow') };
    const rotated = this.keyText !== '';
    this.keyText = text;
    this.generation++;
    this.verified.clear();
    if (rotated) this.logger.warn({ file: this.options.config.keyFile }, 'session key changed: every browser session has ended');
  }

  /** On a change a new key signs everyone out, and a deleted one is replaced by a new one. */
  private readKeyFile(initial: boolean): FileReading<string> | undefined {
    const file = this.options.config.keyFile;
    if (initial) {
      const { key, generated } = ensureSessionKeyFile(file);
      if (generated) this.logger.info({ file }, 'generated the session key for browser sign-in');
      return { value: key };
    }
    try {
      return { value: ensureSessionKeyFile(file).key };
    } catch (err) {
      this.logger.error({ file, err }, 'session key file unusable; keeping the current key');
      return undefined;
    }
  }
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** The value of one cookie in a Cookie header (the first, if a browser sent it twice). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let at = header.indexOf(name);
  while (at !== -1) {
    const before = at === 0 ? ' ' : header[at - 1];
    if ((before === ' ' || before === ';') && header[at + name.length] === '=') {
      const end = header.indexOf(';', at);
      return header.slice(at + name.length + 1, end === -1 ? undefined : end).trim();
    }
    at = header.indexOf(name, at + name.length);
  }
  return undefined;
}

/** The Cookie header without one cookie, or undefined when nothing else is left. */
export function withoutCookie(header: string, name: string): string | undefined {
  const kept = header.split(';').filter((pair) => pair.trim().split('=', 1)[0] !== name).map((pair) => pair.trim()).filter(Boolean);
  return kept.length ? kept.join('; ') : undefined;
}

/**
 * The session key in a file, made on first start: 32 random bytes, base64url, mode 0600. Created
 * under a temporary name and hard-linked into place, so when several gateway processes start at once
 * exactly one key wins and every process reads that one.
 */
function ensureSessionKeyFile(path: string): { key: string; generated: boolean } {
  const existing = readKeyFile(path);
  if (existing !== undefined) return { key: existing, generated: false };
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temp, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
  let generated = true;
  try {
    linkSync(temp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    generated = false; // another process made it first
  } finally {
    unlinkSync(temp);
  }
  return { key: readKeyFile(path)!, generated };
}

function readKeyFile(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the session key file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  if (text.length < MIN_KEY_LENGTH) throw new Error(`the session key file ${path} holds fewer than ${MIN_KEY_LENGTH} characters; delete it to have a new key generated`);
  return text;
}
