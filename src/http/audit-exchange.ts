import type { RequestContext } from '../context/request-context.ts';
import type { AuditLog } from '../log/audit-log.ts';

/**
 * The audit log's part of the request path, called once per exchange from `finish`: the events the
 * exchange noted (a sign-in, a token made, a grant changed...), then what the gateway decided about
 * the request itself: credentials refused (401), a request denied (401 without credentials, 403),
 * an admins-only route used. Each line names who (the principal, if any), from where (the client
 * IP) and the request id.
 */
export function auditExchange(audit: Pick<AuditLog, 'record'>, ctx: RequestContext, method: string | undefined, status: number): void {
  const where = { user: ctx.principal?.user ?? null, ip: ctx.clientIp, reqId: ctx.id };
  if (ctx.audit) for (const event of ctx.audit) audit.record(event, where);
  const refused = ctx.refusal ?? (ctx.decision === 'deny' && status === 403 ? { status, code: 'PERMISSION_DENIED', message: '' } : undefined);
  if (refused && (refused.status === 401 || refused.status === 403)) {
    const failure = ctx.authFailure;
    if (refused.status === 401 && failure && failure.reason !== 'missing') {
      audit.record({ event: 'sign-in-failed', method: failure.method, reason: failure.reason }, where);
      return;
    }
    audit.record({ event: 'request-denied', status: refused.status, method, path: ctx.path, resource: ctx.resource, reason: denialReason(ctx, refused) }, where);
    return;
  }
  // The gateway's own routes refuse in their own answers (a grant change below MANAGE, another site's form).
  if (status === 403 && ctx.path.startsWith('/-/')) {
    audit.record({ event: 'request-denied', status, method, path: ctx.path, reason: 'refused-by-gateway-route' }, where);
    return;
  }
  // Admins-only routes (routes[] without `allow`) let only admins through: each use is an admin action.
  if (status < 400 && ctx.subject?.admin && ctx.route && !ctx.route.mlflow && !ctx.route.allow) {
    audit.record({ event: 'admin-action', method, path: ctx.path, status }, where);
  }
}

/** A few words, the same for every request refused for the same reason (flood summaries count by them). */
function denialReason(ctx: RequestContext, refused: { status: number; code: string; message: string }): string {
  if (refused.status === 401) return 'no-credentials';
  if (ctx.decision === 'deny') return 'no-permission';
  if (refused.message.startsWith('cross-site')) return 'cross-site';
  if (refused.message.startsWith('requests from this address')) return 'address-not-allowed';
  if (ctx.route && refused.message.includes('may not use')) return 'route-not-allowed';
  return refused.code.toLowerCase();
}
