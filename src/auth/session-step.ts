import type { IncomingMessage } from 'node:http';
import type { TrustedProxies } from '../context/client-ip.ts';
import type { PageIdentity, RequestContext } from '../context/request-context.ts';
import { isMlflowApiPath } from '../http/errors.ts';
import type { GatewayError } from '../http/gateway-error.ts';
import type { Logger } from '../log/logger.ts';
import { authRefusal, type AuthOutcome, type Authenticator } from './authenticate.ts';
import { checkSameOrigin, externalOrigin, isSafeMethod, type ExternalOrigin } from './csrf.ts';
import type { Principal } from './principal.ts';
import { cookieValue, withoutCookie, type Session, type SessionManager, type SessionVerdict } from './session.ts';

export const SIGN_IN_PATH = '/-/login';
export const SIGN_OUT_PATH = '/-/logout';
/** Gateway pages a browser opens directly: without a session it is sent to sign in first. */
const SIGNED_IN_PAGES: ReadonlySet<string> = new Set(['/-/permissions', '/-/tokens']);

/** Both cookie names contain this, so a request without it skips all cookie work. */
const COOKIE_MARKER = 'mlgate-session';

/**
 * What authentication decided about a request or WebSocket upgrade. A cookie-opened tunnel gets
 * `stillSignedIn`, asked again while it lasts; a browser loading a page without credentials is sent
 * to `signIn` (a location). A Set-Cookie to send and who an error page names go in the context.
 */
export type Authentication =
  | { ok: true; principal: Principal; stillSignedIn?: () => SessionVerdict }
  | { ok: false; error: GatewayError }
  | { ok: false; signIn: string };

/** The Authorization-header authenticator's outcome as an Authentication. */
export function authenticationOf(outcome: AuthOutcome): Authentication {
  return outcome.ok ? outcome : { ok: false, error: authRefusal(outcome) };
}

export interface SessionStep {
  /**
   * The Authorization header, or else the session cookie. A WebSocket upgrade with the cookie must
   * come from a page of this site (Origin checked always: a page on any site may open a WebSocket
   * with the cookie attached); it never goes to the sign-in page.
   */
  authenticate(req: IncomingMessage, ctx: RequestContext): Authentication | Promise<Authentication>;
}

interface SessionStepOptions {
  sessions: SessionManager;
  /** Credentials in the Authorization header (Basic, tokens): they win over the cookie. */
  authenticator: Authenticator;
  tls: boolean;
  proxies: TrustedProxies;
  logger: Logger;
  /** Other sites' pages that may send unsafe requests with the cookie (auth.trustedOrigins). */
  trustedOrigins: ReadonlySet<string>;
}

const ANONYMOUS: PageIdentity = Object.freeze({ signInPath: SIGN_IN_PATH });

/**
 * The browser sign-in step, in front of the Authorization-header authenticator:
 * - a request with an Authorization header is the authenticator's alone (the MLflow client, curl,
 *   a browser that remembers a password);
 * - otherwise the session cookie, when valid, authenticates it (renewed when old enough); a request
 *   that could change something must then come from this gateway's own pages (Origin or Referer);
 * - without either, a browser asking for a UI page is sent to /-/login, the MLflow UI's own calls to
 *   /ajax-api/ get a 401 without a Basic challenge (so no password prompt pops up over the UI), and
 *   everything else gets the authenticator's answer, as before.
 * The session cookie never reaches MLflow.
 */
