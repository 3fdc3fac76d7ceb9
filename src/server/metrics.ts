// Prometheus metrics (/-/metrics, docs/operations.md "Metrics"): one prom-client Registry per
// gateway (never the global default, so several gateways in one process keep their own numbers).
// Requests are counted in one place, the pipeline's finish step, from what the request's context
// already holds; the gauges (connections, tunnels, lockouts, look-ups, upstreams) are read when
// Prometheus scrapes. Every label value comes from a short fixed list or from the configuration:
// route families, not paths; never user names.
//
// With `workers` above 1 a scrape reports the whole gateway: the worker that gets it asks the
// primary, which gathers every worker's registry (prom-client's AggregatorRegistry, over the cluster's
// IPC) and adds them up. Counters, histograms and gauges of things that add up (open connections,
// tunnels, outstanding upstream requests) are summed; mlgate_build_info is the first worker's;
// mlgate_upstream_up and mlgate_redis_up are the lowest any worker reports (0 when any worker has the
// server out of rotation or cannot reach Redis).
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import type { Authentication } from '../auth/session-step.ts';
import { trustedProxies } from '../context/client-ip.ts';
import { millisecondsSince, type RequestContext } from '../context/request-context.ts';
import type { UpstreamServer } from '../proxy/upstream-pool.ts';
import { primaryChannel } from '../state/worker-state.ts';

interface MetricsConfig {
  enabled: boolean;
  /** A bearer token that may scrape (Prometheus's `authorization` setting). */
  token?: string;
  /** Peers (never X-Forwarded-For) that may scrape without credentials. */
  allowCidrs: readonly string[];
  /** Node's process_* and nodejs_* metrics as well. */
  processMetrics: boolean;
}

/** What the gauges read at scrape time. */
interface MetricsSources {
  version: string;
  /** Every configured upstream server, each once (MLflow's and the routes'). */
  servers: readonly UpstreamServer[];
  openConnections(): number;
  openTunnels(): number;
  /** Lockouts started since start-up, by scope (absent: lockout.enabled is false). */
  lockouts?(): { ip: number; user: number };
  /** Upstream look-ups the authorization step made (cache misses that went to MLflow). */
  authzLookups(): number;
  /** The shared state store (absent: no state.redis). */
  redis?(): RedisFacts;
  probe(url: URL): Promise<{ ready: boolean }>;
}

/** What the Redis of state.redis has done since start-up (counts), and whether it answers now. */
interface RedisFacts {
  up: boolean;
  failures: { command: number; connection: number };
  /** How this gateway's permission caches were dropped for grant changes: a message named the resource, an epoch moved unheard of, Redis came back. */
  grantInvalidations: { message: number; epoch: number; reconnection: number };
  /** Grant changes made here that could not be announced to the other gateways. */
  grantAnnounceFailures: number;
}

/** Who asks for /-/metrics (gateway.ts): an admin, someone else signed in, or credentials that failed. */
export type MetricsCaller = 'admin' | 'user' | 'refused';

export interface GatewayMetrics {
  /** Counts one finished exchange (the pipeline's finish step). */
  observe(ctx: RequestContext, method: string | undefined, status: number): void;
  /** 200 with the exposition, 401 or 403 (docs/operations.md "Metrics"). */
  scrape(req: IncomingMessage, callerOf: (req: IncomingMessage) => Promise<MetricsCaller>): Promise<{ status: 200 | 401 | 403; contentType: string; body: string }>;
}

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const API_PATH = /^\/(?:api|ajax-api)\//;
/** How long an upstream probe's answer serves scrapes. */
const PROBE_TTL_MS = 5_000;

/** The route family a request is counted under: bounded by the route table and the configuration. */
function familyOf(ctx: RequestContext): string {
  if (ctx.family !== undefined) return ctx.family;
  if (ctx.path.startsWith('/-/')) return 'control';
  const { route } = ctx;
  if (!route) return 'other';
  if (!route.mlflow) return `route:${route.path}`;
  // An API path no rule was matched to: refused before authorization, or a route mlgate does not know.
  return API_PATH.test(ctx.upstreamPath) ? 'api' : 'ui';
}

/**
 * Why authentication refused a request, in a few fixed words, and the method that was tried (for
 * mlgate_authentications_total). Only called for refusals.
 */
