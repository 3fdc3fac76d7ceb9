import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Authenticator } from '../auth/authenticate.ts';
import type { Authorization, Authorizer } from '../authz/authorize-request.ts';
import type { SessionStep } from '../auth/session-step.ts';
import { peerAddress, type TrustedProxies } from '../context/client-ip.ts';
import { createRequestContext, type RequestContext } from '../context/request-context.ts';
import { PUBLIC_CONTROL_PATHS } from '../control/app.ts';
import { logAccess } from '../http/access-log.ts';
import { sendError, type GatewayError } from '../http/errors.ts';
import type { Logger } from '../log/logger.ts';
import type { ForwardOptions, Forwarder } from '../proxy/forwarder.ts';
import { upstreamHeaderBuilder, type IdentityHeaders } from '../proxy/request-headers.ts';

export interface PipelineOptions {
  logger: Logger;
  proxies: TrustedProxies;
  authenticator: Authenticator;
  forwarder: Forwarder;
  control: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  identity: IdentityHeaders;
  tls: boolean;
  hsts: string | false;
  contexts: WeakMap<IncomingMessage, RequestContext>;
  /** Browser sign-in (session.enabled): the session cookie, and the redirect of UI pages to /-/login. */
  sessionStep?: SessionStep;
  /** Per-user authorization (src/authz): who may do what on which experiment or model. */
  authorizer: Authorizer;
}

/**
 * One request's path through the gateway, top to bottom: context, authentication, then either the
 * gateway's own /-/ routes or authorization and the upstream; the access log line is written when
 * the response ends.
 */
export function createRequestPipeline(options: PipelineOptions) {
  const { logger, authenticator, forwarder, control, contexts, authorizer } = options;
  const upstreamHeaders = upstreamHeaderBuilder(options.identity);
  const proto = options.tls ? 'https' : 'http';
  let inFlight = 0;
  let draining = false;

  function fail(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, error: GatewayError): void {
    const headers = error.status === 401 ? { 'www-authenticate': authenticator.challenge, ...error.headers } : error.headers;
    if (error.status >= 500) logger.warn({ reqId: ctx.id, status: error.status }, error.message);
    sendError(req, res, { ...error, headers }, ctx.id);
  }

  function forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, how?: ForwardOptions): void {
    req.headers = upstreamHeaders(req.headers, ctx.id, ctx.principal!.user, {
      peerIp: peerAddress(req),
      proto,
      host: req.headers.host,
      peerTrusted: options.proxies.peerIsTrusted(req),
    }, false);
    forwarder.web(req, res, ctx, (error) => fail(req, res, ctx, error), how);
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

    if (PUBLIC_CONTROL_PATHS.has(ctx.path)) {
      void control(req, res);
      return;
    }
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
    if (!outcome.ok) {
      const code = outcome.status === 400 ? 'INVALID_PARAMETER_VALUE' : outcome.status === 503 ? 'TEMPORARILY_UNAVAILABLE' : 'UNAUTHENTICATED';
      fail(req, res, ctx, { status: outcome.status, code, message: outcome.message, headers: outcome.headers ?? (outcome.status === 503 ? { 'retry-after': '1' } : undefined) });
      return;
    }
    ctx.principal = outcome.principal;
    if (ctx.path.startsWith('/-/')) void control(req, res);
    else authorizeAndForward(req, res, ctx);
  }

  /** WebSocket upgrades: the same authentication, then a tunnel to the upstream. */
  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const ctx = createRequestContext(req, options.proxies.clientIp(req));
    socket.on('error', () => socket.destroy());
    const refuse = (error: GatewayError) => {
      const body = JSON.stringify({ error_code: error.code, message: error.message });
      const challenge = error.status === 401 ? `WWW-Authenticate: ${authenticator.challenge}\r\n` : '';
      socket.end(`HTTP/1.1 ${error.status} ${error.status === 401 ? 'Unauthorized' : 'Error'}\r\n${challenge}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${ctx.id}\r\nConnection: close\r\n\r\n${body}`);
      logger.info({ reqId: ctx.id, ip: ctx.clientIp, method: req.method, path: ctx.path, status: error.status, upgrade: true }, 'request');
    };
    Promise.resolve(authenticator.authenticate(req)).then((outcome) => {
      if (!outcome.ok) {
        refuse({ status: outcome.status, code: 'UNAUTHENTICATED', message: outcome.message });
        return;
      }
      ctx.principal = outcome.principal;
      const refused = authorizer.authorizeUpgrade(req, ctx);
      if (refused) return refuse(refused);
      options.sessionStep?.removeSessionCookie(req); // upgrades take the Authorization header only; the cookie stays here
      req.headers = upstreamHeaders(req.headers, ctx.id, outcome.principal.user, {
        peerIp: peerAddress(req), proto, host: req.headers.host, peerTrusted: options.proxies.peerIsTrusted(req),
      }, true);
      logger.info({ reqId: ctx.id, ip: ctx.clientIp, method: req.method, path: ctx.path, user: outcome.principal.user, auth: outcome.principal.method, upgrade: true }, 'websocket');
      forwarder.ws(req, socket, head, ctx, refuse);
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
