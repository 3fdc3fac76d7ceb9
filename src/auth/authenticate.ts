import type { IncomingMessage } from 'node:http';
import { parseAuthorization } from './basic-credentials.ts';
import { HashPoolBusyError } from './hash-worker-pool.ts';
import type { HtpasswdStore } from './htpasswd-store.ts';
import type { PasswordChecker } from './password-checker.ts';
import type { Principal } from './principal.ts';

export type AuthOutcome =
  | { ok: true; principal: Principal }
  | { ok: false; status: 400 | 401 | 503; message: string };

export interface Authenticator {
  /** Never rejects: bad credentials are an outcome, not an error. */
  authenticate(req: IncomingMessage): AuthOutcome | Promise<AuthOutcome>;
  /** The WWW-Authenticate value sent with every 401. */
  readonly challenge: string;
}

const BUSY: AuthOutcome = { ok: false, status: 503, message: 'the gateway is busy checking passwords; retry in a moment' };

export function createAuthenticator(store: HtpasswdStore, checker: PasswordChecker, realm: string): Authenticator {
  const refused = (message: string): AuthOutcome => ({ ok: false, status: 401, message });
  return {
    challenge: `Basic realm="${realm}", charset="UTF-8"`,
    authenticate(req) {
      const credentials = parseAuthorization(req.headers.authorization);
      switch (credentials.scheme) {
        case 'none':
          return refused('authentication required: send HTTP Basic credentials (MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)');
        case 'invalid':
          return { ok: false, status: 400, message: `malformed Authorization header: ${credentials.reason}` };
        case 'bearer':
          return refused('Bearer tokens are not accepted by this gateway yet; use HTTP Basic credentials');
        case 'basic': {
          const { user, password } = credentials;
          const principal: Principal = { user, method: 'basic', groups: [] };
          const wrong = refused('invalid user name or password');
          const verdict = checker.check(user, password, store.hashOf(user));
          if (typeof verdict === 'boolean') return verdict ? { ok: true, principal } : wrong;
          return verdict.then(
            (ok): AuthOutcome => (ok ? { ok: true, principal } : wrong),
            (err): AuthOutcome => (err instanceof HashPoolBusyError ? BUSY : wrong),
          );
        }
      }
    },
  };
}
