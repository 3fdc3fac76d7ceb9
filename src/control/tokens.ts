// API tokens that users make, list and revoke themselves, without an admin: a JSON API under
// /-/api/tokens and a page at /-/tokens. They edit the token store `mlgate token` edits: tokens.file,
// with a fresh read and an atomic write each time, after which this process's token store re-reads
// it, so a new token works and a revoked one is refused at once (other processes sharing the file:
// within watchInterval); or with state.redis, Redis, which every gateway asks on every request.
//
// Only authenticated requests get here (the pipeline authenticates every /-/ path but the public
// ones). Cross-site requests: the session step refuses a cookie-authenticated unsafe request from
// another site, and the pipeline one with a browser's remembered Basic password; the API's POST
// also needs Content-Type application/json (which an HTML form cannot send, and a page's script
// only with a CORS preflight the gateway never grants), and the page's POST must be same-origin.
//
// A token carries its owner's groups and source as their principal had them when it was made
// (a JWT's or an identity provider's groups; htpasswd users get their policy groups at each request
// as always). An identity provider's user is not in the htpasswd file, so nothing tells mlgate that
// the provider removed them: their tokens must expire, within tokens.externalMaxTtl.
import type { IncomingMessage } from 'node:http';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import { TokenLimitError, tokenNameProblem, type TokenRecord, type TokenStore } from '../auth/api-tokens.ts';
import { checkSameOrigin, externalOrigin } from '../auth/csrf.ts';
import type { Principal } from '../auth/principal.ts';
import { duration, formatDuration } from '../config/schema.ts';
import type { TrustedProxies } from '../context/client-ip.ts';
import { noteAudit, type RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';
import { SharedStateUnavailableError } from '../state/redis-tokens.ts';
import { readBodyLimited } from './form-body.ts';
import { messagePage, PAGE_HEADERS } from './pages.ts';
import { tokensPage, TOKENS_PAGE_HEADERS, type CreatedToken, type TokenView } from './tokens-page.ts';

const TOKENS_API = '/-/api/tokens';
const TOKENS_PAGE = '/-/tokens';

/** A token made without an expiry lives this long (htpasswd users; `mlgate token issue` uses the same). */
const DEFAULT_TTL_MS = 90 * 86_400_000;
/** Past this, "never" says it better (and dates stay within what ISO 8601 and Date can hold). */
const LONGEST_TTL_MS = 100 * 365 * 86_400_000;
const BODY_LIMIT = 16 * 1024;

export interface TokensDependencies {
  contextOf(req: IncomingMessage): RequestContext | undefined;
  /** tokens.file, or Redis with state.redis. */
  store: TokenStore;
  /** tokens.maxPerUser */
  maxPerUser: number;
  /** tokens.externalMaxTtl: the longest and default life of an identity provider user's token. */
  externalMaxTtlMs: number;
  /** Called after the store was changed: the gateway's view of tokens.file re-reads it now. */
  tokensChanged?(): void;
  /** Last uses this process saw and has not saved yet (the store's), merged with the saved ones. */
  lastUsedHere?(): ReadonlyMap<string, number>;
  tls: boolean;
  proxies: TrustedProxies;
  logger: Logger;
}

type Env = { Bindings: HttpBindings };

interface Failure {
  ok: false;
  status: 400 | 401 | 403 | 404 | 409 | 413 | 503;
  code: string;
  message: string;
}
type Outcome<T> = { ok: true; value: T } | Failure;

function fail(status: Failure['status'], code: string, message: string): Failure {
  return { ok: false, status, code, message };
}

/** Redis unreachable: a 503 saying nothing changed; anything else is the request's 500. */
function unavailable(err: unknown): Failure {
  if (err instanceof SharedStateUnavailableError) return fail(503, 'TEMPORARILY_UNAVAILABLE', err.message);
  throw err;
}

function viewOf(record: TokenRecord, lastUsed: string | undefined, now: number): TokenView {
  return {
    id: record.id,
    user: record.user,
    name: record.name,
    created: record.created,
    expires: record.expires,
    expired: record.expires !== null && Date.parse(record.expires) <= now,
    last_used: lastUsed ?? null,
    groups: record.groups ?? [],
    external: record.external ?? false,
    source: record.source ?? null,
  };
}

/** Whose tokens a list shows: one user's, or everyone's. */
type Owners = { user: string } | 'all';

/** Making, listing and revoking tokens: shared by the API and the page, so both refuse and answer alike. */
function tokensService(deps: TokensDependencies) {
  const { store, logger } = deps;
  /** Edits of the file one at a time in this process: two at once would each drop the other's change. */
  let editing: Promise<unknown> = Promise.resolve();
  const serialised = <T>(edit: () => Promise<T>): Promise<T> => {
    const result = editing.then(edit, edit);
    editing = result.catch(() => undefined);
    return result;
  };

  async function list(owners: Owners): Promise<TokenView[]> {
    const [{ records }, saved] = await Promise.all([store.list(), store.lastUsed()]);
    const here = deps.lastUsedHere?.() ?? new Map<string, number>();
    const now = Date.now();
    return records
      .filter((record) => owners === 'all' || record.user === owners.user)
      .map((record) => {
        const seen = here.get(record.id);
        const savedAt = saved[record.id];
        const last = seen !== undefined && !(Date.parse(savedAt ?? '') >= seen) ? new Date(seen).toISOString() : savedAt;
        return viewOf(record, last, now);
      });
  }

  /** The expiry asked for, as ms since the epoch (undefined: never), within what the principal may have. */
  function expiryOf(principal: Principal, given: unknown): Outcome<number | undefined> {
    const now = Date.now();
    const external = principal.external === true;
    const max = deps.externalMaxTtlMs;
    const why = `tokens of users from an identity provider expire within ${formatDuration(max)} (tokens.externalMaxTtl), because mlgate cannot learn that the provider removed a user`;
    if (given === undefined || given === null || given === '') return { ok: true, value: now + (external ? max : DEFAULT_TTL_MS) };
    if (typeof given !== 'string') return fail(400, 'INVALID_PARAMETER_VALUE', '"expires" must be a duration such as "30d", "never", or an ISO 8601 time');
    let ms: number;
    if (given === 'never') {
      if (external) return fail(400, 'INVALID_PARAMETER_VALUE', `"expires" cannot be "never": ${why}`);
      return { ok: true, value: undefined };
    } else if (/^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)\s*$/.test(given)) {
      ms = duration.parse(given);
    } else if (/^\d{4}-\d\d-\d\d/.test(given) && !Number.isNaN(Date.parse(given))) {
      ms = Date.parse(given) - now;
      if (ms <= 0) return fail(400, 'INVALID_PARAMETER_VALUE', `"expires" ${given} is in the past`);
    } else {
      return fail(400, 'INVALID_PARAMETER_VALUE', `"expires" must be a duration such as "30d", "never", or an ISO 8601 time; got ${JSON.stringify(given.slice(0, 40))}`);
    }
    if (ms < 60_000) return fail(400, 'INVALID_PARAMETER_VALUE', '"expires" must be at least a minute from now');
    if (external && ms > max) return fail(400, 'INVALID_PARAMETER_VALUE', `"expires" is too far away: ${why}`);
    if (ms > LONGEST_TTL_MS) return fail(400, 'INVALID_PARAMETER_VALUE', '"expires" is more than 100 years away; use "never"');
    return { ok: true, value: now + ms };
  }

  async function create(principal: Principal, nameGiven: unknown, expiresGiven: unknown, ctx?: RequestContext): Promise<Outcome<CreatedToken>> {
    const reqId = ctx?.id;
    if (principal.token !== undefined) {
      return fail(403, 'PERMISSION_DENIED', 'an API token cannot make more tokens; sign in (or use a password) to make one');
    }
    if (typeof nameGiven !== 'string' || nameGiven.trim() === '') return fail(400, 'INVALID_PARAMETER_VALUE', '"name" is required: what the token is for, e.g. ci-nightly');
    const name = nameGiven.trim();
    const problem = tokenNameProblem(name);
    if (problem) return fail(400, 'INVALID_PARAMETER_VALUE', problem);
    const expiry = expiryOf(principal, expiresGiven);
    if (!expiry.ok) return expiry;
    try {
      const { token, record } = await serialised(() => store.issue({
        user: principal.user,
        name,
        ttlMs: undefined,
        expiresAt: expiry.value,
        groups: principal.groups,
        external: principal.external === true,
        source: principal.source,
        maxPerUser: deps.maxPerUser,
      }));
      deps.tokensChanged?.();
      logger.info({ reqId, user: principal.user, token: record.id, expires: record.expires }, 'API token made');
      noteAudit(ctx, { event: 'token-issued', token: record.id, owner: record.user, expires: record.expires });
      return { ok: true, value: { token, ...viewOf(record, undefined, Date.now()) } };
    } catch (err) {
      if (err instanceof TokenLimitError) return fail(409, 'RESOURCE_LIMIT_EXCEEDED', err.message);
      return unavailable(err);
    }
  }

  /** Someone else's token (for a non-admin) answers exactly like one that does not exist. */
  async function revoke(principal: Principal, admin: boolean, id: string, ctx?: RequestContext): Promise<Outcome<TokenView>> {
    const reqId = ctx?.id;
    const missing = fail(404, 'RESOURCE_DOES_NOT_EXIST', `no token ${JSON.stringify(id.slice(0, 40))} among ${admin ? 'the tokens' : `the tokens of user ${principal.user}`}`);
    let revoked: TokenRecord | undefined;
    try {
      revoked = await serialised(() => store.revoke(id, (record) => admin || record.user === principal.user));
    } catch (err) {
      return unavailable(err);
    }
    if (!revoked) return missing;
    deps.tokensChanged?.();
    logger.info({ reqId, user: principal.user, token: revoked.id, owner: revoked.user }, 'API token revoked');
    noteAudit(ctx, { event: 'token-revoked', token: revoked.id, owner: revoked.user });
    return { ok: true, value: viewOf(revoked, undefined, Date.now()) };
  }

  return { list, create, revoke };
}

