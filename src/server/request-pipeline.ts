// One request's path through the gateway, for HTTP requests and WebSocket upgrades alike, top to
// bottom in this file:
//
//   listener -> context -> admission -> verdict -> the transport's writer -> one access-log line
//
// Admission (admit, admitAuthenticated) decides and never writes: the client's connection count,
// the gateway's public routes, the route, a cross-site Basic request, authentication (the session
// step), the route's `allow`, and on MLflow routes the authorization step. Each step returns what
// it decided. A verdict refuses with an error, redirects, hands the request to the gateway's own
// routes, or forwards it; one writer per transport turns it into bytes. A throw anywhere on the
// path costs that one request a 500 with its id, never the process.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Authenticator } from '../auth/authenticate.ts';
import type { ClientCertificateStep } from '../auth/client-certificate.ts';
import { crossSiteReason, externalOrigin, isSafeMethod } from '../auth/csrf.ts';
import { authenticationOf, type Authentication, type SessionStep } from '../auth/session-step.ts';
import type { SessionVerdict } from '../auth/session.ts';
import type { Authorizer } from '../authz/authorize-request.ts';
import { subjectOf } from '../authz/decide.ts';
import type { Policy } from '../authz/policy.ts';
import { mayUseRoute, routeRefusal } from '../authz/route-access.ts';
import { DEFAULT_WORKSPACE, WORKSPACE_HEADER } from '../authz/workspace.ts';
import type { AllowCidrs } from '../context/allow-cidrs.ts';
import type { TrustedProxies } from '../context/client-ip.ts';
import { createRequestContext, pathOf, type GatewayRequest, type RequestContext } from '../context/request-context.ts';
import { matchUpstreamRoute, type UpstreamRoute } from '../context/upstream-routes.ts';
import { PUBLIC_CONTROL_PATHS } from '../control/app.ts';
import { logAccess } from '../http/access-log.ts';
import { auditExchange } from '../http/audit-exchange.ts';
import { sendError } from '../http/errors.ts';
import { internalError, type GatewayError } from '../http/gateway-error.ts';
import type { AuditLog } from '../log/audit-log.ts';
import type { Logger } from '../log/logger.ts';
import type { ForwardOptions, Forwarder } from '../proxy/forwarder.ts';
import { upstreamHeaderBuilder, type IdentityHeaders } from '../proxy/request-headers.ts';
import { noServerUp } from '../proxy/upstream-errors.ts';
import type { UpstreamServer } from '../proxy/upstream-pool.ts';
import type { WebSocketTunnels } from '../proxy/websocket-tunnels.ts';
import type { ConnectionGuard } from './connection-guard.ts';
import { authFailureOf, type GatewayMetrics } from './metrics.ts';
import type { SlowRequestWatch } from './slow-requests.ts';

interface PipelineOptions {
  logger: Logger;
  proxies: TrustedProxies;
  authenticator: Authenticator;
  /** The routes in matching order, each with the forwarder to its upstream. */
  routes: readonly UpstreamRoute[];
  forwarders: ReadonlyMap<UpstreamRoute, Forwarder>;
  /** The policy in force: each request is decided on the one it finds at authentication. */
  policy: { current(): Policy };
  tunnels: WebSocketTunnels;
  control: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  identity: IdentityHeaders;
  tls: boolean;
  hsts: string | false;
  /** Mutual TLS (tls.clientCertificates): a verified client certificate names the user, before any other method. */
  clientCertificates?: Pick<ClientCertificateStep, 'authenticate'>;
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
  /** The audit log (audit.enabled): each exchange's security events, written in `finish`. */
  audit?: Pick<AuditLog, 'record'>;
  /** Prometheus metrics (metrics.enabled): each exchange counted once, in `finish`. */
  metrics?: Pick<GatewayMetrics, 'observe'>;
  /** Client addresses that may use the gateway (access.allowCidrs); undefined: every address. */
  allowCidrs?: AllowCidrs;
}

