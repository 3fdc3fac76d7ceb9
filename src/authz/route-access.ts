// Who may use a route at all (routes[].allow), before any MLflow-level check.
import type { Principal } from '../auth/principal.ts';
import type { UpstreamRoute } from '../context/upstream-routes.ts';
import type { GatewayError } from '../http/errors.ts';
import { groupsOf, isAdmin } from './decide.ts';
import type { Policy } from './policy.ts';

/** Admins always; then "*", the user's name, or one of their groups as "@group". */
export function mayUseRoute(principal: Principal, route: Pick<UpstreamRoute, 'allow'>, policy: Policy): boolean {
  if (isAdmin(principal, policy)) return true;
  const { allow } = route;
  if (!allow) return false;
  if (allow.includes('*') || allow.includes(principal.user)) return true;
  return groupsOf(principal, policy).some((group) => allow.includes(`@${group}`));
}

export function routeRefusal(principal: Principal, route: Pick<UpstreamRoute, 'path' | 'allow'>): GatewayError {
  const who = route.allow ? `admins and ${route.allow.join(', ')}` : 'admins only';
  return { status: 403, code: 'PERMISSION_DENIED', message: `user ${principal.user} may not use ${route.path} (routes: allow: ${who})` };
}