export function authFailureOf(req: IncomingMessage, authentication: Exclude<Authentication, { ok: true }>): { method: string; reason: string } {
  const authorization = req.headers.authorization;
  const scheme = authorization === undefined ? undefined : /^\s*(\S+)/.exec(authorization)?.[1]?.toLowerCase();
  const method = scheme === 'basic' || scheme === 'bearer' ? scheme : scheme !== undefined ? 'other' : req.headers.cookie !== undefined ? 'session' : 'none';
  if ('signIn' in authentication) return { method, reason: 'sign_in_redirect' };
  const { status, headers } = authentication.error;
  if (status === 400) return { method, reason: 'malformed' };
  if (status === 503) return { method, reason: 'unavailable' };
  if (status === 401 && headers?.['retry-after'] !== undefined) return { method, reason: 'locked' };
  if (status === 401) return { method, reason: method === 'none' ? 'missing' : 'invalid' };
  return { method, reason: 'refused' };
}

/**
 * prom-client, loaded by the first createMetrics: it is ~3 MB of resident memory that a gateway
 * without metrics.enabled never uses. Synchronous (it is CommonJS), so it is loaded at start-up.
 */
function promClient(): typeof import('prom-client') {
  return createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
}

export function createMetrics(config: MetricsConfig, sources: MetricsSources): GatewayMetrics {
  const { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry } = promClient();
  // A worker's registry answers the primary's requests for its numbers (an AggregatorRegistry is a
  // Registry that does, once made in a worker).
  const workers = primaryChannel();
  const registry: Registry = workers ? new AggregatorRegistry<Registry['contentType']>() : new Registry();
  if (workers) AggregatorRegistry.setRegistries([registry]);
  if (config.processMetrics) collectDefaultMetrics({ register: registry });

  new Gauge({ name: 'mlgate_build_info', help: 'The mlgate version (always 1).', labelNames: ['version'], registers: [registry], aggregator: 'first' }).set({ version: sources.version }, 1);

  // The hot path adds to plain numbers (one Map look-up per exchange); prom-client reads them on
  // scrape. Its own label children hash their labels on every inc() and observe(), microseconds
  // per exchange.
  const requests = new Tallies('mlgate_requests_total', 'Requests and WebSocket upgrades answered, by route family, method and status.', ['family', 'method', 'status'], registry);
  const durations = new Durations('mlgate_request_duration_seconds', 'Time from the request to the end of its answer (WebSocket tunnels not included), by route family.', registry);
  const upstreamDurations = new Durations('mlgate_upstream_duration_seconds', 'Time the upstream took to start answering, by route family.', registry);
  const authentications = new Tallies('mlgate_authentications_total', 'Authentication outcomes on the request path, by method and result (ok, missing, invalid, locked, malformed, unavailable, sign_in_redirect, refused).', ['method', 'result'], registry);
  const decisions = new Tallies('mlgate_authz_decisions_total', 'Authorization decisions on MLflow routes, by route family and decision (allow, deny).', ['family', 'decision'], registry);
  const cache = new Tallies('mlgate_authz_cache_total', 'Checked requests of non-admins whose resources were all known from the caches (hit) or needed MLflow (miss).', ['result'], registry);

  new Counter({
    name: 'mlgate_authz_lookups_total', help: 'Look-ups the authorization step sent to MLflow (cache misses).', registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.authzLookups());
    },
  });
  const lockouts = sources.lockouts;
  if (lockouts) {
    new Counter({
      name: 'mlgate_lockouts_total', help: 'Sign-in lockouts started, by scope (ip, user).', labelNames: ['scope'], registers: [registry],
      collect() {
        const started = lockouts();
        this.reset();
        this.inc({ scope: 'ip' }, started.ip);
        this.inc({ scope: 'user' }, started.user);
      },
    });
  }
  const redis = sources.redis;
  if (redis) {
    new Gauge({ name: 'mlgate_redis_up', help: 'Whether the shared state store (state.redis) answered the last command (1) or not (0).', registers: [registry], aggregator: 'min', collect() { this.set(redis().up ? 1 : 0); } });
    new Counter({
      name: 'mlgate_redis_failures_total', help: 'Shared state store (Redis) failures: commands that failed or timed out (command), connection errors and losses (connection).', labelNames: ['kind'], registers: [registry],
      collect() {
        const { failures } = redis();
        this.reset();
        this.inc({ kind: 'command' }, failures.command);
        this.inc({ kind: 'connection' }, failures.connection);
      },
    });
    new Counter({
      name: 'mlgate_grant_invalidations_total', help: 'Permission cache drops for grant changes made elsewhere: one resource named by a message (message), everything when the grants epoch moved unheard of (epoch) or Redis came back (reconnection).', labelNames: ['cause'], registers: [registry],
      collect() {
        const { grantInvalidations } = redis();
        this.reset();
        for (const cause of ['message', 'epoch', 'reconnection'] as const) this.inc({ cause }, grantInvalidations[cause]);
      },
    });
    new Counter({
      name: 'mlgate_grant_announce_failures_total', help: 'Grant changes made through this gateway that Redis did not take: the other gateways apply them within authz.cacheTtl.', registers: [registry],
      collect() {
        this.reset();
        this.inc(redis().grantAnnounceFailures);
      },
    });
  }
  new Gauge({ name: 'mlgate_open_connections', help: 'Client connections open now.', registers: [registry], collect() { this.set(sources.openConnections()); } });
  new Gauge({ name: 'mlgate_websocket_tunnels', help: 'WebSocket tunnels open now.', registers: [registry], collect() { this.set(sources.openTunnels()); } });

  // Per configured server, labelled with its origin (bounded by the configuration). A server the
  // health checks watch (one of a list) reads their state; a lone one is probed, at most every 5 s.
  const { servers } = sources;
  const unchecked = servers.filter((server) => server.checkPath === undefined);
  let probed: { at: number; answers: Promise<Map<UpstreamServer, boolean>> } | undefined;
  new Gauge({
    name: 'mlgate_upstream_up', help: 'Whether the upstream server is in rotation (a list\'s, by its health checks) or answered the last probe (a lone server, probed at most every 5 s): 1 or 0.', labelNames: ['upstream'], registers: [registry], aggregator: 'min',
    async collect() {
      if (unchecked.length && (!probed || Date.now() - probed.at > PROBE_TTL_MS)) {
        probed = { at: Date.now(), answers: Promise.all(unchecked.map(async (server) => [server, (await sources.probe(server.url).catch(() => ({ ready: false }))).ready] as const)).then((answers) => new Map(answers)) };
      }
      const answers = await probed?.answers;
      for (const server of servers) this.set({ upstream: server.origin }, (server.checkPath === undefined ? answers?.get(server) : server.up) ? 1 : 0);
    },
  });
  new Gauge({
    name: 'mlgate_upstream_outstanding_requests', help: 'Requests (and WebSocket tunnels, and the gateway\'s own MLflow look-ups) sent to the upstream server and not yet ended.', labelNames: ['upstream'], registers: [registry],
    collect() {
      for (const server of servers) this.set({ upstream: server.origin }, server.outstanding);
    },
  });

  const allowedPeers = trustedProxies(config.allowCidrs);
  const tokenDigest = config.token === undefined ? undefined : digest(config.token);

  return {
    observe(ctx, method, status) {
      const family = familyOf(ctx);
      const verb = method !== undefined && METHODS.has(method) ? method : 'OTHER';
      requests.add(`${family} ${verb} ${status}`, () => [family, verb, String(status)]);
      // A tunnel's life (minutes, hours) says nothing about how fast the gateway answers.
      if (!(ctx.upgrade && status === 101)) durations.observe(family, millisecondsSince(ctx.startedAt) / 1000);
      if (ctx.upstreamMs !== undefined) upstreamDurations.observe(family, ctx.upstreamMs / 1000);
      const { principal, authFailure, decision, lookups } = ctx;
      if (principal) authentications.add(`${principal.method} ok`, () => [principal.method, 'ok']);
      else if (authFailure) authentications.add(`${authFailure.method} ${authFailure.reason}`, () => [authFailure.method, authFailure.reason]);
      if (decision !== undefined) decisions.add(`${family} ${decision}`, () => [family, decision]);
      if (lookups !== undefined) cache.add(lookups.spent === 0 ? 'hit' : 'miss', () => [lookups.spent === 0 ? 'hit' : 'miss']);
    },

    async scrape(req, callerOf) {
      const refused = (status: 401 | 403, message: string) => ({ status, contentType: 'application/json', body: JSON.stringify({ error_code: status === 401 ? 'UNAUTHENTICATED' : 'PERMISSION_DENIED', message }) });
      if (!allowedPeers.peerIsTrusted(req)) {
        const authorization = req.headers.authorization;
        const bearer = authorization === undefined ? undefined : /^bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
        const byToken = bearer !== undefined && tokenDigest !== undefined && timingSafeEqual(digest(bearer), tokenDigest);
        if (!byToken) {
          // An admin's credentials: the Authorization header, or a client certificate.
          const caller = await callerOf(req);
          if (caller === 'refused') return refused(401, 'metrics need metrics.token, an admin\'s credentials, or a peer in metrics.allowCidrs');
          if (caller === 'user') return refused(403, 'metrics are for admins, metrics.token and metrics.allowCidrs only');
        }
      }
      if (!workers) return { status: 200, contentType: registry.contentType, body: await registry.metrics() };
      const gathered = await workers.metrics();
      // A failed scrape (a 500 with its request id), rather than part of the gateway reported as all of it.
      if (!gathered) throw new Error('the primary process did not gather every worker\'s metrics (a worker stuck or still starting?)');
      return { status: 200, ...gathered };
    },
  };
}