/** What admission decided about a request or upgrade; the transport's writer carries it out. */
type Verdict =
  | { kind: 'refuse'; error: GatewayError }
  /** 308: a stripped route's bare prefix to its slash form; 302: a browser's page load to the sign-in page. */
  | { kind: 'redirect'; status: 302 | 308; location: string }
  /** The gateway's own routes under /-/ (ctx.principal set unless the path is public). */
  | { kind: 'control' }
  /** To ctx.route's upstream, as `how` says; a cookie-opened tunnel is closed once `stillSignedIn` fails. */
  | { kind: 'forward'; how?: ForwardOptions; stillSignedIn?: () => SessionVerdict }
  /** The client left while its body was read: nothing to answer. */
  | { kind: 'client-left' };

const CONTROL: Verdict = Object.freeze({ kind: 'control' });
const FORWARD: Verdict = Object.freeze({ kind: 'forward' });
const CLIENT_LEFT: Verdict = Object.freeze({ kind: 'client-left' });

const TOO_MANY_CONNECTIONS: GatewayError = Object.freeze({
  status: 503,
  code: 'TEMPORARILY_UNAVAILABLE',
  message: 'too many open connections from this client (limits.maxConnectionsPerIp)',
  headers: { 'retry-after': '5', connection: 'close' },
});

