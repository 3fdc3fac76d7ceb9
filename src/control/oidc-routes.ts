// /-/oidc/start and /-/oidc/callback: signing in with an identity provider (docs/oidc.md). The start
// sends the browser to the provider with PKCE, state and nonce, remembered in a short-lived signed
// cookie that only these two paths receive; the callback has openid-client check the answer and
// ends in the same session cookie a password sign-in makes. Every refusal is a page with a 4xx
// status (502 when the provider cannot be reached) and a log line, never a 500.
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { externalOrigin } from '../auth/csrf.ts';
import type { OidcProvider, SignInFlow } from '../auth/oidc.ts';
import type { ProviderRefresh } from '../auth/oidc-refresh.ts';
import { cookieValue, type SessionManager } from '../auth/session.ts';
import { safeNextPath, SIGN_IN_PATH } from '../auth/session-step.ts';
import type { TrustedProxies } from '../context/client-ip.ts';
import { contextOf, noteAudit } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';
import { messagePage, PAGE_HEADERS } from './pages.ts';

export const OIDC_START_PATH = '/-/oidc/start';
export const OIDC_CALLBACK_PATH = '/-/oidc/callback';

export interface OidcDependencies {
  sessions: SessionManager;
  providers: ReadonlyMap<string, OidcProvider>;
  /** oidc.redirectUrl: the callback as registered at the providers; absent: this gateway's origin as the browser names it. */
  redirectUrl?: string;
  tls: boolean;
  proxies: TrustedProxies;
  logger: Logger;
  /** Keeps the refresh token a provider gave at sign-in, to keep the user's groups current. */
  refresh?: ProviderRefresh;
}

type Env = { Bindings: HttpBindings };

/** How long a browser may spend at the provider's sign-in page. */
const FLOW_TTL_SECONDS = 600;
/** Sent only to /-/oidc/: it never reaches MLflow or any other upstream. */
const FLOW_COOKIE_PATH = '/-/oidc/';
/** Browsers drop cookies over about 4 KiB; a session cookie carrying very many groups would be lost silently. */
const MAX_SESSION_COOKIE_BYTES = 3800;

