import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { authRefusal, type Authenticator } from '../auth/authenticate.ts';
import { crossSiteReason, externalOrigin, isSafeMethod } from '../auth/csrf.ts';
import type { Authorization, Authorizer } from '../authz/authorize-request.ts';
import { attachBodyLimits, type BodyBudget } from '../authz/read-body.ts';
import type { SessionStep, UpgradeAuthentication } from '../auth/session-step.ts';
import type { Policy } from '../authz/policy.ts';
import { mayUseRoute, routeRefusal } from '../authz/route-access.ts';
import { peerAddress, type TrustedProxies } from '../context/client-ip.ts';
import { createRequestContext, pathOf, toOriginForm, type RequestContext } from '../context/request-context.ts';
import { matchUpstreamRoute, type UpstreamRoute } from '../context/upstream-routes.ts';
import { PUBLIC_CONTROL_PATHS } from '../control/app.ts';
import { logAccess } from '../http/access-log.ts';
import { sendError, type GatewayError } from '../http/errors.ts';
import type { Logger } from '../log/logger.ts';
import type { ForwardOptions, Forwarder } from '../proxy/forwarder.ts';
import { upstreamHeaderBuilder, type IdentityHeaders } from '../proxy/request-headers.ts';
import type { WebSocketTunnels } from '../proxy/websocket-tunnels.ts';
import type { ConnectionGuard } from './connection-guard.ts';
import type { SlowRequestWatch } from './slow-requests.ts';

export interface PipelineOptions {
  logger: Logger;
  proxies: TrustedProxies;
  authenticator: Authenticator;
  /** The routes in matching order, each with the forwarder to its upstream. */
  routes: readonly UpstreamRoute[];
  forwarders: ReadonlyMap<UpstreamRoute, Forwarder>;
  /** The policy in force: its admins and groups decide routes' `allow`. */
  policy: { current(): Policy };
  tunnels: WebSocketTunnels;
  control: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  identity: IdentityHeaders;
  tls: boolean;
  hsts: string | false;
  contexts: WeakMap<IncomingMessage, RequestContext>;
  /** Browser sign-in (session.enabled): the session cookie, and the redirect of UI pages to /-/login. */
  sessionStep?: SessionStep;
  /** Per-user authorization (src/authz): who may do what on which experiment or model. */
  authorizer: Authorizer;
  /** Other sites' pages that may send unsafe requests with a browser's credentials (auth.trustedOrigins). */
  trustedOrigins: ReadonlySet<string>;
  /** Bodies that stall, and bodies still arriving after a refusal (limits.*). */
  slowRequests: SlowRequestWatch;
  /** Connections per client IP behind trusted proxies (limits.maxConnectionsPerIp). */
  connections: ConnectionGuard;
  /** Memory for bodies read whole to check them, across requests (limits.checkedBodyBudget). */
  bodyBudget: BodyBudget;
}

const busyError: GatewayError = {
  status: 503,
  code: 'TEMPORARILY_UNAVAILABLE',
  message: 'the gateway is checking too many request bodies at once (limits.checkedBodyBudget); retry shortly',
  headers: { 'retry-after': '2' },
};

