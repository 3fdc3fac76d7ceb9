// Which upstream a request goes to: the routes of the configuration, matched by path prefix,
// longest first, the way nginx picks a `location` prefix.
import type { Config, RouteConfig } from '../config/schema.ts';
import { compileAllowCidrs, type AllowCidrs } from './allow-cidrs.ts';

export interface UpstreamRoute {
  /** As configured, without a trailing slash: "/mlflow", or "/" for the catch-all. */
  path: string;
  /** Its servers (one, or a list balanced by src/proxy/upstream-pool.ts); MLflow routes: the top-level list. */
  upstreams: readonly URL[];
  /** What proxy.healthCheck asks its servers for (routes[].healthCheckPath); false: never checked; undefined: proxy.healthCheck.path. */
  healthCheckPath?: string | false;
  stripPrefix: boolean;
  /** MLflow-aware: MLflow's JSON errors, per-user authorization of its API. */
  mlflow: boolean;
  /** Users and @groups who may use the route; "*" everyone signed in; undefined: admins only. */
  allow: readonly string[] | undefined;
  /** Client addresses that may use the route (routes[].allowCidrs), within access.allowCidrs; undefined: no narrowing. */
  allowCidrs?: AllowCidrs;
  /** Added to each request forwarded (names lower-cased), values already read from the environment. */
  headers: readonly (readonly [string, string])[];
}

/** The routes in matching order (longest prefix first); without configured routes, all of MLflow at "/". */
export function compileRoutes(config: Pick<Config, 'upstream' | 'routes'>): UpstreamRoute[] {
  const configured: RouteConfig[] = config.routes.length ? config.routes : [{ path: '/', stripPrefix: false, mlflow: true, upstreamHeaders: {} }];
  return configured
    .map((route) => ({
      path: route.path,
      upstreams: (route.upstream ?? config.upstream).map((server) => new URL(server)),
      healthCheckPath: route.healthCheckPath,
      stripPrefix: route.stripPrefix && route.path !== '/',
      mlflow: route.mlflow,
      allow: route.allow ?? (route.mlflow ? ['*'] : undefined),
      allowCidrs: compileAllowCidrs(route.allowCidrs),
      headers: Object.entries(route.upstreamHeaders).map(([name, value]) => [name.toLowerCase(), value] as const),
    }))
    .sort((a, b) => b.path.length - a.path.length);
}

type UpstreamRouteMatch =
  /** `url` is the request target as the route's upstream gets it (the prefix stripped if asked). */
  | { kind: 'route'; route: UpstreamRoute; url: string }
  /** The bare prefix of a stripped route: its pages' relative links need the trailing slash. */
  | { kind: 'redirect'; route: UpstreamRoute; location: string }
  | { kind: 'refused'; reason: string }
  | { kind: 'none' };

/**
 * Matches an origin-form target. The prefix is compared on the path as the client sent it and, to
 * refuse tricks that reach one route's upstream through another's prefix (an escaped letter, "//",
 * a dot segment the upstream would resolve), on its decoded, slash-collapsed form too: when they
 * disagree, or the path has dot segments, the request is refused.
 */
export function matchUpstreamRoute(routes: readonly UpstreamRoute[], target: string): UpstreamRouteMatch {
  const queryAt = target.indexOf('?');
  const path = queryAt === -1 ? target : target.slice(0, queryAt);
  const route = longestPrefix(routes, path);
  if (path.includes('%') || path.includes('//') || path.includes('/.')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(path).replace(/\/{2,}/g, '/');
    } catch {
      return { kind: 'refused', reason: 'the path has a malformed percent-escape' };
    }
    if (/\/\.\.?(?:\/|$)/.test(decoded)) return { kind: 'refused', reason: 'the path has a "." or ".." segment' };
    if (longestPrefix(routes, decoded) !== route) return { kind: 'refused', reason: 'the path reads differently once decoded (an escaped character or "//" in its route prefix)' };
  }
  if (!route) return { kind: 'none' };
  if (!route.stripPrefix) return { kind: 'route', route, url: target };
  const rest = target.slice(route.path.length);
  if (rest === '' || rest[0] === '?') {
    return { kind: 'redirect', route, location: `${route.path}/${rest}` };
  }
  return { kind: 'route', route, url: rest };
}

function longestPrefix(routes: readonly UpstreamRoute[], path: string): UpstreamRoute | undefined {
  for (const route of routes) {
    if (route.path === '/') return route;
    if (path.startsWith(route.path) && (path.length === route.path.length || path[route.path.length] === '/')) return route;
  }
  return undefined;
}

/**
 * A Location header from a stripped route's upstream, put back under the route's prefix: a path
 * ("/login") or a URL on the upstream itself ("http://127.0.0.1:5000/login") becomes
 * "/mlflow/login"; relative references and other sites are left alone (nginx's proxy_redirect default).
 */
export function locationUnderPrefix(location: string, route: Pick<UpstreamRoute, 'path' | 'upstreams'>): string {
  if (location.startsWith('/') && !location.startsWith('//')) return route.path + location;
  // Any of the route's servers: the one that answered is not known here, and all serve the same pages.
  for (const { origin } of route.upstreams) {
    if (!location.toLowerCase().startsWith(origin.toLowerCase())) continue;
    const rest = location.slice(origin.length);
    if (rest === '' || rest[0] === '/' || rest[0] === '?' || rest[0] === '#') return route.path + (rest[0] === '/' ? rest : `/${rest}`);
  }
  return location;
}