export function createSessionStep(options: SessionStepOptions): SessionStep {
  const { sessions, authenticator, logger } = options;

  function refusedWithoutCredentials(outcome: AuthOutcome, ctx: RequestContext): Authentication {
    if (!outcome.ok) ctx.pageIdentity = ANONYMOUS;
    return authenticationOf(outcome);
  }

  /** No usable credentials: the sign-in page for a browser's page load, a quiet 401 for the UI's calls. */
  function unauthenticated(req: IncomingMessage, ctx: RequestContext): Authentication | Promise<Authentication> {
    // Not for an absolute-form target (`GET https://other.example/x`): it names another site.
    if (req.url?.startsWith('/') && wantsSignInPage(req, ctx.upstreamPath)) {
      // A stripped route's prefix is put back: the browser comes back to the URL it asked for.
      const prefix = ctx.route?.stripPrefix ? ctx.route.path : '';
      return { ok: false, signIn: signInLocation(prefix + ctx.upstreamTarget) };
    }
    if ((ctx.route?.mlflow !== false && ctx.upstreamPath.startsWith('/ajax-api/')) || fetchedByScript(req)) {
      ctx.pageIdentity = ANONYMOUS;
      return { ok: false, error: { status: 401, code: 'UNAUTHENTICATED', message: `not signed in, or the session has ended: reload the page to sign in (${SIGN_IN_PATH})`, challenge: false } };
    }
    const outcome = authenticator.authenticate(req);
    return 'then' in outcome ? outcome.then((settled) => refusedWithoutCredentials(settled, ctx)) : refusedWithoutCredentials(outcome, ctx);
  }

  function accepted(req: IncomingMessage, ctx: RequestContext, cookie: string, verdict: SessionVerdict, secure: boolean, origin: string | undefined): Authentication | Promise<Authentication> {
    if (!verdict.ok && verdict.unavailable) {
      // state.redis unreachable: the cookie is kept (it works again once Redis is back); Basic and tokens still work.
      logger.info({ reqId: ctx.id, reason: verdict.reason }, 'session cookie refused: shared state store unreachable');
      if (req.headers.authorization !== undefined) {
        const outcome = authenticator.authenticate(req);
        return 'then' in outcome ? outcome.then(authenticationOf) : authenticationOf(outcome);
      }
      return { ok: false, error: { status: 401, code: 'UNAUTHENTICATED', message: `session cookie refused: ${verdict.reason}`, challenge: false } };
    }
    if (!verdict.ok) {
      logger.debug({ reqId: ctx.id, reason: verdict.reason }, 'session cookie refused');
      ctx.setCookie = sessions.clearCookie(secure);
      return unauthenticated(req, ctx);
    }
    const { session } = verdict;
    ctx.pageIdentity = { user: session.user, signOutPath: SIGN_OUT_PATH };
    if (!isSafeMethod(req.method)) {
      const check = checkSameOrigin(req, origin, options.trustedOrigins);
      if (!check.sameOrigin) {
        logger.info({ reqId: ctx.id, user: session.user, reason: check.reason }, 'cross-site request with the session cookie refused');
        return {
          ok: false,
          error: { status: 403, code: 'PERMISSION_DENIED', message: `cross-site request refused: ${check.reason}. Requests signed in with the session cookie must come from this site's own pages` },
        };
      }
    }
    const principal = sessionPrincipal(session);
    const renewal = sessions.renewal(cookie, session);
    if (!renewal) return { ok: true, principal };
    return renewal.then((issued) => {
      ctx.setCookie = sessions.setCookie(issued, secure);
      return { ok: true, principal };
    });
  }

  /** The session cookie (taken out of the request: it never goes upstream) and how the browser reached the gateway. */
  function takeSessionCookie(req: IncomingMessage): { cookie?: string; external?: ExternalOrigin } {
    const header = req.headers.cookie;
    if (header === undefined || !header.includes(COOKIE_MARKER)) return {};
    const external = externalOrigin(req, options.tls, options.proxies);
    const cookie = cookieValue(header, sessions.cookieName(external.secure));
    const rest = withoutCookie(withoutCookie(header, sessions.cookieName(true)) ?? '', sessions.cookieName(false));
    if (rest === undefined) delete req.headers.cookie;
    else req.headers.cookie = rest;
    return { cookie, external };
  }

  async function authenticateUpgrade(req: IncomingMessage, ctx: RequestContext, cookie: string | undefined, external: ExternalOrigin | undefined): Promise<Authentication> {
    if (req.headers.authorization === undefined && cookie) {
      const opened = await sessions.connectionCheck(cookie);
      if (opened.ok) {
        const check = checkSameOrigin(req, external!.origin);
        if (!check.sameOrigin) {
          logger.info({ reqId: ctx.id, user: opened.session.user, reason: check.reason }, 'cross-site WebSocket with the session cookie refused');
          return { ok: false, error: { status: 403, code: 'PERMISSION_DENIED', message: `cross-site WebSocket refused: ${check.reason}` } };
        }
        return { ok: true, principal: sessionPrincipal(opened.session), stillSignedIn: opened.check };
      }
    }
    return authenticationOf(await authenticator.authenticate(req));
  }

  return {
    authenticate(req, ctx) {
      const { cookie, external } = takeSessionCookie(req);
      if (ctx.upgrade) return authenticateUpgrade(req, ctx, cookie, external);
      if (req.headers.authorization !== undefined) {
        const outcome = authenticator.authenticate(req);
        return 'then' in outcome ? outcome.then(authenticationOf) : authenticationOf(outcome);
      }
      if (!cookie) return unauthenticated(req, ctx);
      const { secure, origin } = external!;
      const verdict = sessions.verify(cookie);
      if ('then' in verdict) return verdict.then((settled) => accepted(req, ctx, cookie, settled, secure, origin));
      return accepted(req, ctx, cookie, verdict, secure, origin);
    },
  };
}

