import { millisecondsSince, type RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';

const PROBES: ReadonlySet<string> = new Set(['/-/healthz', '/-/readyz']);

/**
 * One line per request, written when its answer is finished or its connection cut; one per
 * WebSocket upgrade, written when the tunnel (or the refused upgrade's connection) closes.
 */
export function logAccess(logger: Logger, ctx: RequestContext, method: string | undefined, status: number, aborted: boolean): void {
  // A load balancer's probes every few seconds would bury the requests people make.
  const level = PROBES.has(ctx.path) && status < 500 ? 'debug' : 'info';
  logger[level]({
    reqId: ctx.id,
    ip: ctx.clientIp,
    method,
    path: ctx.path,
    status,
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
    ms: Math.round(millisecondsSince(ctx.startedAt) * 100) / 100,
    upstreamMs: ctx.upstreamMs === undefined ? undefined : Math.round(ctx.upstreamMs * 100) / 100,
    user: ctx.principal?.user,
    auth: ctx.principal?.method,
    token: ctx.principal?.token,
    resource: ctx.resource,
    decision: ctx.decision,
    upgrade: ctx.upgrade || undefined,
    aborted: aborted || undefined,
  }, ctx.upgrade && status === 101 ? 'websocket' : 'request');
}
