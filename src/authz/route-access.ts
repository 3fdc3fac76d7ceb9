// Who may use a route at all (routes[].allow), before any MLflow-level check.
import type { UpstreamRoute } from '../context/upstream-routes.ts';
import type { GatewayError } from '../http/gateway-error.ts';
import type { Subject } from './decide.ts';

/** Admins always; then "*", the user's name, or one of their groups as "@group". */
export function mayUseRoute(subject: Subject, route: Pick<UpstreamRoute, 'allow'>): boolean {
  if (subject.admin) return true;
  const { allow } = route;
  if (!allow) return false;
  if (allow.includes('*') || allow.includes(subject.principal.user)) return true;
  return subject.groups.some((group) => allow.includes(`@${group}`));
}

export function routeRefusal(subject: Subject, route: Pick<UpstreamRoute, 'path' | 'allow'>): GatewayError {
  const who = route.allow ? `admins and ${route.allow.join(', ')}` : 'admins only';
  return { status: 403, code: 'PERMISSION_DENIED', message: `user ${subject.principal.user} may not use ${route.path} (routes: allow: ${who})` };
}
