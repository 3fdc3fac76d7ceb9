import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { GatewayError } from '../http/gateway-error.ts';
import { TOKEN_PREFIX, type ApiTokenStore } from './api-tokens.ts';
import { parseAuthorization } from './basic-credentials.ts';
import { HashPoolBusyError } from './hash-worker-pool.ts';
import type { HtpasswdStore } from './htpasswd-store.ts';
import type { JwtVerifier } from './jwt.ts';
import type { Lock, Lockout } from './lockout.ts';
import type { PasswordChecker } from './password-checker.ts';
import type { AuthMethod, BearerVerdict, Principal } from './principal.ts';

export type AuthOutcome =
  | { ok: true; principal: Principal }
  /** headers: e.g. the WWW-Authenticate challenge that fits this refusal, Retry-After. */
  | { ok: false; status: 400 | 401 | 503; message: string; headers?: OutgoingHttpHeaders };

/**
 * A refused authentication as the gateway answers it: MLflow's error code for the status (a malformed
 * header is INVALID_PARAMETER_VALUE, an overload TEMPORARILY_UNAVAILABLE and retried after a second).
 */
export function authRefusal(outcome: Extract<AuthOutcome, { ok: false }>): GatewayError {
  const code = outcome.status === 400 ? 'INVALID_PARAMETER_VALUE' : outcome.status === 503 ? 'TEMPORARILY_UNAVAILABLE' : 'UNAUTHENTICATED';
  return { status: outcome.status, code, message: outcome.message, headers: outcome.headers ?? (outcome.status === 503 ? { 'retry-after': '1' } : undefined) };
}

export interface Authenticator {
  /** Never rejects: bad credentials are an outcome, not an error. */
  authenticate(req: IncomingMessage): AuthOutcome | Promise<AuthOutcome>;
  /**
   * A user name and password checked as HTTP Basic checks them: a cached success answers at once,
   * a locked-out IP or user is refused without hashing, the verdict counts towards lockouts. For the
   * browser sign-in form.
   */
  verifyPassword(user: string, password: string, clientIp: string, method?: AuthMethod): AuthOutcome | Promise<AuthOutcome>;
  /** The Basic challenge: the WWW-Authenticate value for a 401 whose outcome names none. */
  readonly challenge: string;
}

interface AuthenticatorOptions {
  realm: string;
  store: HtpasswdStore;
  checker: PasswordChecker;
  /** The client's address (trusted proxies applied); asked only when a password must be hashed. */
  clientIp(req: IncomingMessage): string;
  /** Absent: lockout.enabled is false. */
  lockout?: Lockout;
  /** Absent: tokens.enabled is false. */
  apiTokens?: ApiTokenStore;
  /** Absent: no jwt key source is configured. */
  jwt?: JwtVerifier;
  /** JWTs from identity providers with `bearer: true` (oidc.providers); undefined for another issuer's token. */
  providerTokens?: (token: string) => Promise<BearerVerdict> | undefined;
}

const BUSY: AuthOutcome = { ok: false, status: 503, message: 'the gateway is busy checking passwords; retry in a moment' };