let aggregator: import('prom-client').AggregatorRegistry<Registry['contentType']> | undefined;

/**
 * The primary of `workers` above 1: every worker's metrics as one exposition, asked for by the worker
 * that got the scrape. Rejects when a worker does not answer within 5 s. prom-client is loaded by
 * the first scrape, not before (docs/performance.md "Memory").
 */
export async function workersMetrics(): Promise<{ contentType: string; body: string }> {
  aggregator ??= new (promClient().AggregatorRegistry<Registry['contentType']>)();
  return { contentType: aggregator.contentType, body: await aggregator.clusterMetrics() };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** A counter whose series are plain numbers on the hot path, handed to prom-client on scrape. */
class Tallies {
  private readonly series = new Map<string, { labels: Record<string, string>; count: number }>();

  constructor(name: string, help: string, private readonly labelNames: readonly string[], registry: Registry) {
    const { series } = this;
    const { Counter } = promClient();
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        for (const { labels, count } of series.values()) this.inc(labels, count);
      },
    });
  }

  /** One more for the series `key` names; `labelValues` is asked only the first time. */
  add(key: string, labelValues: () => readonly string[]): void {
    const known = this.series.get(key);
    if (known) {
      known.count++;
      return;
    }
    const values = labelValues();
    this.series.set(key, { labels: Object.fromEntries(this.labelNames.map((label, i) => [label, values[i]!])), count: 1 });
  }
}

