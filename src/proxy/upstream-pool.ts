// Which server of an upstream a request goes to, and which servers are up (docs/operations.md
// "Several MLflow servers"). Independent of how a request is then forwarded (http-proxy today), so
// any forwarder, the gateway's own MLflow look-ups and WebSocket tunnels choose the same way.
//
// - An upstream is one server or a list; each configured origin is one UpstreamServer, shared by
//   every upstream that lists it, so its state and outstanding requests are counted once.
// - Choice: least outstanding requests among the servers that are up; ties go round-robin (the one
//   after the last chosen), so an idle pool still spreads its requests.
// - Health: every server of a list of two or more is checked (GET proxy.healthCheck.path, or the
//   route's healthCheckPath; a 2xx or 3xx answer within the timeout passes, as Caddy counts it).
//   `fails` failures in a row take it out, `passes` good checks put it back; a refused connection
//   takes it out at once (passively). A lone server is never checked nor taken out: there is nowhere
//   else to send its requests, and its own error says more than "no server is up".
import http from 'node:http';
import https from 'node:https';
import type { Logger } from '../log/logger.ts';

interface HealthCheckSettings {
  /** The path asked by default (proxy.healthCheck.path; a route's healthCheckPath overrides it). */
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** Failed checks in a row that take a server out (Caddy's health_fails). */
  fails: number;
  /** Good checks in a row that put it back (health_passes). */
  passes: number;
}

/** Settings no check reads: servers without a check path are never taken out. */
const UNCHECKED: HealthCheckSettings = { path: '/health', intervalMs: 5000, timeoutMs: 2000, fails: 1, passes: 1 };

/** One configured origin: its state as the checks and the requests see it. */
export class UpstreamServer {
  readonly origin: string;
  /** Up until the checks (or a refused connection) say otherwise. */
  up = true;
  /** Requests forwarded to it (and look-ups sent to it) that have not ended. */
  outstanding = 0;
  /** Why it is down, or why its last check or connection failed; undefined once checks pass again. */
  lastError?: string;
  /** The path it is checked at; undefined: never checked, never taken out. */
  checkPath?: string;
  private failures = 0;
  private passes = 0;

  constructor(readonly url: URL, private readonly settings: HealthCheckSettings, private readonly logger?: Logger) {
    this.origin = url.origin;
  }

  /** Counts one outstanding request; the returned function ends it (once, however often called). */
  begin(): () => void {
    this.outstanding++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.outstanding--;
    };
  }

  /** A connection to it was refused: out of rotation at once when it is checked (its checks bring it back). */
  refused(reason: string): void {
    this.lastError = reason;
    if (this.checkPath === undefined || !this.up) return;
    this.passes = 0;
    this.failures = this.settings.fails;
    this.markDown(reason);
  }

  /** One active check's outcome: `problem` undefined when it passed. */
  checked(problem: string | undefined): void {
    if (problem === undefined) {
      this.failures = 0;
      if (this.up) {
        this.lastError = undefined;
        return;
      }
      if (++this.passes < this.settings.passes) return;
      this.up = true;
      this.lastError = undefined;
      this.logger?.info({ upstream: this.origin }, `upstream server ${this.origin} is back in rotation: ${this.settings.passes} good health check(s)`);
      return;
    }
    this.passes = 0;
    this.lastError = problem;
    if (!this.up || ++this.failures < this.settings.fails) return;
    this.markDown(`${problem} (${this.settings.fails} failed health check(s) in a row)`);
  }

  private markDown(reason: string): void {
    this.up = false;
    this.logger?.warn({ upstream: this.origin, problem: reason }, `upstream server ${this.origin} is out of rotation: ${reason}`);
  }
}

/** The servers of one upstream (the top-level MLflow list, or a route's). */
export class UpstreamPool {
  private next = 0;

  constructor(readonly servers: readonly UpstreamServer[]) {}

  /** A pool nothing checks (a command's MLflow list): its servers are always up, tried in turn when one refuses. */
  static of(urls: readonly (string | URL)[]): UpstreamPool {
    return new UpstreamPool(urls.map((url) => new UpstreamServer(new URL(url), UNCHECKED)));
  }

