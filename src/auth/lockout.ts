// Password-guessing protection: failed sign-ins are counted per client IP and per user name over a
// sliding window; past a threshold that IP or user is refused, before any hash is checked, for a
// back-off that doubles with every further failure up to a cap. Shared by HTTP Basic and the
// browser sign-in form.
import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../state/bounded-cache.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';
import type { SharedState } from '../state/redis-state.ts';
import { primaryChannel, type LockoutSnapshot, type LocksStarted, type PrimaryChannel } from '../state/worker-state.ts';

/** The lockout section of the configuration (durations in ms). */
type LockoutOptions = Omit<Config['lockout'], 'enabled'>;

export type LockScope = 'user' | 'ip';

/** A refusal: who is locked, and for how much longer. */
export interface Lock {
  scope: LockScope;
  retryAfterMs: number;
  /** What to tell the client, including when to retry. */
  message: string;
}

interface Tally {
  /** Times of the failures in the current window, oldest first (never more than the threshold). */
  failures: number[];
  lockedUntil: number;
  /** Length of the last lockout; 0 if none since the tally was last quiet for a whole window. */
  lastLockMs: number;
}

/**
 * The API the sign-in paths call, in this order: `lockFor` before verifying a password (a Lock means
 * refuse without hashing), then `recordFailure` or `recordSuccess` with the verdict.
 *
 * A user's lockout does not apply from IPs that user signed in from within `knownIpTtl`, so a
 * guesser elsewhere cannot lock the real user's machines out; an IP's lockout applies to everyone
 * on it. (Credentials already verified and cached skip `lockFor` entirely: see authenticate.ts.)
 */
export class Lockout {
  private readonly users: LRUCache<string, Tally>;
  private readonly ips: LRUCache<string, Tally>;
  private readonly knownIps: LRUCache<string, true> | undefined;
  /** Lockouts started since start-up, by scope (mlgate_lockouts_total). */
  readonly started: Record<LockScope, number> = { ip: 0, user: 0 };
  /** Told of each lockout as it starts (the audit log). */
  onLock?: (scope: LockScope, ip: string, user: string, lockedForMs: number) => void;

  /** With `workers` above 1 and no Redis: the primary counts every worker's failures (src/state/worker-state.ts). */
  private readonly peers: PrimaryChannel | undefined;

  /**
   * With state.redis: failures are counted and locks kept in Redis, so a lockout earned on one gateway
   * holds on all. Only attempts that are about to be hashed ask Redis (a cached credential never does);
   * a lock heard of is also kept here, so this gateway refuses it without asking again. While Redis is
   * unreachable this gateway counts alone, as without it.
   */
  constructor(private readonly options: LockoutOptions, private readonly logger: Logger, private readonly shared?: SharedState) {
    this.users = boundedCache(options.maxEntries);
    this.ips = boundedCache(options.maxEntries);
    this.knownIps = options.knownIpTtl > 0 ? boundedCache(options.maxEntries, { ttl: options.knownIpTtl }) : undefined;
    // A worker's tallies hold only the locks its primary tells of, and its known IPs: lockFor stays a
    // lookup here, and only a failure (about to be answered 401 anyway) waits for the primary.
    this.peers = shared ? undefined : primaryChannel();
    this.peers?.subscribeLockout({
      restore: (snapshot) => {
        const now = Date.now();
        for (const lock of snapshot.locks) this.mirror(lock.scope === 'ip' ? this.ips : this.users, lock.key, now, lock.ms);
        for (const [key, ms] of snapshot.knownIps) this.knownIps?.set(key, true, { ttl: ms });
      },
      locked: (scope, key, ms) => this.mirror(scope === 'ip' ? this.ips : this.users, key, Date.now(), ms),
      signedIn: (ip, user) => this.forgetUser(ip, user),
    });
  }

  /** The lock that refuses this attempt, or undefined if it may be verified. */
  lockFor(ip: string, user: string): Lock | undefined | Promise<Lock | undefined> {
    const local = this.localLockFor(ip, user);
    const shared = this.shared;
    if (local || !shared?.isReachable) return local;
    return shared.client.multi().pttl(shared.key('lock', 'ip', ip)).pttl(shared.key('lock', 'user', user)).exec().then((replies) => {
      const [ipMs, userMs] = (replies ?? []).map(([err, ms]) => (err ? 0 : Math.max(0, Number(ms))));
      const now = Date.now();
      if (ipMs) this.mirror(this.ips, ip, now, ipMs);
      if (userMs) this.mirror(this.users, user, now, userMs);
      return this.localLockFor(ip, user);
    }, (err: unknown) => {
      shared.failed(err);
      return undefined;
    });
  }

