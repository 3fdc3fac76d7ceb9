// Cached permissions across gateways (docs/operations.md "Several gateways: shared state in Redis"):
// a grant or revocation made anywhere (the API, the page, `mlgate grant|revoke`) is in force on every
// gateway by the next request after it returns.
//
// Pub/sub alone cannot promise that: a message published before gateway A answers may still be on its
// way to gateway B when the client's next request reaches B. So every change also bumps a counter in
// Redis (the grants *epoch*, INCR) before it is answered, and a request that uses B's permission
// caches first reads the epoch (one GET, once per request). An epoch B has not seen means a change it
// has not heard of: B drops its whole permission cache. The pub/sub message (the epoch and the
// resource) usually arrives first and drops just that resource's entries, so the GET then finds the
// epoch already seen and nothing more is dropped.
//
// Redis away: no GET (the caches' TTL, authz.cacheTtl, bounds what is missed); each reconnection drops
// the whole cache, since changes made meanwhile were neither heard of nor counted in an epoch this
// gateway could compare (a restarted Redis starts its counter again).
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import { ioredis, type SharedState } from './redis-state.ts';

/** The resource whose grants changed: what the cache entries are keyed by (workspace first). */
export interface GrantChange {
  workspace: string;
  kind: 'experiment' | 'registered-model';
  /** An experiment's id (registered models are known by name). */
  id?: string;
  name: string;
}

/** The permission caches (the resolver's): one resource's entries, or everything that expires. */
interface PermissionCaches {
  dropResource(change: GrantChange): void;
  dropAll(): void;
}

/** Bumps the epoch and tells every gateway which resource, in one round trip. */
const ANNOUNCE_SCRIPT = `
local epoch = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. ARGV[2])
return epoch
`;

function epochKey(prefix: string): string {
  return `${prefix}grants:epoch`;
}

function channelOf(prefix: string): string {
  return `${prefix}grants:changed`;
}

/** Sends the change; the new epoch. Throws when Redis does not answer. */
function announceOn(client: Redis, prefix: string, change: GrantChange): Promise<number> {
  return client.eval(ANNOUNCE_SCRIPT, 1, epochKey(prefix), channelOf(prefix), JSON.stringify(change)).then(Number);
}

function changeFrom(text: string): { epoch: number; change: GrantChange } | undefined {
  const space = text.indexOf(' ');
  const epoch = Number(text.slice(0, space));
  if (space < 0 || !Number.isSafeInteger(epoch)) return undefined;
  try {
    const value = JSON.parse(text.slice(space + 1)) as Partial<GrantChange>;
    if (typeof value.workspace !== 'string' || typeof value.name !== 'string' || (value.kind !== 'experiment' && value.kind !== 'registered-model')) return undefined;
    if (value.kind === 'experiment' && typeof value.id !== 'string') return undefined;
    return { epoch, change: { workspace: value.workspace, kind: value.kind, id: value.id, name: value.name } };
  } catch {
    return undefined;
  }
}

export class GrantInvalidation {
  /** Pub/sub takes a connection of its own (a subscribed connection runs no other commands). */
  private readonly subscriber: Redis;
  /** The epoch this gateway's caches reflect; undefined until known (start, after a reconnection). */
  private seen: number | undefined;
  /** For /-/metrics: why caches were dropped (a message, an epoch unheard of, a reconnection). */
  readonly drops = { message: 0, epoch: 0, reconnection: 0 };
  /** Changes made here that Redis did not take. */
  announceFailures = 0;
  private stopping = false;

  constructor(private readonly shared: SharedState, private readonly caches: PermissionCaches, private readonly logger: Logger) {
    const channel = channelOf(shared.prefix);
    this.subscriber = shared.client.duplicate({ autoResubscribe: false });
    this.subscriber.on('ready', () => {
      this.subscriber.subscribe(channel).catch((err: unknown) => this.shared.failed(err));
    });
    // Its outages are the main connection's too, which logs and counts them.
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', (from: string, text: string) => {
      if (from === channel) this.heard(text);
    });
    let connected = shared.client.status === 'ready';
    shared.client.on('ready', () => {
      if (connected) return;
      connected = true;
      this.seen = undefined;
      this.drops.reconnection++;
      this.caches.dropAll();
      this.logger.info('permission caches dropped: grant changes made while the shared state store (Redis) was away were not heard of');
    });
    shared.client.on('close', () => {
      if (!this.stopping) connected = false;
    });
  }

  /**
   * Before a request uses the permission caches: once the epoch is read, the caches hold nothing
   * older than the changes announced before this call. Undefined when Redis is unreachable: the
   * caches' TTL is all there is. Never rejects.
   */
  check(): Promise<void> | undefined {
    if (!this.shared.isReachable) return undefined;
    return this.shared.client.get(epochKey(this.shared.prefix)).then((value) => {
      const epoch = Number(value ?? 0);
      // An older reading than a message already heard: those caches are newer.
      if (this.seen !== undefined && epoch <= this.seen) return;
      if (this.seen !== undefined) this.drops.epoch++;
      this.seen = epoch;
      this.caches.dropAll();
    }, (err: unknown) => this.shared.failed(err));
  }

  /**
   * After this gateway wrote a grant to MLflow (its own caches already dropped), before it answers.
   * Redis unreachable: logged; the other gateways see the change within authz.cacheTtl.
   */
  async announce(change: GrantChange): Promise<void> {
    let epoch: number | undefined;
    if (this.shared.isReachable) {
      epoch = await announceOn(this.shared.client, this.shared.prefix, change).catch((err: unknown) => {
        this.shared.failed(err);
        return undefined;
      });
    }
    if (epoch === undefined) {
      this.announceFailures++;
      this.logger.warn({ resource: change, error: this.shared.problem }, 'grant change not announced: the shared state store (Redis) is unreachable; the other gateways apply it within authz.cacheTtl');
      return;
    }
    // Ours was the only change since the epoch seen: nothing else to drop. Otherwise the next check drops everything.
    if (this.seen !== undefined && epoch === this.seen + 1) this.seen = epoch;
  }

  private heard(text: string): void {
    const message = changeFrom(text);
    if (!message) return;
    this.drops.message++;
    this.caches.dropResource(message.change);
    // A gap means a message missed: the next check sees the epoch moved and drops everything.
    if (this.seen !== undefined && message.epoch === this.seen + 1) this.seen = message.epoch;
  }

  stop(): void {
    this.stopping = true;
    this.subscriber.disconnect();
  }
}

/**
 * For `mlgate grant|revoke`, which run apart from any gateway: announces the change through the
 * gateways' Redis (state.redis), then disconnects. The problem when Redis did not take it.
 */
export async function announceGrantChange(options: NonNullable<Config['state']['redis']>, change: GrantChange): Promise<string | undefined> {
  const timeout = Math.max(options.timeout, 50);
  const client = new (ioredis())(options.url, {
    ...(options.password !== undefined ? { password: options.password } : {}),
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    commandTimeout: timeout,
    connectTimeout: Math.max(timeout, 1000),
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await announceOn(client, options.keyPrefix, change);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message || err.name : String(err);
  } finally {
    client.disconnect();
  }
}