export function registerOidcRoutes(app: Hono<Env>, deps: OidcDependencies): void {
  const { sessions, providers, logger } = deps;

  function flowCookieName(secure: boolean): string {
    return secure ? '__Secure-mlgate-oidc' : 'mlgate-oidc';
  }

  function flowCookie(secure: boolean, value: string, maxAge: number): string {
    return `${flowCookieName(secure)}=${value}; Max-Age=${maxAge}; Path=${FLOW_COOKIE_PATH}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
  }

  function refusal(c: Context<Env>, status: number, title: string, message: string, secure: boolean): Response {
    c.header('set-cookie', flowCookie(secure, '', 0), { append: true });
    return c.body(messagePage(title, message, { href: SIGN_IN_PATH, text: 'Back to sign-in' }), status as 400, PAGE_HEADERS);
  }

  app.get(OIDC_START_PATH, async (c) => {
    const req = c.env.incoming;
    const ctx = contextOf(req);
    const { origin, secure } = externalOrigin(req, deps.tls, deps.proxies);
    const provider = providers.get(c.req.query('provider') ?? '');
    if (!provider) return refusal(c, 404, 'Unknown identity provider', 'This gateway has no identity provider by that name.', secure);
    const next = safeNextPath(c.req.query('next')) ?? '/';
    const redirectUri = deps.redirectUrl ?? (origin && `${origin}${OIDC_CALLBACK_PATH}`);
    if (!redirectUri) return refusal(c, 400, 'Sign-in failed', 'The request named no host, so the gateway cannot tell the provider where to send you back.', secure);
    let started;
    try {
      started = await provider.start(redirectUri, next);
    } catch (err) {
      logger.warn({ reqId: ctx?.id, provider: provider.name, err }, 'cannot start a sign-in: the identity provider is unreachable or its discovery document is unusable');
      return refusal(c, 502, 'Identity provider unavailable', `${provider.label} cannot be reached right now; try again in a moment.`, secure);
    }
    const sealed = await sessions.sealFlow({ ...started.flow }, FLOW_TTL_SECONDS);
    c.header('set-cookie', flowCookie(secure, sealed, FLOW_TTL_SECONDS));
    c.header('cache-control', 'no-store');
    return c.redirect(started.location.href, 302);
  });

  app.get(OIDC_CALLBACK_PATH, async (c) => {
    const req = c.env.incoming;
    const ctx = contextOf(req);
    const { origin, secure } = externalOrigin(req, deps.tls, deps.proxies);
    const log = { reqId: ctx?.id, ip: ctx?.clientIp };
    const sealed = cookieValue(req.headers.cookie, flowCookieName(secure));
    const flow = sealed ? flowOf(await sessions.openFlow(sealed)) : undefined;
    if (!flow) {
      logger.info(log, 'provider sign-in refused: no sign-in in progress in this browser (missing or expired state cookie)');
      return refusal(c, 400, 'Sign-in failed', 'This sign-in was not started in this browser, or took longer than 10 minutes. Start again from the sign-in page.', secure);
    }
    const provider = providers.get(flow.provider);
    if (!provider) return refusal(c, 400, 'Sign-in failed', 'The identity provider this sign-in started with is no longer configured.', secure);
    const result = await provider.finish(new URL(req.url ?? '/', origin ?? 'https://mlgate.invalid'), flow);
    if (!result.ok) {
      logger.info({ ...log, provider: provider.name, status: result.status, detail: result.detail }, 'provider sign-in refused');
      noteAudit(ctx, { event: 'sign-in-failed', method: `oidc:${provider.name}`, reason: 'provider-refused' });
      return refusal(c, result.status, result.title, result.message, secure);
    }
    const issued = await sessions.issueExternal(result.user, provider.name, result.groups);
    if (issued.value.length > MAX_SESSION_COOKIE_BYTES) {
      await sessions.revoke(issued.session).catch(() => undefined);
      logger.warn({ ...log, provider: provider.name, user: result.user, groups: result.groups.length }, 'provider sign-in refused: too many groups for a session cookie');
      return refusal(c, 403, 'Access denied', `${result.user} is in too many groups (${result.groups.length}) for a browser session. Ask an administrator to have the provider send fewer (e.g. only the groups assigned to this application).`, secure);
    }
    if (result.refreshToken && deps.refresh) {
      try {
        await deps.refresh.remember({ provider: provider.name, user: result.user, subject: result.subject, groups: result.groups, refreshToken: result.refreshToken, refreshExpiresIn: result.refreshExpiresIn, session: issued.session });
      } catch (err) {
        logger.error({ ...log, provider: provider.name, user: result.user, err }, "could not save the provider's refresh token to oidc.refreshTokensFile; this user's groups are not refreshed until they sign in again");
      }
    }
    if (ctx) ctx.principal = { user: result.user, method: 'session', groups: result.groups, external: true, source: provider.name };
    logger.info({ ...log, provider: provider.name, user: result.user, subject: result.subject, groups: result.groups, session: issued.session.id }, 'signed in');
    noteAudit(ctx, { event: 'sign-in', method: 'oidc', provider: provider.name, session: issued.session.id });
    c.header('set-cookie', flowCookie(secure, '', 0), { append: true });
    c.header('set-cookie', sessions.setCookie(issued, secure), { append: true });
    c.header('cache-control', 'no-store');
    return c.body(null, 303, { location: safeNextPath(flow.next) ?? '/' });
  });
}

function flowOf(claims: Record<string, unknown> | undefined): SignInFlow | undefined {
  if (!claims) return undefined;
  const { provider, state, nonce, verifier, redirectUri, next } = claims;
  if ([provider, state, nonce, verifier, redirectUri, next].some((value) => typeof value !== 'string')) return undefined;
  return { provider, state, nonce, verifier, redirectUri, next } as SignInFlow;
}