  private localLockFor(ip: string, user: string): Lock | undefined {
    const now = Date.now();
    const ipLockedFor = lockedFor(this.ips.get(ip), now);
    if (ipLockedFor > 0) return { scope: 'ip', retryAfterMs: ipLockedFor, message: `too many failed sign-ins from this address (${ip}); try again in ${inWords(ipLockedFor)}` };
    const userLockedFor = lockedFor(this.users.get(user), now);
    if (userLockedFor > 0 && !this.knownIps?.has(knownKey(user, ip))) {
      return { scope: 'user', retryAfterMs: userLockedFor, message: `too many failed sign-ins for user "${user}"; try again in ${inWords(userLockedFor)}` };
    }
    return undefined;
  }

  /**
   * With Redis, resolves once Redis has counted it (so the next attempt anywhere sees any lock it
   * started); in a worker, once the primary has counted it and every worker holds the lock it started.
   */
  recordFailure(ip: string, user: string): void | Promise<void> {
    const shared = this.shared;
    if (shared?.isReachable) {
      const { window, backoff, backoffMax, maxIpFailures, maxUserFailures } = this.options;
      const count = (scope: LockScope, key: string, threshold: number) => shared.client.eval(FAIL_SCRIPT, 3,
        shared.key('fail', scope, key), shared.key('lock', scope, key), shared.key('last', scope, key), threshold, window, backoff, backoffMax);
      return Promise.all([count('ip', ip, maxIpFailures), count('user', user, maxUserFailures)]).then(([ipMs, userMs]) => {
        const now = Date.now();
        if (Number(ipMs) > 0) this.lockStarted(this.ips, 'ip', ip, user, now, Number(ipMs));
        if (Number(userMs) > 0) this.lockStarted(this.users, 'user', ip, user, now, Number(userMs));
      }, (err: unknown) => {
        shared.failed(err);
        this.recordFailureLocally(ip, user);
      });
    }
    const peers = this.peers;
    if (peers) {
      return peers.failure(ip, user).then((started) => {
        // No answer from the primary (it is going away): counted here, as one process would.
        if (!started) return this.recordFailureLocally(ip, user);
        const now = Date.now();
        if (started.ip > 0) this.lockStarted(this.ips, 'ip', ip, user, now, started.ip);
        if (started.user > 0) this.lockStarted(this.users, 'user', ip, user, now, started.user);
      });
    }
    this.recordFailureLocally(ip, user);
  }

  private recordFailureLocally(ip: string, user: string): void {
    const now = Date.now();
    const ipLock = this.fail(this.ips, ip, this.options.maxIpFailures, now);
    if (ipLock) this.announce('ip', ip, user, now, ipLock.ms, ipLock.failures);
    const userLock = this.fail(this.users, user, this.options.maxUserFailures, now);
    if (userLock) this.announce('user', ip, user, now, userLock.ms, userLock.failures);
  }

  /** The primary's count of a failure a worker reported: the locks it started, which that worker logs and tells. */
  countFailure(ip: string, user: string): LocksStarted {
    const now = Date.now();
    return {
      ip: this.fail(this.ips, ip, this.options.maxIpFailures, now)?.ms ?? 0,
      user: this.fail(this.users, user, this.options.maxUserFailures, now)?.ms ?? 0,
    };
  }

  /** The locks in force and the known IPs, for a worker that (re)starts. */
  snapshot(): LockoutSnapshot {
    const now = Date.now();
    const locks: LockoutSnapshot['locks'] = [];
    for (const [scope, tallies] of [['ip', this.ips], ['user', this.users]] as const) {
      for (const [key, tally] of tallies.entries()) {
        const ms = lockedFor(tally, now);
        if (ms > 0) locks.push({ scope, key, ms });
      }
    }
    const knownIps: [string, number][] = [];
    for (const key of this.knownIps?.keys() ?? []) knownIps.push([key, this.knownIps!.getRemainingTTL(key)]);
    return { locks, knownIps };
  }

  /** The user's failures are forgotten and this IP becomes exempt from the user's lockouts; the IP's count stays. */
  recordSuccess(ip: string, user: string): void {
    this.forgetUser(ip, user);
    this.peers?.signedIn(ip, user);
    const shared = this.shared;
    // The user's count restarts everywhere; a lock already running stays (other gateways do not know this IP).
    if (shared?.isReachable) shared.client.del(shared.key('fail', 'user', user), shared.key('last', 'user', user)).catch((err: unknown) => shared.failed(err));
  }