const STATUS_TEXT: Record<number, string> = { 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/**
 * One request's path through the gateway, top to bottom: context, authentication, then either the
 * gateway's own /-/ routes or authorization and the upstream; the access log line is written when
 * the response ends.
 */
export function createRequestPipeline(options: PipelineOptions) {
  const { logger, authenticator, forwarders, control, contexts, authorizer, tunnels } = options;
  const upstreamHeaders = upstreamHeaderBuilder(options.identity);
  const proto = options.tls ? 'https' : 'http';
  let inFlight = 0;
  let draining = false;

  function fail(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, error: GatewayError): void {
    let headers = error.status === 401 ? { 'www-authenticate': authenticator.challenge, ...error.headers } : error.headers;
    // With the body still coming, "Connection: close" would make Node close at once with unread
    // bytes: a reset that can destroy this very answer. The slow-request watch drains the rest
    // (bounded) and then closes.
    if (headers?.connection !== undefined && options.slowRequests.bodyPending(req)) {
      headers = { ...headers };
      delete headers.connection;
    }
    if (error.status >= 500) logger.warn({ reqId: ctx.id, status: error.status }, error.message);
    sendError(req, res, { ...error, headers }, ctx);
  }

  function forwardHeaders(req: IncomingMessage, ctx: RequestContext, upgrade: boolean): void {
    req.headers = upstreamHeaders(req.headers, ctx.id, ctx.principal!.user, {
      peerIp: peerAddress(req),
      proto,
      host: req.headers.host,
      peerTrusted: options.proxies.peerIsTrusted(req),
    }, upgrade);
    for (const [name, value] of ctx.route!.headers) req.headers[name] = value;
  }

  function forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, how?: ForwardOptions): void {
    forwardHeaders(req, ctx, false);
    forwarders.get(ctx.route!)!.web(req, res, ctx, (error) => fail(req, res, ctx, error), how);
  }

  /**
   * Picks the route; for a stripped one, req.url becomes what its upstream gets. Anything but
   * undefined is the answer instead: a refused path, or the bare prefix sent to its slash form.
   * No route at all is answered 404 after authentication: who is not signed in learns nothing.
   */
  function selectRoute(req: IncomingMessage, ctx: RequestContext): { error: GatewayError } | { redirect: string } | undefined {
    const match = matchUpstreamRoute(options.routes, toOriginForm(req));
    if (match.kind === 'refused') return { error: { status: 400, code: 'INVALID_PARAMETER_VALUE', message: `path refused: ${match.reason}` } };
    if (match.kind === 'redirect') return { redirect: match.location };
    if (match.kind === 'route') {
      ctx.route = match.route;
      if (match.url !== req.url) {
        req.url = match.url;
        ctx.apiPath = pathOf(match.url);
      }
    }
    return undefined;
  }

  /**
   * A browser sends a Basic password it remembers on any site's requests to this one, forms
   * included (MLflow's upload-artifact takes a text/plain form body as the file): an unsafe request
   * with Basic from another site's page is refused before the password is even checked. The cookie
   * gets the same check in the session step; bearer tokens are never attached by a browser itself.
   */
  function crossSiteBasic(req: IncomingMessage, upgrade: boolean): GatewayError | undefined {
    if (!upgrade && isSafeMethod(req.method)) return undefined;
    const authorization = req.headers.authorization;
    if (authorization === undefined || !/^basic /i.test(authorization)) return undefined;
    const reason = crossSiteReason(req, externalOrigin(req, options.tls, options.proxies).origin, options.trustedOrigins);
    if (reason === undefined) return undefined;
    return { status: 403, code: 'PERMISSION_DENIED', message: `cross-site request refused: ${reason}. Requests with a browser's remembered password must come from this site's own pages` };
  }

  function notRouted(ctx: RequestContext): GatewayError {
    return { status: 404, code: 'ENDPOINT_NOT_FOUND', message: `no route serves ${ctx.path}; routes: ${options.routes.map((r) => r.path).join(', ')}` };
  }

  /** The authorization step (src/authz/authorize-request.ts), then the upstream with exactly the bytes it checked. */
  function authorizeAndForward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext): void {
    authorizer.authorize(req, res, ctx).then((outcome: Authorization | null) => {
      if (outcome === null || res.destroyed) return; // the client left while its body was read
      if (outcome.ok) forward(req, res, ctx, outcome.body || outcome.filterResponse ? { body: outcome.body, transformResponse: outcome.filterResponse } : undefined);
      else fail(req, res, ctx, outcome.error);
    }).catch((err: unknown) => internalError(req, res, ctx, err));
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const ctx = createRequestContext(req, options.proxies.clientIp(req));
    contexts.set(req, ctx);
    inFlight++;
    res.setHeader('x-request-id', ctx.id);
    if (options.hsts) res.setHeader('strict-transport-security', options.hsts);
    if (draining) res.setHeader('connection', 'close');
    res.once('close', () => {
      inFlight--;
      logAccess(logger, ctx, req, res);
    });
    options.slowRequests.watch(req, res, ctx);
    if (!options.connections.admit(req, ctx.clientIp)) {
      return fail(req, res, ctx, { status: 503, code: 'TEMPORARILY_UNAVAILABLE', message: 'too many open connections from this client (limits.maxConnectionsPerIp)', headers: { 'retry-after': '5', connection: 'close' } });
    }
    if (options.slowRequests.bodyPending(req)) attachBodyLimits(req, { budget: options.bodyBudget, res, refuseBusy: () => fail(req, res, ctx, busyError) });

    if (PUBLIC_CONTROL_PATHS.has(ctx.path)) {
      void control(req, res);
      return;
    }
    const detour = ctx.path.startsWith('/-/') ? undefined : selectRoute(req, ctx);
    if (detour) {
      if ('error' in detour) fail(req, res, ctx, detour.error);
      else res.writeHead(308, { location: detour.redirect, 'content-length': 0 }).end();
      return;
    }
    const crossSite = crossSiteBasic(req, false);
    if (crossSite) return fail(req, res, ctx, crossSite);
    // Null: the session step answered itself (a redirect to /-/login, a refused cross-site request).
    const outcome = options.sessionStep ? options.sessionStep.authenticate(req, res, ctx) : authenticator.authenticate(req);
    if (outcome === null) return;
    if ('then' in outcome) outcome.then((result) => afterAuthentication(req, res, ctx, result)).catch((err: unknown) => internalError(req, res, ctx, err));
    else {
      try {
        afterAuthentication(req, res, ctx, outcome);
      } catch (err) {
        internalError(req, res, ctx, err);
      }
    }
  }

  /** A bug must cost one request, never the process and everyone else's requests. */
  function internalError(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, err: unknown): void {
    logger.error({ reqId: ctx.id, err }, 'internal error while handling a request');
    fail(req, res, ctx, { status: 500, code: 'INTERNAL_ERROR', message: `the gateway failed to handle this request (request id ${ctx.id})` });
  }

  function afterAuthentication(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, outcome: Awaited<ReturnType<Authenticator['authenticate']>> | null): void {
    if (outcome === null) return;
    if (!outcome.ok) return fail(req, res, ctx, authRefusal(outcome));
    ctx.principal = outcome.principal;
    if (ctx.path.startsWith('/-/')) return void control(req, res);
    const { route: target } = ctx;
    if (!target) return fail(req, res, ctx, notRouted(ctx));
    if (!mayUseRoute(outcome.principal, target, options.policy.current())) return fail(req, res, ctx, routeRefusal(outcome.principal, target));
    if (target.mlflow) authorizeAndForward(req, res, ctx);
    else forward(req, res, ctx);
  }

  /** WebSocket upgrades: the same route, authentication and access checks, then a tunnel to the upstream. */
  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ctx = createRequestContext(req, options.proxies.clientIp(req));
    socket.on('error', () => socket.destroy());
    const refuse = (error: GatewayError) => {
      const body = JSON.stringify({ error_code: error.code, message: error.message });
      const challenge = error.status === 401 ? `WWW-Authenticate: ${authenticator.challenge}\r\n` : '';
      const location = typeof error.headers?.location === 'string' ? `Location: ${error.headers.location}\r\n` : '';
      socket.end(`HTTP/1.1 ${error.status} ${STATUS_TEXT[error.status] ?? 'Error'}\r\n${challenge}${location}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${ctx.id}\r\nConnection: close\r\n\r\n${body}`);
      logger.info({ reqId: ctx.id, ip: ctx.clientIp, method: req.method, path: ctx.path, status: error.status, user: ctx.principal?.user, upgrade: true }, 'request');
    };
    if (ctx.path.startsWith('/-/')) return refuse({ status: 404, code: 'ENDPOINT_NOT_FOUND', message: `the gateway takes no WebSocket on ${ctx.path}` });
    const detour = selectRoute(req, ctx);
    if (detour) return refuse('error' in detour ? detour.error : { status: 308, code: 'ENDPOINT_NOT_FOUND', message: `moved to ${detour.redirect}`, headers: { location: detour.redirect } });
    const crossSite = crossSiteBasic(req, true);
    if (crossSite) return refuse(crossSite);
    const authentication: Promise<UpgradeAuthentication> = options.sessionStep
      ? options.sessionStep.authenticateUpgrade(req)
      : Promise.resolve(authenticator.authenticate(req)).then((outcome) => outcome.ok ? outcome : { ok: false, error: authRefusal(outcome) });
    authentication.then((outcome) => {
      if (!outcome.ok) return refuse(outcome.error);
      const { principal } = outcome;
      ctx.principal = principal;
      const target = ctx.route;
      if (!target) return refuse(notRouted(ctx));
      if (!mayUseRoute(principal, target, options.policy.current())) return refuse(routeRefusal(principal, target));
      if (target.mlflow) {
        const refused = authorizer.authorizeUpgrade(req, ctx);
        if (refused) return refuse(refused);
      }
      forwardHeaders(req, ctx, true);
      const { stillSignedIn } = outcome;
      tunnels.add(socket, {
        reqId: ctx.id,
        user: principal.user,
        ended: stillSignedIn && (() => {
          const verdict = stillSignedIn();
          return verdict.ok ? undefined : verdict.reason;
        }),
      });
      logger.info({ reqId: ctx.id, ip: ctx.clientIp, method: req.method, path: ctx.path, user: principal.user, auth: principal.method, upgrade: true }, 'websocket');
      forwarders.get(target)!.ws(req, socket, head, ctx, refuse);
    }).catch((err: unknown) => {
      logger.error({ reqId: ctx.id, err }, 'internal error while handling a WebSocket upgrade');
      refuse({ status: 500, code: 'INTERNAL_ERROR', message: `the gateway failed to handle this request (request id ${ctx.id})` });
    });
  }

  return {
    handleRequest,
    handleUpgrade,
    get inFlight() {
      return inFlight;
    },
    drain() {
      draining = true;
    },
  };
}
