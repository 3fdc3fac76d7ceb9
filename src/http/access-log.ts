import type { IncomingMessage, ServerResponse } from 'node:http';
import { millisecondsSince, type RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';

/** One line per request, written when the response finishes or the connection is cut. */
export function logAccess(logger: Logger, ctx: RequestContext, req: IncomingMessage, res: ServerResponse): void {
  const aborted = !res.writableFinished;
  logger.info({
    reqId: ctx.id,
    ip: ctx.clientIp,
    method: req.method,
    path: ctx.path,
    status: aborted && !res.headersSent ? 499 : res.statusCode,
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
    ms: Math.round(millisecondsSince(ctx.startedAt) * 100) / 100,
    upstreamMs: ctx.upstreamMs === undefined ? undefined : Math.round(ctx.upstreamMs * 100) / 100,
    user: ctx.principal?.user,
    auth: ctx.principal?.method,
    resource: ctx.resource,
    decision: ctx.decision,
    aborted: aborted || undefined,
  }, 'request');
}