/**
 * One Authorization header, one scheme: Basic is checked against the htpasswd file, Bearer is an
 * mlgate API token when it starts with "mlg_" and a JWT otherwise. (The MLflow client sends Basic
 * when both MLFLOW_TRACKING_USERNAME/PASSWORD and MLFLOW_TRACKING_TOKEN are set, so Basic wins.)
 */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { realm, store, checker, lockout, apiTokens, jwt, providerTokens } = options;
  const basicChallenge = `Basic realm="${realm}", charset="UTF-8"`;
  const bearerAccepted = Boolean(apiTokens || jwt || providerTokens);
  const askForCredentials: AuthOutcome = bearerAccepted
    ? {
        ok: false,
        status: 401,
        message: 'authentication required: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) or a bearer token (MLFLOW_TRACKING_TOKEN)',
        headers: { 'www-authenticate': [basicChallenge, `Bearer realm="${realm}"`] },
      }
    : { ok: false, status: 401, message: 'authentication required: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)' };
  const wrongPassword: AuthOutcome = { ok: false, status: 401, message: 'invalid user name or password' };

  function bearerRefused(reason: string): AuthOutcome {
    return {
      ok: false,
      status: 401,
      message: `invalid bearer token: ${reason}`,
      headers: { 'www-authenticate': `Bearer realm="${realm}", error="invalid_token", error_description="${quotable(reason)}"` },
    };
  }

  function fromBearer(verdict: BearerVerdict): AuthOutcome {
    if (verdict.ok) return verdict;
    if (verdict.unavailable) return { ok: false, status: 503, message: verdict.reason };
    return bearerRefused(verdict.reason);
  }

  function locked(lock: Lock): AuthOutcome {
    return { ok: false, status: 401, message: lock.message, headers: { 'retry-after': String(Math.ceil(lock.retryAfterMs / 1000)) } };
  }

  function verifyPassword(user: string, password: string, clientIp: string | (() => string), method: AuthMethod = 'basic'): AuthOutcome | Promise<AuthOutcome> {
    const principal: Principal = { user, method, groups: [] };
    const stored = store.hashOf(user);
    if (!lockout) return passwordOutcome(checker.check(user, password, stored), principal);
    // A credential verified a moment ago is no guess: it passes any lockout, and costs no hash.
    if (stored !== undefined && checker.isVerified(user, password, stored)) return { ok: true, principal };
    const ip = typeof clientIp === 'string' ? clientIp : clientIp();
    const check = (lock: Lock | undefined): AuthOutcome | Promise<AuthOutcome> => {
      if (lock) return locked(lock);
      return passwordOutcome(checker.check(user, password, stored), principal, (ok) => (ok ? lockout.recordSuccess(ip, user) : lockout.recordFailure(ip, user)));
    };
    // A promise only with state.redis, and only for an attempt that is about to cost a hash anyway.
    const lock = lockout.lockFor(ip, user);
    return lock instanceof Promise ? lock.then(check) : check(lock);
  }

  function passwordOutcome(verdict: boolean | Promise<boolean>, principal: Principal, countAttempt?: (ok: boolean) => void | Promise<void>): AuthOutcome | Promise<AuthOutcome> {
    const outcome = (ok: boolean): AuthOutcome | Promise<AuthOutcome> => {
      const counted = countAttempt?.(ok);
      const answer: AuthOutcome = ok ? { ok: true, principal } : wrongPassword;
      // With Redis, a failure is answered once counted there: the next attempt, on any gateway, sees its lock.
      return counted instanceof Promise ? counted.then(() => answer) : answer;
    };
    if (typeof verdict === 'boolean') return outcome(verdict);
    return verdict.then(outcome, (err): AuthOutcome | Promise<AuthOutcome> => (err instanceof HashPoolBusyError ? BUSY : outcome(false)));
  }

  function authenticateBearer(token: string): AuthOutcome | Promise<AuthOutcome> {
    if (token.startsWith(TOKEN_PREFIX)) {
      if (!apiTokens) return bearerRefused('mlgate API tokens are turned off on this gateway (tokens.enabled: false)');
      // A promise only with state.redis: the token is looked up there on every request.
      const verdict = apiTokens.authenticate(token);
      return 'then' in verdict ? verdict.then(fromBearer) : fromBearer(verdict);
    }
    const fromProvider = providerTokens?.(token);
    if (fromProvider) return fromProvider.then(fromBearer);
    if (!jwt) return bearerRefused(`only mlgate API tokens (${TOKEN_PREFIX}...) are accepted; JWT verification is not configured (jwt.*)`);
    const verdict = jwt.verify(token);
    return 'then' in verdict ? verdict.then(fromBearer) : fromBearer(verdict);
  }

  return {
    challenge: basicChallenge,
    verifyPassword,
    authenticate(req) {
      const credentials = parseAuthorization(req.headers.authorization);
      switch (credentials.scheme) {
        case 'none':
          return askForCredentials;
        case 'invalid':
          return { ok: false, status: 400, message: `malformed Authorization header: ${credentials.reason}` };
        case 'bearer':
          if (!bearerAccepted) return { ok: false, status: 401, message: 'Bearer tokens are not accepted by this gateway (tokens.enabled is false and no jwt key is configured); use HTTP Basic credentials' };
          return authenticateBearer(credentials.token);
        case 'basic':
          return verifyPassword(credentials.user, credentials.password, () => options.clientIp(req));
      }
    },
  };
}

/** RFC 6750's error_description allows printable ASCII except '"' and '\'. */
function quotable(text: string): string {
  return text.replace(/"/g, "'").replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?');
}