/** Who a session is: a provider's user carries its groups and counts as external (never the htpasswd admin). */
function sessionPrincipal(session: Session): Principal {
  if (session.source === undefined) return { user: session.user, method: 'session', groups: [] };
  return { user: session.user, method: 'session', groups: session.groups ?? [], external: true, source: session.source };
}

/**
 * A browser's fetch or XHR from a page (Jupyter's, the MLflow UI's): a Basic challenge would pop a
 * password prompt over the page, so it gets a quiet 401. Only browsers send Sec-Fetch-Mode; the
 * MLflow client and curl keep their challenge.
 */
function fetchedByScript(req: IncomingMessage): boolean {
  const mode = req.headers['sec-fetch-mode'];
  return mode !== undefined && mode !== 'navigate';
}

/** A browser loading a page of the MLflow UI: never an API path (a 200 HTML page there breaks the client). */
function wantsSignInPage(req: IncomingMessage, path: string): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  // The gateway's own pages for people (not its API, health checks or the sign-in page itself).
  if (path.startsWith('/-/') ? !SIGNED_IN_PAGES.has(path) : isMlflowApiPath(path) || !path.startsWith('/')) return false;
  const accept = req.headers.accept;
  return accept !== undefined && accept.includes('text/html');
}

/** The sign-in page, to come back to `url` (this site's own paths only) once signed in. */
function signInLocation(url: string): string {
  return `${SIGN_IN_PATH}?next=${encodeURIComponent(safeNextPath(url) ?? '/')}`;
}

/**
 * A path on this site to return to after sign-in, or undefined. Only a relative path that starts with
 * a single "/" is accepted: no scheme, no "//host", no backslashes (browsers read "/\host" as
 * "//host"), no control characters; what comes back is re-serialised from its parsed form.
 */
export function safeNextPath(next: string | undefined | null): string | undefined {
  if (typeof next !== 'string' || next.length === 0 || next.length > 2048) return undefined;
  if (next[0] !== '/' || next[1] === '/' || next.includes('\\')) return undefined;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(next)) return undefined;
  const base = 'https://mlgate.invalid';
  let url: URL;
  try {
    url = new URL(next, base);
  } catch {
    return undefined;
  }
  if (url.origin !== base) return undefined;
  const path = url.pathname + url.search + url.hash;
  return path.startsWith('//') ? undefined : path;
}