  /**
   * The server for the next request: fewest outstanding among those up and not in `tried`, ties to
   * the one after the last chosen. A lone server is chosen whatever its state; undefined when every
   * other server is down or tried.
   */
  choose(tried?: ReadonlySet<UpstreamServer>): UpstreamServer | undefined {
    const { servers } = this;
    if (servers.length === 1) return tried?.has(servers[0]!) ? undefined : servers[0];
    let best: UpstreamServer | undefined;
    let bestAt = 0;
    for (let i = 0; i < servers.length; i++) {
      const at = (this.next + i) % servers.length;
      const server = servers[at]!;
      if (!server.up || tried?.has(server)) continue;
      if (!best || server.outstanding < best.outstanding) {
        best = server;
        bestAt = at;
      }
    }
    if (best) this.next = bestAt + 1;
    return best;
  }

  /** Servers up now. */
  get upCount(): number {
    return this.servers.filter((server) => server.up).length;
  }
}

/** One server, a list, or a pool already made (the gateway's, whose checks decide which are up). */
export type Upstream = string | URL | readonly (string | URL)[] | UpstreamPool;

export function poolOf(upstream: Upstream): UpstreamPool {
  if (upstream instanceof UpstreamPool) return upstream;
  return UpstreamPool.of(typeof upstream === 'string' || upstream instanceof URL ? [upstream] : upstream);
}

/**
 * Every upstream's servers, one UpstreamServer per origin, and the timers that check them. Made once
 * per gateway; `start` begins the checks, `stop` ends them.
 */
export class UpstreamServers {
  private readonly byOrigin = new Map<string, UpstreamServer>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly checking = new Set<UpstreamServer>();

  constructor(private readonly settings: HealthCheckSettings, private readonly logger?: Logger) {}

  /**
   * The pool of one upstream. A list of two or more is checked at `checkPath` (default the
   * settings' path; false: never checked); a server listed by several upstreams is checked at the
   * first path it was given.
   */
  pool(urls: readonly (string | URL)[], checkPath?: string | false): UpstreamPool {
    const servers = urls.map((url) => {
      const parsed = new URL(url);
      let server = this.byOrigin.get(parsed.origin);
      if (!server) this.byOrigin.set(parsed.origin, (server = new UpstreamServer(parsed, this.settings, this.logger)));
      if (urls.length > 1 && checkPath !== false) server.checkPath ??= checkPath ?? this.settings.path;
      return server;
    });
    return new UpstreamPool(servers);
  }

  /** Every server, each once, in the order first configured. */
  get all(): readonly UpstreamServer[] {
    return [...this.byOrigin.values()];
  }

  /** Starts the periodic checks of the servers that have a check path (one timer each, unref'd). */
  start(): void {
    for (const server of this.byOrigin.values()) {
      if (server.checkPath === undefined) continue;
      const timer = setInterval(() => void this.check(server), this.settings.intervalMs);
      timer.unref();
      this.timers.push(timer);
      void this.check(server);
    }
  }

  stop(): void {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
  }

  /** One check; a check still running (a slow server) is not doubled. */
  private async check(server: UpstreamServer): Promise<void> {
    if (this.checking.has(server)) return;
    this.checking.add(server);
    try {
      server.checked(await checkServer(server.url, server.checkPath!, this.settings.timeoutMs));
    } finally {
      this.checking.delete(server);
    }
  }
}

/** GET `path` on the server: undefined when it answered 2xx or 3xx in time, else why not. */
function checkServer(url: URL, path: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const request = (url.protocol === 'https:' ? https : http).get(new URL(path, url), { timeout: timeoutMs, agent: false, headers: { 'user-agent': 'mlgate-health-check' } }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      resolve(status >= 200 && status < 400 ? undefined : `answered ${status} to GET ${path}`);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer to GET ${path} within ${timeoutMs / 1000} s`)));
    request.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}
