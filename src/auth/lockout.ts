// Password-guessing protection: failed sign-ins are counted per client IP and per user name over a
// sliding window; past a threshold that IP or user is refused, before any hash is checked, for a
// back-off that doubles with every further failure up to a cap. Shared by HTTP Basic and the
// browser sign-in form.
import { LRUCache } from 'lru-cache';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log/logger.ts';

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

  constructor(private readonly options: LockoutOptions, private readonly logger: Logger) {
    this.users = new LRUCache({ max: options.maxEntries });
    this.ips = new LRUCache({ max: options.maxEntries });
    this.knownIps = options.knownIpTtl > 0 ? new LRUCache({ max: options.maxEntries, ttl: options.knownIpTtl }) : undefined;
  }

  /** The lock that refuses this attempt, or undefined if it may be verified. */
  lockFor(ip: string, user: string): Lock | undefined {
    const now = Date.now();
    const ipLockedFor = lockedFor(this.ips.get(ip), now);
    if (ipLockedFor > 0) return { scope: 'ip', retryAfterMs: ipLockedFor, message: `too many failed sign-ins from this address (${ip}); try again in ${inWords(ipLockedFor)}` };
    const userLockedFor = lockedFor(this.users.get(user), now);
    if (userLockedFor > 0 && !this.knownIps?.has(knownKey(user, ip))) {
      return { scope: 'user', retryAfterMs: userLockedFor, message: `too many failed sign-ins for user "${user}"; try again in ${inWords(userLockedFor)}` };
    }
    return undefined;
  }

  recordFailure(ip: string, user: string): void {
    const now = Date.now();
    this.fail(this.ips, ip, this.options.maxIpFailures, 'ip', ip, user, now);
    this.fail(this.users, user, this.options.maxUserFailures, 'user', ip, user, now);
  }

  /** The user's failures are forgotten and this IP becomes exempt from the user's lockouts; the IP's count stays. */
  recordSuccess(ip: string, user: string): void {
    this.users.delete(user);
    this.knownIps?.set(knownKey(user, ip), true);
  }

  private fail(tallies: LRUCache<string, Tally>, key: string, threshold: number, scope: LockScope, ip: string, user: string, now: number): void {
    let tally = tallies.get(key);
    if (!tally || this.isQuiet(tally, now)) tally = { failures: [], lockedUntil: 0, lastLockMs: 0 };
    // Attempts already being verified when the lock started: they neither count nor extend it.
    if (now < tally.lockedUntil) return;
    const windowStart = now - this.options.window;
    tally.failures = tally.failures.filter((at) => at > windowStart);
    tally.failures.push(now);
    const relapse = tally.lastLockMs > 0;
    if (relapse || tally.failures.length >= threshold) {
      const lockMs = relapse ? Math.min(tally.lastLockMs * 2, this.options.backoffMax) : this.options.backoff;
      this.logger.warn({
        scope, ip, user, failures: tally.failures.length, lockedForMs: lockMs, until: new Date(now + lockMs).toISOString(),
      }, scope === 'ip' ? 'sign-in lockout started: too many failed sign-ins from one address' : 'sign-in lockout started: too many failed sign-ins for one user');
      this.started[scope]++;
      this.onLock?.(scope, ip, user, lockMs);
      tally.lockedUntil = now + lockMs;
      tally.lastLockMs = lockMs;
      tally.failures = [];
    }
    tallies.set(key, tally);
  }

  /** No failure for a whole window since the last one and since the last lockout ended: start afresh. */
  private isQuiet(tally: Tally, now: number): boolean {
    return now - Math.max(tally.failures.at(-1) ?? 0, tally.lockedUntil) > this.options.window;
  }
}

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
