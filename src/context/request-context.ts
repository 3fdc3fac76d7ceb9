import { randomUUID } from 'node:crypto';
import { IncomingMessage, type ClientRequest } from 'node:http';
import type { Principal } from '../auth/principal.ts';
import type { Subject } from '../authz/decide.ts';
import type { GatewayError } from '../http/gateway-error.ts';
import type { AuditEvent } from '../log/audit-log.ts';
import { peerAddress, type TrustedProxies } from './client-ip.ts';
import type { UpstreamRoute } from './upstream-routes.ts';

/** What an HTML error page says about who is signed in (set by the browser sign-in step). */
export interface PageIdentity {
  /** The user signed in with the session cookie, shown with a sign-out link. */
  user?: string;
  signOutPath?: string;
  /** Where an anonymous visitor can sign in. */
  signInPath?: string;
}

/** The forwarder's bookkeeping for the exchange with the upstream (src/proxy/forwarder.ts). */
export interface UpstreamExchange {
  ctx: RequestContext;
  /** The sweep tick of the last byte either way; silence is measured from it. */
  lastActivity: number;
  fail: (error: GatewayError) => void;
  upstreamRequest?: ClientRequest;
  tooLarge: boolean;
  /** The client got its one answer (an error); later errors of the same exchange are echoes. */
  answered: boolean;
  transform?: (body: Buffer) => Promise<Buffer>;
}

/** Everything the gateway learns and decides about one request (or WebSocket upgrade), in one place. */
export interface RequestContext {
  id: string;
  startedAt: bigint;
  /** A WebSocket upgrade rather than a request with an answer. */
  upgrade: boolean;
  /** The direct peer's address, whether it is a trusted proxy, and the client behind it. */
  peerIp: string;
  peerTrusted: boolean;
  clientIp: string;
  /** The request target in origin form (an absolute-form target's path and query), as the client sent it. */
  target: string;
  /** `target` without the query string: the only form that is logged. */
  path: string;
  /** The route the request goes to (set once matched; /-/ paths have none). */
  route?: UpstreamRoute;
  /** The target as the route's upstream gets it (its prefix stripped): what is checked and forwarded. */
  upstreamTarget: string;
  /** `upstreamTarget` without the query string. */
  upstreamPath: string;
  principal?: Principal;
  /** The principal as the policy in force when it was authenticated sees them: route and resource access use this one snapshot. */
  subject?: Subject;
  /**
   * The MLflow workspace the request acts in (its X-MLFLOW-WORKSPACE header as MLflow reads it),
   * set by the authorization step: what it decided in, and what MLflow is told.
   */
  workspace?: string;
  /** Who an HTML error page says is signed in. */
  pageIdentity?: PageIdentity;
  /** A Set-Cookie the answer carries (a renewed or cleared session cookie). */
  setCookie?: string;
  /** Run once the exchange is over, however it ended (budgets given back, caches dropped). */
  atEnd: (() => void)[];
  exchange?: UpstreamExchange;
  upstreamStartedAt?: bigint;
  upstreamMs?: number;
  bytesIn: number;
  bytesOut: number;
  /** Set when the gateway gave up waiting on the upstream, so the error becomes a 504. */
  upstreamTimedOut: boolean;
  /** What the authorization step checked, e.g. "experiment:12" or "model:churn" (access log). */
  resource?: string;
  /** What an upgrade was answered: its refusal's status, or the upstream's (101 once it took it). */
  upgradeStatus?: number;
  /** The authorization step's verdict on a forwarded path (access log). */
  decision?: 'allow' | 'deny';
  /** The refusal the gateway answered with, if it refused (the audit log's denied requests). */
  refusal?: GatewayError;
  /** Security events of this exchange (a sign-in, a token made...), written to the audit log by `finish`. */
  audit?: AuditEvent[];
  /** The MLflow route table's family of the rule the authorization step matched, e.g. "runs" (metrics). */
  family?: string;
  /** The authorization step's look-ups of this request: none spent means its checks were answered from the caches (metrics). */
  lookups?: { readonly spent: number };
  /** Why authentication refused the request, and which method was tried (metrics; bounded words). */
  authFailure?: { method: string; reason: string };
}

/**
 * The server's request objects (http.createServer({ IncomingMessage })): each carries its context,
 * so the gateway's own routes and the forwarder's events find it without a side table.
 */
export class GatewayRequest extends IncomingMessage {
  ctx!: RequestContext;
}

/** The context of a request the gateway's server received. */
export function contextOf(req: IncomingMessage): RequestContext | undefined {
  return (req as Partial<GatewayRequest>).ctx;
}

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

/** Accepts a client's X-Request-Id when it is safe to log and forward, otherwise makes one. */
function requestIdFor(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

export function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

export function createRequestContext(req: IncomingMessage, proxies: TrustedProxies, upgrade: boolean): RequestContext {
  const target = originForm(req.url ?? '/');
  const path = pathOf(target);
  const peerIp = peerAddress(req);
  const peerTrusted = proxies.peerIsTrusted(req);
  return {
    id: requestIdFor(req),
    startedAt: process.hrtime.bigint(),
    upgrade,
    peerIp,
    peerTrusted,
    clientIp: peerTrusted ? proxies.clientIp(req) : peerIp,
    target,
    path,
    upstreamTarget: target,
    upstreamPath: path,
    atEnd: [],
    bytesIn: 0,
    bytesOut: 0,
    upstreamTimedOut: false,
  };
}

export function millisecondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

const ABSOLUTE_FORM = /^https?:\/\/[^/?#\\]*(?=[/?]|$)/i;

/**
 * HTTP/1.1 servers must accept an absolute-form target (`GET http://host/path`); the upstream is
 * then sent only its path, as a proxy would send it, so what is routed, checked and forwarded is one string.
 */
function originForm(url: string): string {
  if (url.startsWith('/')) return url;
  const authority = ABSOLUTE_FORM.exec(url);
  if (!authority) return url;
  const rest = url.slice(authority[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** Notes a security event of this exchange for the audit log (written, if it is on, when the exchange ends). */
export function noteAudit(ctx: RequestContext | undefined, event: AuditEvent): void {
  if (ctx) (ctx.audit ??= []).push(event);
}