/** A histogram by route family, counted in plain arrays; prom-client writes its text on scrape. */
class Durations {
  private readonly series = new Map<string, { counts: Float64Array; sum: number; count: number }>();

  constructor(name: string, help: string, registry: Registry) {
    const { series } = this;
    const { Histogram } = promClient();
    const histogram = new Histogram({ name, help, labelNames: ['family'], buckets: DURATION_BUCKETS, registers: [registry] });
    // Registered as prom-client's own histogram, written from these series: the registry asks
    // getForPromString for the text, get for JSON (both read the series only at scrape time).
    const get = async () => {
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      for (const [family, { counts, sum, count }] of series) {
        let cumulative = 0;
        DURATION_BUCKETS.forEach((le, i) => {
          cumulative += counts[i]!;
          values.push({ metricName: `${name}_bucket`, labels: { family, le }, value: cumulative });
        });
        values.push({ metricName: `${name}_bucket`, labels: { family, le: '+Inf' }, value: count });
        values.push({ metricName: `${name}_sum`, labels: { family }, value: sum });
        values.push({ metricName: `${name}_count`, labels: { family }, value: count });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    };
    Object.assign(histogram, { get, getForPromString: get });
  }

  observe(family: string, seconds: number): void {
    let tally = this.series.get(family);
    if (!tally) this.series.set(family, (tally = { counts: new Float64Array(DURATION_BUCKETS.length), sum: 0, count: 0 }));
    tally.sum += seconds;
    tally.count++;
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    if (i < DURATION_BUCKETS.length) tally.counts[i]!++;
  }
}