  private forgetUser(ip: string, user: string): void {
    this.users.delete(user);
    this.knownIps?.set(knownKey(user, ip), true);
  }

  /** A lock Redis or the primary told of, kept here until it ends. */
  private mirror(tallies: LRUCache<string, Tally>, key: string, now: number, lockMs: number): void {
    const tally = tallies.get(key) ?? { failures: [], lockedUntil: 0, lastLockMs: 0 };
    tally.lockedUntil = Math.max(tally.lockedUntil, now + lockMs);
    tallies.set(key, tally);
  }

  /** Counts one failure; returns the lock it started (its length, and the failures that earned it). */
  private fail(tallies: LRUCache<string, Tally>, key: string, threshold: number, now: number): { ms: number; failures: number } | undefined {
    let tally = tallies.get(key);
    if (!tally || this.isQuiet(tally, now)) tally = { failures: [], lockedUntil: 0, lastLockMs: 0 };
    // Attempts already being verified when the lock started: they neither count nor extend it.
    if (now < tally.lockedUntil) return undefined;
    const windowStart = now - this.options.window;
    tally.failures = tally.failures.filter((at) => at > windowStart);
    tally.failures.push(now);
    const relapse = tally.lastLockMs > 0;
    if (relapse || tally.failures.length >= threshold) {
      const ms = relapse ? Math.min(tally.lastLockMs * 2, this.options.backoffMax) : this.options.backoff;
      const failures = tally.failures.length;
      this.lock(tallies, key, now, ms, tally);
      return { ms, failures };
    }
    tallies.set(key, tally);
    return undefined;
  }

  /** A lockout counted in Redis or by the primary starts: announced here, and kept in the local tally. */
  private lockStarted(tallies: LRUCache<string, Tally>, scope: LockScope, ip: string, user: string, now: number, lockMs: number): void {
    this.announce(scope, ip, user, now, lockMs, undefined);
    this.lock(tallies, scope === 'ip' ? ip : user, now, lockMs);
  }

  /** A lockout starts: logged, counted, told (`failures` undefined: counted elsewhere). */
  private announce(scope: LockScope, ip: string, user: string, now: number, lockMs: number, failures: number | undefined): void {
    this.logger.warn({
      scope, ip, user, failures, shared: failures === undefined ? true : undefined, lockedForMs: lockMs, until: new Date(now + lockMs).toISOString(),
    }, scope === 'ip' ? 'sign-in lockout started: too many failed sign-ins from one address' : 'sign-in lockout started: too many failed sign-ins for one user');
    this.started[scope]++;
    this.onLock?.(scope, ip, user, lockMs);
  }

  private lock(tallies: LRUCache<string, Tally>, key: string, now: number, lockMs: number, counted?: Tally): void {
    const tally = counted ?? tallies.get(key) ?? { failures: [], lockedUntil: 0, lastLockMs: 0 };
    tally.lockedUntil = now + lockMs;
    tally.lastLockMs = lockMs;
    tally.failures = [];
    tallies.set(key, tally);
  }

  /** No failure for a whole window since the last one and since the last lockout ended: start afresh. */
  private isQuiet(tally: Tally, now: number): boolean {
    return now - Math.max(tally.failures.at(-1) ?? 0, tally.lockedUntil) > this.options.window;
  }
}

/**
 * One failure counted in Redis (KEYS: failures, lock, last lock length; ARGV: threshold, window,
 * backoff, backoffMax). Returns the new lock's length in ms, 0 for no lock, -1 if already locked (an
 * attempt that was in flight: it neither counts nor extends the lock). Every key expires.
 */
const FAIL_SCRIPT = `
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if last > 0 or n >= tonumber(ARGV[1]) then
  local ms = tonumber(ARGV[3])
  if last > 0 then ms = math.min(last * 2, tonumber(ARGV[4])) end
  redis.call('SET', KEYS[2], '1', 'PX', ms)
  redis.call('SET', KEYS[3], ms, 'PX', ms + tonumber(ARGV[2]))
  redis.call('DEL', KEYS[1])
  return ms
end
return 0
`;

function lockedFor(tally: Tally | undefined, now: number): number {
  return tally ? Math.max(0, tally.lockedUntil - now) : 0;
}

function knownKey(user: string, ip: string): string {
  return `${user}\0${ip}`;
}

/** 30000 -> "30 seconds", 90000 -> "2 minutes" (rounded up: retrying at the time said must work). */
function inWords(ms: number): string {
  const seconds = Math.ceil(ms / 1000);
  if (seconds < 120) return seconds === 1 ? '1 second' : `${seconds} seconds`;
  return `${Math.ceil(seconds / 60)} minutes`;
}