const STATUS_TEXT: Record<number, string> = { 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

/** The orchestrator's probes answer from any address (access.allowCidrs does not apply to them). */
const PROBE_PATHS: ReadonlySet<string> = new Set(['/-/healthz', '/-/readyz']);

/** A client address outside an allow-list; the list itself is not revealed. */
function addressRefusal(clientIp: string): GatewayError {
  return { status: 403, code: 'PERMISSION_DENIED', message: `requests from this address (${clientIp || 'unknown'}) are not allowed here` };
}

function refuse(error: GatewayError): Verdict {
  return { kind: 'refuse', error };
}

export function createRequestPipeline(options: PipelineOptions) {
  const { logger, authenticator, forwarders, control, authorizer, tunnels } = options;
  const upstreamHeaders = upstreamHeaderBuilder(options.identity);
  const proto = options.tls ? 'https' : 'http';
  let inFlight = 0;
  let draining = false;

  // ---- Admission: decides, never writes. ----

  function admit(req: IncomingMessage, ctx: RequestContext): Verdict | Promise<Verdict> {
    if (!options.connections.admit(req, ctx.clientIp)) return refuse(TOO_MANY_CONNECTIONS);
    // Before anything is read or checked for this client: no password, lockout count or session.
    if (!PROBE_PATHS.has(ctx.path) && !addressAllowed(ctx, options.allowCidrs)) return refuse(addressRefusal(ctx.clientIp));
    if (ctx.path.startsWith('/-/')) {
      if (ctx.upgrade) return refuse({ status: 404, code: 'ENDPOINT_NOT_FOUND', message: `the gateway takes no WebSocket on ${ctx.path}` });
      if (PUBLIC_CONTROL_PATHS.has(ctx.path)) return CONTROL;
    } else {
      const detour = selectRoute(ctx);
      if (detour) return detour;
    }
    const crossSite = crossSiteBasic(req, ctx);
    if (crossSite) return refuse(crossSite);
    const authentication = authenticate(req, ctx);
    return 'then' in authentication
      ? authentication.then((settled) => admitAuthenticated(req, ctx, settled))
      : admitAuthenticated(req, ctx, authentication);
  }

  function admitAuthenticated(req: IncomingMessage, ctx: RequestContext, authentication: Authentication): Verdict | Promise<Verdict> {
    if (!authentication.ok) {
      ctx.authFailure = authFailureOf(req, authentication);
      return 'signIn' in authentication ? { kind: 'redirect', status: 302, location: authentication.signIn } : refuse(authentication.error);
    }
    const { principal, stillSignedIn } = authentication;
    const subject = subjectOf(principal, options.policy.current());
    ctx.principal = principal;
    ctx.subject = subject;
    if (ctx.path.startsWith('/-/')) return CONTROL;
    const { route } = ctx;
    // Answered only now: who is not signed in learns nothing about the routes.
    if (!route) return refuse({ status: 404, code: 'ENDPOINT_NOT_FOUND', message: `no route serves ${ctx.path}; routes: ${options.routes.map((r) => r.path).join(', ')}` });
    if (!mayUseRoute(subject, route)) return refuse(routeRefusal(subject, route));
    const forward: Verdict = stillSignedIn ? { kind: 'forward', stillSignedIn } : FORWARD;
    if (!route.mlflow) return forward;
    if (ctx.upgrade) {
      const refused = authorizer.authorizeUpgrade(ctx);
      return refused ? refuse(refused) : forward;
    }
    return authorizer.authorize(req, ctx).then((decision): Verdict => {
      if (!decision.ok && 'clientLeft' in decision) return CLIENT_LEFT;
      ctx.decision = decision.ok ? 'allow' : 'deny';
      if (!decision.ok) return refuse(decision.error);
      return decision.body || decision.filterResponse ? { kind: 'forward', how: { body: decision.body, transformResponse: decision.filterResponse } } : FORWARD;
    });
  }

  /**
   * The route, and the target as its upstream gets it (a stripped route's prefix removed); or the
   * answer instead: a refused path, or the bare prefix sent to its slash form. No route at all is
   * answered 404 after authentication.
   */
  function selectRoute(ctx: RequestContext): Verdict | undefined {
    const match = matchUpstreamRoute(options.routes, ctx.target);
    // A route's own allow-list narrows access.allowCidrs, still before authentication.
    if ((match.kind === 'route' || match.kind === 'redirect') && !addressAllowed(ctx, match.route.allowCidrs, match.route)) return refuse(addressRefusal(ctx.clientIp));
    if (match.kind === 'refused') return refuse({ status: 400, code: 'INVALID_PARAMETER_VALUE', message: `path refused: ${match.reason}` });
    if (match.kind === 'redirect') {
      return ctx.upgrade
        ? refuse({ status: 308, code: 'ENDPOINT_NOT_FOUND', message: `moved to ${match.location}`, headers: { location: match.location } })
        : { kind: 'redirect', status: 308, location: match.location };
    }
    if (match.kind === 'route') {
      ctx.route = match.route;
      ctx.upstreamTarget = match.url;
      ctx.upstreamPath = pathOf(match.url);
    }
    return undefined;
  }

  /**
   * A browser sends a Basic password it remembers on any site's requests to this one, forms
   * included (MLflow's upload-artifact takes a text/plain form body as the file): an unsafe request
   * with Basic from another site's page is refused before the password is even checked. The cookie
   * gets the same check in the session step; bearer tokens are never attached by a browser itself.
   */
  function crossSiteBasic(req: IncomingMessage, ctx: RequestContext): GatewayError | undefined {
    if (!ctx.upgrade && isSafeMethod(req.method)) return undefined;
    const authorization = req.headers.authorization;
    if (authorization === undefined || !/^basic /i.test(authorization)) return undefined;
    const reason = crossSiteReason(req, externalOrigin(req, options.tls, options.proxies).origin, options.trustedOrigins);
    if (reason === undefined) return undefined;
    return { status: 403, code: 'PERMISSION_DENIED', message: `cross-site request refused: ${reason}. Requests with a browser's remembered password must come from this site's own pages` };
  }

  /** Whether the client address (ctx.clientIp: behind trusted proxies, the forwarded client) is in the list; a refusal is logged. */
  function addressAllowed(ctx: RequestContext, list: AllowCidrs | undefined, route?: UpstreamRoute): boolean {
    if (!list || list.allows(ctx.clientIp)) return true;
    logger.info({ reqId: ctx.id, ip: ctx.clientIp, peer: ctx.peerTrusted ? ctx.peerIp : undefined, path: ctx.path, route: route?.path },
      route ? `client address not in routes[].allowCidrs of ${route.path}: refused` : 'client address not in access.allowCidrs: refused');
    return false;
  }

  function authenticate(req: IncomingMessage, ctx: RequestContext): Authentication | Promise<Authentication> {
    const certified = options.clientCertificates?.authenticate(req, ctx);
    if (certified) return certified;
    if (options.sessionStep) return options.sessionStep.authenticate(req, ctx);
    const outcome = authenticator.authenticate(req);
    return 'then' in outcome ? outcome.then(authenticationOf) : authenticationOf(outcome);
  }

  /** Admission, then `write` with its verdict; a throw on either side becomes a 500 for this request alone. */
  function decide(ctx: RequestContext, req: IncomingMessage, write: (verdict: Verdict) => void, abandon: () => void): void {
    const failed = (err: unknown) => {
      logger.error({ reqId: ctx.id, err }, 'internal error while handling a request');
      try {
        write(refuse(internalError(ctx.id)));
      } catch {
        abandon();
      }
    };
    const writeSafely = (verdict: Verdict) => {
      try {
        write(verdict);
      } catch (err) {
        failed(err);
      }
    };
    let verdict: Verdict | Promise<Verdict>;
    try {
      verdict = admit(req, ctx);
    } catch (err) {
      return failed(err);
    }
    if ('then' in verdict) verdict.then(writeSafely, failed);
    else writeSafely(verdict);
  }

  /** The request as its upstream gets it: the target, the identity headers, the route's own headers. */
  function prepareForUpstream(req: IncomingMessage, ctx: RequestContext): void {
    req.url = ctx.upstreamTarget;
    req.headers = upstreamHeaders(req.headers, ctx.id, ctx.principal!.user, { peerIp: ctx.peerIp, proto, host: req.headers.host, peerTrusted: ctx.peerTrusted }, ctx.upgrade);
    for (const [name, value] of ctx.route!.headers) req.headers[name] = value;
    // The workspace as it was decided in, in the one spelling MLflow reads (the client's was dropped).
    if (ctx.workspace !== undefined && ctx.workspace !== DEFAULT_WORKSPACE) req.headers[WORKSPACE_HEADER] = ctx.workspace;
  }

  /** The server of the route's upstream the exchange goes to (least outstanding requests among those up), or the 503 when none is. */
  function chooseServer(ctx: RequestContext): { forwarder: Forwarder; server: UpstreamServer } | { error: GatewayError } {
    const forwarder = forwarders.get(ctx.route!)!;
    const server = forwarder.pool.choose();
    return server ? { forwarder, server } : { error: noServerUp(forwarder.pool.servers) };
  }

  /** The exchange is over, however it ended: what was held for it is given back, and it is logged once. */
  function finish(ctx: RequestContext, method: string | undefined, status: number, aborted: boolean): void {
    for (const atEnd of ctx.atEnd) atEnd();
    options.metrics?.observe(ctx, method, status);
    logAccess(logger, ctx, method, status, aborted);
    if (options.audit) auditExchange(options.audit, ctx, method, status);
  }

  // ---- HTTP: the listener and its writer. ----

  function handleRequest(req: IncomingMessage, res: ServerResponse): void {
    try {
      receiveRequest(req, res);
    } catch (err) {
      // Before admission (the context, the watch): no verdict to write, only the connection to end.
      logger.error({ err }, 'internal error while receiving a request');
      res.destroy();
    }
  }

  function receiveRequest(req: IncomingMessage, res: ServerResponse): void {
    const ctx = createRequestContext(req, options.proxies, false);
    (req as GatewayRequest).ctx = ctx;
    inFlight++;
    res.setHeader('x-request-id', ctx.id);
    if (options.hsts) res.setHeader('strict-transport-security', options.hsts);
    if (draining) res.setHeader('connection', 'close');
    res.once('close', () => {
      inFlight--;
      const aborted = !res.writableFinished;
      finish(ctx, req.method, aborted && !res.headersSent ? 499 : res.statusCode, aborted);
    });
    options.slowRequests.watch(req, res, ctx);
    decide(ctx, req, (verdict) => answerRequest(req, res, ctx, verdict), () => res.destroy());
  }

  function answerRequest(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, verdict: Verdict): void {
    if (ctx.setCookie !== undefined && !res.headersSent) res.setHeader('set-cookie', ctx.setCookie);
    switch (verdict.kind) {
      case 'refuse':
        return refuseRequest(req, res, ctx, verdict.error);
      case 'redirect':
        ctx.bytesOut += redirect(req, res, verdict.status, verdict.location);
        return;
      case 'control':
        // Hono frames the gateway's own answers with their length: that is what went out.
        res.once('finish', () => {
          if (req.method !== 'HEAD') ctx.bytesOut += Number(res.getHeader('content-length') ?? 0);
        });
        return void control(req, res);
      case 'forward':
        if (res.destroyed) return; // the client left while its body was read
        prepareForUpstream(req, ctx);
        const target = chooseServer(ctx);
        if ('error' in target) return refuseRequest(req, res, ctx, target.error);
        return target.forwarder.web(req, res, ctx, target.server, (error) => refuseRequest(req, res, ctx, error), verdict.how);
      case 'client-left':
        return;
    }
  }

  function refuseRequest(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, error: GatewayError): void {
    ctx.refusal = error;
    let headers = error.status === 401 && error.challenge !== false ? { 'www-authenticate': authenticator.challenge, ...error.headers } : error.headers;
    // With the body still coming, "Connection: close" would make Node close at once with unread
    // bytes: a reset that can destroy this very answer. The slow-request watch drains the rest
    // (bounded) and then closes.
    if (headers?.connection !== undefined && options.slowRequests.bodyPending(req)) {
      headers = { ...headers };
      delete headers.connection;
      options.slowRequests.closeAfterBody(req);
    }
    if (error.status >= 500 && error.code !== 'INTERNAL_ERROR') logger.warn({ reqId: ctx.id, status: error.status }, error.message);
    sendError(req, res, { ...error, headers }, ctx);
  }

  // ---- WebSocket upgrades: the listener and its writer. ----

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      receiveUpgrade(req, socket, head);
    } catch (err) {
      logger.error({ err }, 'internal error while receiving a WebSocket upgrade');
      socket.destroy();
    }
  }

  function receiveUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ctx = createRequestContext(req, options.proxies, true);
    (req as GatewayRequest).ctx = ctx;
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      const { bytesRead, bytesWritten } = socket as Duplex & { bytesRead?: number; bytesWritten?: number };
      ctx.bytesIn = bytesRead ?? 0;
      ctx.bytesOut = bytesWritten ?? 0;
      finish(ctx, req.method, ctx.upgradeStatus ?? 499, ctx.upgradeStatus === undefined);
    });
    decide(ctx, req, (verdict) => answerUpgrade(req, socket, head, ctx, verdict), () => socket.destroy());
  }

  function answerUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext, verdict: Verdict): void {
    switch (verdict.kind) {
      case 'refuse':
        return refuseUpgrade(socket, ctx, verdict.error);
      case 'redirect':
      case 'control':
        // Admission sends neither for an upgrade; should that change, the client is told, not left hanging.
        return refuseUpgrade(socket, ctx, internalError(ctx.id));
      case 'forward': {
        prepareForUpstream(req, ctx);
        const target = chooseServer(ctx);
        if ('error' in target) return refuseUpgrade(socket, ctx, target.error);
        const { stillSignedIn } = verdict;
        tunnels.add(socket, {
          ctx,
          ended: stillSignedIn && (() => {
            const session = stillSignedIn();
            return session.ok ? undefined : session.reason;
          }),
        });
        return target.forwarder.ws(req, socket, head, ctx, target.server, (error) => refuseUpgrade(socket, ctx, error));
      }
      case 'client-left':
        return void socket.destroy();
    }
  }

  function refuseUpgrade(socket: Duplex, ctx: RequestContext, error: GatewayError): void {
    ctx.refusal = error;
    if (error.status >= 500 && error.code !== 'INTERNAL_ERROR') logger.warn({ reqId: ctx.id, status: error.status }, error.message);
    ctx.upgradeStatus = error.status;
    const body = JSON.stringify({ error_code: error.code, message: error.message });
    const challenge = error.status === 401 && error.challenge !== false ? `WWW-Authenticate: ${authenticator.challenge}\r\n` : '';
    const location = typeof error.headers?.location === 'string' ? `Location: ${error.headers.location}\r\n` : '';
    socket.end(`HTTP/1.1 ${error.status} ${STATUS_TEXT[error.status] ?? 'Error'}\r\n${challenge}${location}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${ctx.id}\r\nConnection: close\r\n\r\n${body}`);
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

/**
 * 308: the bare prefix of a stripped route, without a body; 302: the sign-in page, with a link for
 * clients that do not follow. Returns the body bytes written.
 */
function redirect(req: IncomingMessage, res: ServerResponse, status: 302 | 308, location: string): number {
  if (status === 308) {
    res.writeHead(308, { location, 'content-length': 0 }).end();
    return 0;
  }
  const body = `<!doctype html><meta charset="utf-8"><title>Sign in · mlgate</title><p><a href="${location.replace(/&/g, '&amp;')}">Sign in</a> to continue.</p>\n`;
  res.writeHead(302, { location, 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  if (req.method === 'HEAD') {
    res.end();
    return 0;
  }
  res.end(body);
  return Buffer.byteLength(body);
}
