import { hash as digest, randomBytes } from 'node:crypto';
import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../state/bounded-cache.ts';
import type { HashWorkerPool } from './hash-worker-pool.ts';

interface PasswordCheckerOptions {
  cacheSize: number;
  cacheTtlMs: number;
  /**
   * A hash with the same cost as real ones, checked for unknown users so timing reveals nothing; a
   * function is asked at every check (the htpasswd file's most common entry changes on reload).
   */
  dummyHash: string | (() => string);
}

/**
 * Verifies user+password against the user's stored hash. Successful checks are cached under a keyed
 * hash of (user, password, stored hash) with a per-process secret, never the password itself; a
 * changed or removed hash therefore misses the cache. Concurrent checks of the same credential share
 * one verification.
 */
export class PasswordChecker {
  private readonly secret = randomBytes(32).toString('base64');
  private readonly verified: LRUCache<string, string> | undefined;
  private readonly inflight = new Map<string, Promise<boolean>>();
  /** How many hash verifications actually ran (the cache and coalescing avoid the rest). */
  verifications = 0;

  constructor(private readonly pool: HashWorkerPool, private readonly options: PasswordCheckerOptions) {
    this.verified = options.cacheSize > 0 && options.cacheTtlMs > 0
      ? boundedCache(options.cacheSize, { ttl: options.cacheTtlMs })
      : undefined;
  }

  check(user: string, password: string, storedHash: string | undefined): Promise<boolean> | boolean {
    const hash = storedHash ?? this.unknownUserHash;
    const key = this.keyOf(user, password, hash);
    if (storedHash !== undefined && this.verified?.get(key) === user) return true;
    const running = this.inflight.get(key);
    if (running) return running;
    this.verifications++;
    const check = this.pool.verify(hash, password)
      .then((ok) => {
        const accepted = ok && storedHash !== undefined;
        if (accepted) this.verified?.set(key, user);
        return accepted;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, check);
    return check;
  }

  /** The hash an unknown user's password is checked against (never accepted). */
  get unknownUserHash(): string {
    const { dummyHash } = this.options;
    return typeof dummyHash === 'string' ? dummyHash : dummyHash();
  }

  /** Whether this exact credential is in the cache of verified ones; never runs a hash. */
  isVerified(user: string, password: string, storedHash: string): boolean {
    return this.verified?.get(this.keyOf(user, password, storedHash)) === user;
  }

  private keyOf(user: string, password: string, hash: string): string {
    // A secret-prefixed SHA-256 (a quarter of an HMAC's cost; the digest never leaves the process,
    // so length extension is moot). Lengths make the fields unambiguous.
    return digest('sha256', `${this.secret}${user.length}:${user}${password.length}:${password}${hash}`, 'base64');
  }

  /** Forgets every cached success of these users (their line in the file changed or went away). */
  forgetUsers(users: Iterable<string>): void {
    if (!this.verified) return;
    const gone = new Set(users);
    if (gone.size === 0) return;
    for (const [key, user] of this.verified.entries()) if (gone.has(user)) this.verified.delete(key);
  }
}
