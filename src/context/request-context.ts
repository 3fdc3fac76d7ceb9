import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Principal } from '../auth/principal.ts';
import type { UpstreamRoute } from './upstream-routes.ts';

/** What the gateway learns about one request as it moves through the stages. */
export interface RequestContext {
  id: string;
  startedAt: bigint;
  clientIp: string;
  /** Path without the query string, as the client sent it: the only form that is logged. */
  path: string;
  /** The route the request goes to (set once matched; /-/ paths have none). */
  route?: UpstreamRoute;
  /** The path as the route's upstream gets it (its prefix stripped): what MLflow checks look at. */
  apiPath: string;
  principal?: Principal;
  upstreamStartedAt?: bigint;
  upstreamMs?: number;
  bytesIn: number;
  bytesOut: number;
  /** Set when the gateway gave up waiting on the upstream, so the error becomes a 504. */
  upstreamTimedOut: boolean;
  /** What the authorization step checked, e.g. "experiment:12" or "model:churn" (access log). */
  resource?: string;
  /** The authorization step's verdict on a forwarded path (access log). */
  decision?: 'allow' | 'deny';
}

const SANE_REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

/** Accepts a client's X-Request-Id when it is safe to log and forward, otherwise makes one. */
export function requestIdFor(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

export function pathOf(url: string | undefined): string {
  if (!url) return '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

export function createRequestContext(req: IncomingMessage, clientIp: string): RequestContext {
  const path = pathOf(req.url);
  return {
    id: requestIdFor(req),
    startedAt: process.hrtime.bigint(),
    clientIp,
    path,
    apiPath: path,
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
 * then sent only its path, as the proxy would send it. The request is rewritten to that path here,
 * so what is routed, checked and forwarded is one string.
 */
export function toOriginForm(req: IncomingMessage): string {
  const url = req.url ?? '/';
  if (url.startsWith('/')) return url;
  const authority = ABSOLUTE_FORM.exec(url);
  if (!authority) return url;
  const rest = url.slice(authority[0].length);
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  return req.url;
}