/** Mounts /-/api/tokens and /-/tokens on the control app. */
export function registerTokenRoutes(app: Hono<Env>, deps: TokensDependencies): void {
  const service = tokensService(deps);
  const requestIdOf = (c: Context<Env>) => deps.contextOf(c.env.incoming)?.id;
  const contextFor = (c: Context<Env>) => deps.contextOf(c.env.incoming);
  const error = (c: Context<Env>, failure: Pick<Failure, 'status' | 'code' | 'message'>) => c.json({ error_code: failure.code, message: failure.message }, failure.status);

  /** Who asks, and whether the policy in force makes them an admin. */
  function callerOf(c: Context<Env>): { principal: Principal; admin: boolean } | undefined {
    const ctx = deps.contextOf(c.env.incoming);
    return ctx?.principal ? { principal: ctx.principal, admin: ctx.subject?.admin === true } : undefined;
  }
  const unauthenticated = fail(401, 'UNAUTHENTICATED', 'not signed in');

  /** A state-changing call that names another site as its Origin, whatever its credentials (as the permissions API refuses it). */
  function foreignOrigin(c: Context<Env>): Failure | undefined {
    const req = c.env.incoming;
    if (req.headers.origin === undefined) return undefined;
    const check = checkSameOrigin(req, externalOrigin(req, deps.tls, deps.proxies).origin);
    return check.sameOrigin ? undefined : fail(403, 'PERMISSION_DENIED', `cross-site request refused: ${check.reason}`);
  }

  // The API.

  app.get(TOKENS_API, async (c) => {
    const caller = callerOf(c);
    if (!caller) return error(c, unauthenticated);
    const user = c.req.query('user');
    const all = c.req.query('all');
    const everyone = all !== undefined && all !== '0' && all !== 'false';
    if ((everyone || (user !== undefined && user !== caller.principal.user)) && !caller.admin) {
      return error(c, fail(403, 'PERMISSION_DENIED', `user ${caller.principal.user} lists only their own tokens; other users' are for admins`));
    }
    const owners: Owners = everyone ? 'all' : { user: user ?? caller.principal.user };
    try {
      return c.json({ tokens: await service.list(owners) });
    } catch (err) {
      return error(c, unavailable(err));
    }
  });

  app.post(TOKENS_API, async (c) => {
    const caller = callerOf(c);
    if (!caller) return error(c, unauthenticated);
    const foreign = foreignOrigin(c);
    if (foreign) return error(c, foreign);
    const type = c.req.header('content-type') ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) return error(c, fail(400, 'INVALID_PARAMETER_VALUE', 'Content-Type must be application/json'));
    const raw = await readBodyLimited(c, BODY_LIMIT);
    if (raw === undefined) return error(c, fail(413, 'INVALID_PARAMETER_VALUE', `the request body is larger than ${BODY_LIMIT} bytes`));
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return error(c, fail(400, 'INVALID_PARAMETER_VALUE', 'the request body is not valid JSON'));
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return error(c, fail(400, 'INVALID_PARAMETER_VALUE', 'the request body must be a JSON object: {"name": ..., "expires": ...}'));
    const { name, expires } = body as { name?: unknown; expires?: unknown };
    const made = await service.create(caller.principal, name, expires, contextFor(c));
    return made.ok ? c.json(made.value, 201, { 'cache-control': 'no-store' }) : error(c, made);
  });

  app.delete(`${TOKENS_API}/:id`, async (c) => {
    const caller = callerOf(c);
    if (!caller) return error(c, unauthenticated);
    const foreign = foreignOrigin(c);
    if (foreign) return error(c, foreign);
    const revoked = await service.revoke(caller.principal, caller.admin, c.req.param('id'), contextFor(c));
    return revoked.ok ? c.json({ revoked: revoked.value }) : error(c, revoked);
  });

  // The page.

  const html = (c: Context<Env>, status: number, body: string, headers = TOKENS_PAGE_HEADERS) => c.body(body, status as 200, { ...headers });

  async function renderPage(c: Context<Env>, principal: Principal, status: number, shown: { notice?: string; error?: string; created?: CreatedToken; name?: string }): Promise<Response> {
    let tokens: TokenView[] = [];
    try {
      tokens = await service.list({ user: principal.user });
    } catch (err) {
      const failure = unavailable(err);
      status = status < 400 ? failure.status : status;
      shown = { ...shown, error: [shown.error, `${capitalise(failure.message)}; your tokens cannot be shown.`].filter(Boolean).join(' ') };
    }
    return html(c, status, tokensPage({
      user: principal.user,
      signOut: principal.method === 'session',
      tokens,
      external: principal.external === true,
      externalMaxTtlMs: deps.externalMaxTtlMs,
      maxPerUser: deps.maxPerUser,
      byToken: principal.token !== undefined,
      ...shown,
    }));
  }

  const signInRequired = (c: Context<Env>) =>
    html(c, 401, messagePage('Sign-in required', 'Sign in to manage your API tokens.', { href: `/-/login?next=${encodeURIComponent(TOKENS_PAGE)}`, text: 'Sign in' }), PAGE_HEADERS);

  app.get(TOKENS_PAGE, async (c) => {
    const caller = callerOf(c);
    if (!caller) return signInRequired(c);
    return renderPage(c, caller.principal, 200, { notice: c.req.query('done') === 'revoked' ? 'The token was revoked; it no longer works.' : undefined });
  });

  app.post(TOKENS_PAGE, async (c) => {
    const caller = callerOf(c);
    if (!caller) return signInRequired(c);
    const { principal } = caller;
    const req = c.env.incoming;
    const same = checkSameOrigin(req, externalOrigin(req, deps.tls, deps.proxies).origin);
    if (!same.sameOrigin) {
      deps.logger.info({ reqId: requestIdOf(c), user: principal.user, reason: same.reason }, 'cross-site tokens form refused');
      return html(c, 403, messagePage('Access denied', 'This form was sent from another site, so it was not accepted.', { href: TOKENS_PAGE, text: 'Go to your tokens' }), PAGE_HEADERS);
    }
    const raw = await readBodyLimited(c, BODY_LIMIT);
    if (raw === undefined) return renderPage(c, principal, 413, { error: 'The form sent was larger than a tokens form can be; nothing was changed.' });
    const form = new URLSearchParams(raw.toString('utf8'));
    const action = form.get('action');
    if (action === 'create') {
      const made = await service.create(principal, form.get('name') ?? '', form.get('expires') ?? '', contextFor(c));
      if (!made.ok) return renderPage(c, principal, made.status, { error: `${capitalise(made.message)}; no token was made.`, name: form.get('name') ?? '' });
      // Answered here, not through a redirect: the token must not go into a URL or the history.
      return renderPage(c, principal, 201, { created: made.value });
    }
    if (action === 'revoke') {
      // The page revokes only the caller's own tokens, admins' included (they use the API for others').
      const revoked = await service.revoke(principal, false, form.get('id') ?? '', contextFor(c));
      if (!revoked.ok) return renderPage(c, principal, revoked.status, { error: `${capitalise(revoked.message)}; nothing was changed.` });
      // See Other: the browser follows with a GET, so reloading never sends the form again.
      return c.body(null, 303, { location: `${TOKENS_PAGE}?done=revoked`, 'cache-control': 'no-store' });
    }
    return renderPage(c, principal, 400, { error: 'The form was incomplete; nothing was changed.' });
  });
}

function capitalise(text: string): string {
  const trimmed = text.replace(/\.$/, '');
  return trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
}
