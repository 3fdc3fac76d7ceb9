// The optional Redis that several gateways share (docs/operations.md "Several gateways: shared state
// in Redis"): lockout counters and session sign-outs (grant changes: grant-invalidation.ts, on a
// connection of its own for pub/sub). Commands never queue while Redis is away: they
// fail at once (or after `timeout`), and each caller decides what that means (lockouts count locally,
// cookie sessions are refused). ioredis reconnects by itself; the first failure and the recovery are
// logged once each.
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';

type RedisOptions = NonNullable<Config['state']['redis']>;

/**
 * ioredis, loaded when a connection is first made: it is ~7 MB of every process's resident memory,
 * and most gateways have no state.redis. Synchronous (it is CommonJS), so a gateway configured with
 * Redis still meets any problem loading it while it starts, not at its first request.
 */
export function ioredis(): typeof Redis {
  return (createRequire(import.meta.url)('ioredis') as typeof import('ioredis')).Redis;
}

const RETRY_AFTER_FAILURE_MS = 1000;

export class SharedState {
  readonly client: Redis;
  readonly prefix: string;
  private lastError = 'not connected yet';
  /** When a command last failed: Redis counts as unreachable for a moment after (a timeout leaves the connection up). */
  private failedAt = 0;
  private downLogged = false;
  private stopping = false;
  /** For /-/metrics: commands that failed (callers' `failed`) and connection errors and losses. */
  readonly failures = { command: 0, connection: 0 };

  constructor(options: RedisOptions, private readonly logger: Logger) {
    this.prefix = options.keyPrefix;
    const timeout = Math.max(options.timeout, 50);
    this.client = new (ioredis())(options.url, {
      ...(options.password !== undefined ? { password: options.password } : {}),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeout,
      connectTimeout: Math.max(timeout, 1000),
      retryStrategy: (times) => Math.min(100 * times, 2000),
      lazyConnect: false,
    });
    this.client.on('ready', () => {
      if (this.downLogged) this.logger.info({ redis: redacted(options.url) }, 'shared state store (Redis) reachable again; lockouts, sign-outs and API tokens are shared again');
      this.failedAt = 0;
      this.downLogged = false;
    });
    this.client.on('error', (err: Error) => this.failed(err, 'connection'));
    this.client.on('close', () => {
      if (!this.stopping) this.failed(new Error('connection closed'), 'connection');
    });
  }

  /** Whether the last thing heard from Redis was good. */
  get isReachable(): boolean {
    return this.client.status === 'ready' && Date.now() - this.failedAt > RETRY_AFTER_FAILURE_MS;
  }

  get problem(): string {
    return this.isReachable ? '' : this.lastError;
  }

  /** Noted by callers whose command failed: logs once per outage. */
  failed(err: unknown, kind: 'command' | 'connection' = 'command'): void {
    this.failures[kind]++;
    this.failedAt = Date.now();
    this.lastError = err instanceof Error ? err.message || err.name : String(err);
    if (!this.downLogged) {
      this.downLogged = true;
      this.logger.warn({ error: this.lastError }, 'shared state store (Redis) unreachable: lockouts are counted by this gateway alone, and cookie sessions and API tokens are refused until it is back');
    }
  }

  key(...parts: string[]): string {
    return this.prefix + parts.join(':');
  }

  /** Waits (up to `ms`) for the first connection; start-up goes on regardless. */
  async waitReady(ms: number): Promise<void> {
    if (this.client.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.client.once('ready', () => { clearTimeout(timer); resolve(); });
    });
  }

  stop(): void {
    this.stopping = true;
    this.client.disconnect();
  }
}

function redacted(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
