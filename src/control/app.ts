import type { IncomingMessage, ServerResponse } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono } from 'hono';
import { SIGN_IN_PATH, SIGN_OUT_PATH } from '../auth/session-step.ts';
import { contextOf } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';
import { registerSignInRoutes, type SignInDependencies } from './login.ts';
import { OIDC_CALLBACK_PATH, OIDC_START_PATH, registerOidcRoutes, type OidcDependencies } from './oidc-routes.ts';
import { messagePage, PAGE_HEADERS } from './pages.ts';
import { registerPermissionRoutes, type PermissionsDependencies } from './permissions.ts';
import { registerTokenRoutes, type TokensDependencies } from './tokens.ts';

const METRICS_PATH = '/-/metrics';

interface ControlDependencies {
  /**
   * Whether the upstreams answer at all (any HTTP status counts): `detail` about MLflow's, `routes`
   * (with routes configured) about each route's, `upstreams` how many distinct ones and how many answered.
   */
  upstreamReady(): Promise<{
    ready: boolean; detail: string; routes?: Record<string, string>; upstreams?: { total: number; answering: number };
    /** A server of a list is down while every upstream still has one up: "degraded", still 200. */
    degraded?: boolean;
    /** Each server's state, for admins (only when an upstream is a list of servers). */
    servers?: readonly { url: string; state: 'up' | 'down'; checked: boolean; lastError?: string; outstanding: number }[];
  }>;
  /**
   * Whether the request's credentials (its Authorization header) are an admin's: only admins see
   * /-/readyz's details (the upstreams' addresses and errors). Absent: nobody does.
   */
  isAdminRequest?(req: IncomingMessage): Promise<boolean>;
  /**
   * What the MLflow behind says it is (null: not known), for admins' /-/readyz only: its version,
   * whether it serves workspaces, the newest release mlgate's route lists cover, and the warning
   * when it is newer. Asked only for an admin, so anonymous probes cost MLflow nothing more.
   */
  mlflow?(): Promise<{ version: string | null; workspaces: boolean | null; newestKnown: string; warning?: string; problem?: string }>;
  /**
   * state.redis's health (absent: not configured). Unreachable makes /-/readyz "degraded", still 200:
   * every gateway shares the one Redis, so 503 would take them all out of the load balancer at once,
   * while each still serves Basic and tokens (only cookie sessions are refused).
   */
  sharedState?(): { reachable: boolean; problem?: string };
  version: string;
  logger: Logger;
  /** Browser sign-in and sign-out (session.enabled); without it /-/login and /-/logout are 404s. */
  signIn?: SignInDependencies;
  /** Signing in with identity providers (oidc.providers); without it /-/oidc/ paths are 404s. */
  oidc?: OidcDependencies;
  /** Grant management by MANAGE holders (/-/api/permissions, /-/permissions); without it those paths are 404s. */
  permissions?: PermissionsDependencies;
  /** Users' own API tokens (/-/api/tokens, /-/tokens; tokens.selfService); without it those paths are 404s. */
  tokens?: TokensDependencies;
  /** Prometheus metrics (metrics.enabled; src/server/metrics.ts checks who may read them); without it /-/metrics is a 404. */
  metrics?(req: IncomingMessage): Promise<{ status: 200 | 401 | 403; contentType: string; body: string }>;
}

/**
 * Paths under /-/ that answer without credentials (sign-in and sign-out check the session cookie
 * themselves; /-/metrics its token, address or admin credentials).
 */
export const PUBLIC_CONTROL_PATHS: ReadonlySet<string> = new Set(['/-/healthz', '/-/readyz', METRICS_PATH, SIGN_IN_PATH, SIGN_OUT_PATH, OIDC_START_PATH, OIDC_CALLBACK_PATH]);

/** The gateway's own routes under the reserved /-/ prefix. */
export function createControlApp(deps: ControlDependencies): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const app = new Hono<{ Bindings: HttpBindings }>();

  app.get('/-/healthz', (c) => c.json({ status: 'ok', version: deps.version }));

  // Anyone gets the state and counts; the upstreams' addresses and errors only an admin's credentials.
  app.get('/-/readyz', async (c) => {
    const [{ ready, detail, routes, upstreams, degraded, servers }, admin] = await Promise.all([
      deps.upstreamReady(),
      c.req.header('authorization') !== undefined && deps.isAdminRequest ? deps.isAdminRequest(c.env.incoming) : false,
    ]);
    const counts = { upstreams: upstreams?.total ?? 1, answering: upstreams?.answering ?? (ready ? 1 : 0) };
    const shared = deps.sharedState?.();
    const status = !ready ? 'unavailable' : (shared && !shared.reachable) || degraded ? 'degraded' : 'ready';
    if (!admin) return c.json({ status, ...counts }, ready ? 200 : 503);
    const stateStore = shared && { redis: shared.reachable ? 'reachable' : 'unreachable', problem: shared.problem };
    return c.json({ status, ...counts, upstream: detail, routes, servers, mlflow: await deps.mlflow?.(), stateStore }, ready ? 200 : 503);
  });

  app.get('/-/whoami', (c) => {
    const principal = contextOf(c.env.incoming)?.principal;
    if (!principal) return c.json({ error_code: 'UNAUTHENTICATED', message: 'not signed in' }, 401);
    // A person who opens it in a browser gets a page; scripts and curl (no text/html) get JSON.
    if (c.req.header('accept')?.includes('text/html')) {
      const groups = principal.groups.length ? ` (groups: ${principal.groups.join(', ')})` : '';
      return c.body(messagePage('Who am I', `Signed in as ${principal.user}${groups}, by ${principal.method}.`, { href: '/', text: 'Back to MLflow' }), 200, PAGE_HEADERS);
    }
    return c.json({ user: principal.user, groups: principal.groups, method: principal.method });
  });

  const { metrics } = deps;
  if (metrics) {
    app.get(METRICS_PATH, async (c) => {
      const answer = await metrics(c.env.incoming);
      return c.body(answer.body, answer.status, { 'content-type': answer.contentType, 'cache-control': 'no-store' });
    });
  }

  if (deps.signIn) registerSignInRoutes(app, deps.signIn);
  if (deps.oidc) registerOidcRoutes(app, deps.oidc);
  if (deps.permissions) registerPermissionRoutes(app, deps.permissions);
  if (deps.tokens) registerTokenRoutes(app, deps.tokens);

  // A bug in a page must show in the log with its request id, and answer in the gateway's JSON shape.
  app.onError((err, c) => {
    const reqId = contextOf(c.env.incoming)?.id;
    // A client that left (or was dropped for stalling) while its form was read is no bug.
    if (c.env.incoming.destroyed || c.env.incoming.aborted) {
      deps.logger.debug({ reqId, err: (err as Error).message }, 'client left while a gateway route read its request');
      return c.body(null, 499 as never);
    }
    deps.logger.error({ reqId, err }, 'internal error in a gateway route');
    return c.json({ error_code: 'INTERNAL_ERROR', message: `the gateway failed to handle this request (request id ${reqId ?? 'unknown'})` }, 500);
  });
  app.notFound((c) => c.json({ error_code: 'ENDPOINT_NOT_FOUND', message: `no gateway route ${c.req.method} ${new URL(c.req.url).pathname}` }, 404));

  return getRequestListener(app.fetch, { overrideGlobalObjects: false });
}
