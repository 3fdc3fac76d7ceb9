import type { IncomingMessage } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { checkSameOrigin, externalOrigin } from '../auth/csrf.ts';
import type { Authenticator } from '../auth/authenticate.ts';
import type { Session, SessionManager } from '../auth/session.ts';
import { safeNextPath, SIGN_IN_PATH, SIGN_OUT_PATH } from '../auth/session-step.ts';
import type { TrustedProxies } from '../context/client-ip.ts';
import { contextOf, noteAudit, type RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';
import { readForm, type FormFields } from './form-body.ts';
import { messagePage, PAGE_HEADERS, signInPage, signOutPage } from './pages.ts';

export interface SignInDependencies {
  sessions: SessionManager;
  /** Checks the form's user name and password exactly as HTTP Basic is checked, lockout included. */
  authenticator: Pick<Authenticator, 'verifyPassword'>;
  /** The service's name on the page (auth.realm). */
  service: string;
  tls: boolean;
  proxies: TrustedProxies;
  logger: Logger;
  /** The identity providers offered on the sign-in page (oidc.providers). */
  providers?: readonly { name: string; label: string }[];
  /** auth.passwordSignIn: false hides the password form and refuses its POST. */
  passwordSignIn?: boolean;
  /** After mlgate's session of a provider's user ends: the provider's sign-out page to send the browser to, if it has one. */
  endProviderSession?(provider: string, signedOutPage: string): Promise<string | undefined>;
  /** The origin of that provider's sign-out page, which the sign-out form may then lead to (its CSP form-action). */
  providerSignOutOrigin?(provider: string): Promise<string | undefined>;
}

type Env = { Bindings: HttpBindings };

const SIGN_OUT_PURPOSE = 'sign-out';
const WRONG_CREDENTIALS = 'Invalid user name or password.';
const FORM_LIMIT_BYTES = 16 * 1024;

/**
 * /-/login and /-/logout: the sign-in form (checked against the htpasswd users as HTTP Basic is: off
 * the event loop, cached, behind the password-guessing lockout), and sign-out (a confirmation page, then a POST that ends the
 * session everywhere and clears the cookie). Both answer without credentials.
 */
export function registerSignInRoutes(app: Hono<Env>, deps: SignInDependencies): void {
  const { sessions, logger } = deps;

  function page(c: Context<Env>, status: number, html: string, headers: Record<string, string> = {}): Response {
    return c.body(html, status as 200, { ...PAGE_HEADERS, ...headers });
  }

  /** See Other: after a POST the browser follows with a GET, so a reload never re-submits the form. */
  function seeOther(c: Context<Env>, location: string, setCookie?: string): Response {
    const headers: Record<string, string> = { location, 'cache-control': 'no-store' };
    if (setCookie) headers['set-cookie'] = setCookie;
    return c.body(null, 303, headers);
  }

  async function currentSession(req: IncomingMessage, secure: boolean): Promise<Session | undefined> {
    const cookie = sessions.readCookie(req, secure);
    if (!cookie) return undefined;
    const verdict = await sessions.verify(cookie);
    return verdict.ok ? verdict.session : undefined;
  }

  /** The form's fields, or the 413 page when it is larger than a sign-in form can be (chunked or not). */
  /**
   * A form posted from this site's own page, read within its size limit; otherwise the answer to
   * send (403 for another site's page, 413 for an oversized form).
   */
  async function ownForm(c: Context<Env>): Promise<{ refused: Response } | { fields: FormFields; ctx: RequestContext | undefined; secure: boolean }> {
    const req = c.env.incoming;
    const ctx = contextOf(req);
    const { origin, secure } = externalOrigin(req, deps.tls, deps.proxies);
    const same = checkSameOrigin(req, origin);
    if (!same.sameOrigin) return { refused: crossSite(c, same.reason, ctx) };
    const form = await readForm(c, FORM_LIMIT_BYTES);
    if (form.tooLarge) return { refused: page(c, 413, messagePage('Request too large', 'The form sent was larger than a sign-in form can be.', { href: SIGN_IN_PATH, text: 'Back to sign-in' })) };
    return { fields: form.fields, ctx, secure };
  }

  /** A form sent from another site's page: login CSRF, or a forced sign-out. */
  function crossSite(c: Context<Env>, reason: string, ctx: RequestContext | undefined): Response {
    logger.info({ reqId: ctx?.id, reason }, 'cross-site sign-in form refused');
    return page(c, 403, messagePage('Access denied', 'This form was sent from another site, so it was not accepted.', { href: SIGN_IN_PATH, text: 'Go to the sign-in page' }));
  }

  app.get(SIGN_IN_PATH, async (c) => {
    const req = c.env.incoming;
    const { secure } = externalOrigin(req, deps.tls, deps.proxies);
    const current = await currentSession(req, secure);
    const notice = c.req.query('signed-out') !== undefined ? 'You have signed out.' : undefined;
    return page(c, 200, signInPage({ service: deps.service, next: safeNextPath(c.req.query('next')) ?? '/', notice, signedInAs: current?.user, providers: deps.providers, passwordForm: deps.passwordSignIn }));
  });

  app.post(SIGN_IN_PATH, async (c) => {
    const read = await ownForm(c);
    if ('refused' in read) return read.refused;
    const { fields: form, ctx, secure } = read;
    const ip = ctx?.clientIp ?? '';
    const user = form.get('username')?.trim() ?? '';
    const password = form.get('password') ?? '';
    const next = safeNextPath(form.get('next')) ?? '/';
    const again = (status: number, error: string, headers?: Record<string, string>) =>
      page(c, status, signInPage({ service: deps.service, next, username: user, error, providers: deps.providers, passwordForm: deps.passwordSignIn }), headers);
    if (deps.passwordSignIn === false) return again(403, 'Signing in with a user name and password is turned off here; sign in with your identity provider.');

    if (!user || !password) return again(400, 'Enter your user name and password.');
    // As HTTP Basic checks it: cached successes at once, lockouts before any hash, off the event loop.
    const outcome = await deps.authenticator.verifyPassword(user, password, ip, 'session');
    if (!outcome.ok) {
      if (outcome.status === 503) return again(503, 'The gateway is busy checking passwords; try again in a moment.', { 'retry-after': '1' });
      const retryAfter = outcome.headers?.['retry-after'];
      if (retryAfter !== undefined) {
        logger.info({ reqId: ctx?.id, ip, user }, 'sign-in refused during a lockout');
        noteAudit(ctx, { event: 'sign-in-failed', method: 'form', reason: 'locked', attemptedUser: user });
        // 401 like every refused credential, not 429: the policy is one answer everywhere.
        return again(401, `${outcome.message.charAt(0).toUpperCase()}${outcome.message.slice(1)}.`, { 'retry-after': String(retryAfter) });
      }
      logger.info({ reqId: ctx?.id, ip, user }, 'sign-in failed: invalid user name or password');
      noteAudit(ctx, { event: 'sign-in-failed', method: 'form', reason: 'invalid', attemptedUser: user });
      return again(401, WRONG_CREDENTIALS);
    }
    let issued;
    try {
      issued = await sessions.issue(user);
    } catch {
      return again(401, WRONG_CREDENTIALS); // removed from the htpasswd file a moment ago
    }
    if (ctx) ctx.principal = { user, method: 'session', groups: [] };
    logger.info({ reqId: ctx?.id, ip, user, session: issued.session.id }, 'signed in');
    noteAudit(ctx, { event: 'sign-in', method: 'form', session: issued.session.id });
    return seeOther(c, next, sessions.setCookie(issued, secure));
  });

  app.get(SIGN_OUT_PATH, async (c) => {
    const req = c.env.incoming;
    const { secure } = externalOrigin(req, deps.tls, deps.proxies);
    const current = await currentSession(req, secure);
    if (!current) return seeOther(c, SIGN_IN_PATH);
    // A provider's user is sent on to the provider's sign-out after the POST: the form may lead there.
    const atProvider = current.source !== undefined ? await deps.providerSignOutOrigin?.(current.source) : undefined;
    const headers: Record<string, string> = atProvider ? { 'content-security-policy': PAGE_HEADERS['content-security-policy']!.replace("form-action 'self'", `form-action 'self' ${atProvider}`) } : {};
    return page(c, 200, signOutPage({ user: current.user, token: sessions.formToken(SIGN_OUT_PURPOSE, current), basicToo: req.headers.authorization !== undefined }), headers);
  });

  app.post(SIGN_OUT_PATH, async (c) => {
    const req = c.env.incoming;
    const read = await ownForm(c);
    if ('refused' in read) return read.refused;
    const { fields: form, ctx, secure } = read;
    const current = await currentSession(req, secure);
    if (current) {
      if (!sessions.verifyFormToken(SIGN_OUT_PURPOSE, current, form.get('token'))) {
        return page(c, 403, signOutPage({
          user: current.user,
          token: sessions.formToken(SIGN_OUT_PURPOSE, current),
          basicToo: req.headers.authorization !== undefined,
          error: 'That sign-out form was out of date; sign out again.',
        }));
      }
      if (ctx) ctx.principal = { user: current.user, method: 'session', groups: [] };
      try {
        await sessions.revoke(current);
      } catch (err) {
        logger.error({ reqId: ctx?.id, err }, 'could not save the ended session everywhere (session.revocationsFile, or state.redis); it may be accepted elsewhere');
      }
      logger.info({ reqId: ctx?.id, ip: ctx?.clientIp, user: current.user, session: current.id, provider: current.source }, 'signed out');
      noteAudit(ctx, { event: 'sign-out', session: current.id, provider: current.source });
      // A provider's user is signed out there too (RP-initiated logout), and comes back to the sign-in page.
      const { origin } = externalOrigin(req, deps.tls, deps.proxies);
      const atProvider = current.source !== undefined && origin ? await deps.endProviderSession?.(current.source, `${origin}${SIGN_IN_PATH}?signed-out`) : undefined;
      if (atProvider) return seeOther(c, atProvider, sessions.clearCookie(secure));
    }
    return seeOther(c, `${SIGN_IN_PATH}?signed-out`, sessions.clearCookie(secure));
  });
}
