import { lockFile } from '../config/file-lock.ts';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { snapshotFile, watchFileChanges } from '../config/watch-file.ts';
import type { Logger } from '../log/logger.ts';
import type { SharedState } from '../state/redis-state.ts';
import { primaryChannel, type PrimaryChannel } from '../state/worker-state.ts';

interface SessionRevocationsOptions {
  /** JSON file of refused session ids, shared by every gateway that uses the same config directory. */
  path: string;
  watchIntervalMs: number;
}

/** A lock older than this was left by a process that died while writing; it is taken over. */
const STALE_LOCK_MS = 10_000;
const LOCK_RETRY_MS = 15;

interface RevocationsFile {
  /** session id -> the time (seconds since the epoch) after which no cookie of that session is valid anyway */
  revoked: Record<string, number>;
}

/**
 * Session ids refused after sign-out, until the session would have expired on its own. Checking one is
 * a Map lookup; the file is written atomically (temp file, then rename, mode 0600) under a lock file so
 * that gateways sharing the directory never lose each other's entries, and re-read when it changes.
 */
export class SessionRevocations {
  private readonly revoked = new Map<string, number>();
  private stopWatching: (() => void) | undefined;
  private writing: Promise<void> = Promise.resolve();
  /**
   * With `workers` above 1 and no Redis: the file is re-read only every watch interval, so a sign-out
   * also goes through the primary to every worker before it is answered (src/state/worker-state.ts).
   */
  private readonly peers: PrimaryChannel | undefined;

  /**
   * With state.redis, a sign-out is also written to Redis (expiring with the session) before it is
   * answered, and `sharedCheck` asks Redis on every cookie request: no cached "not signed out", so the
   * next request on any gateway after a sign-out returns is refused. Redis unreachable: refused.
   */
  constructor(private readonly options: SessionRevocationsOptions, private readonly logger: Logger, private readonly shared?: SharedState) {
    this.peers = shared ? undefined : primaryChannel();
    this.peers?.subscribeSessions({ signedOut: (entries) => this.merge(new Map(entries)) });
  }

  /** Reads the file now (a missing file is an empty list) and follows its changes. */
  start(): void {
    mkdirSync(dirname(this.options.path), { recursive: true, mode: 0o700 });
    // Watched from the version read: a sign-out another gateway writes just after the read is news.
    const read = snapshotFile(this.options.path);
    this.merge(this.readNow());
    this.stopWatching = watchFileChanges(this.options.path, this.options.watchIntervalMs, () => {
      void this.readLater().then((entries) => this.merge(entries));
    }, read);
  }

  stop(): void {
    this.stopWatching?.();
  }

  has(sessionId: string): boolean {
    return this.revoked.has(sessionId);
  }

  get size(): number {
    return this.revoked.size;
  }

  /**
   * Refuses the session id from now on in this process, and in every process sharing the file once
   * written. Resolves when the file holds it; rejects if it could not be written (the id stays refused
   * here regardless).
   */
  revoke(sessionId: string, expiresAtSeconds: number): Promise<void> {
    this.revoked.set(sessionId, Math.max(expiresAtSeconds, this.revoked.get(sessionId) ?? 0));
    const write = this.writing.then(() => this.persist());
    this.writing = write.catch(() => undefined);
    const peers = this.peers;
    if (peers) {
      const told = peers.signedOut(sessionId, expiresAtSeconds).then((everyWorker) => {
        if (!everyWorker) this.logger.warn({ file: this.options.path }, 'a sign-out did not reach every worker process through the primary in time; the others refuse it once they re-read the revocations file');
      });
      return Promise.all([write, told]).then(() => undefined);
    }
    const shared = this.shared;
    if (!shared) return write;
    const ttlMs = Math.max(1000, expiresAtSeconds * 1000 - Date.now());
    const written = shared.client.set(shared.key('session-revoked', sessionId), '1', 'PX', ttlMs).then(() => undefined, (err: unknown) => {
      shared.failed(err);
      throw new Error(`the shared state store (Redis) is unreachable, so other gateways may accept this session again once it is back: ${shared.problem}`);
    });
    return Promise.all([write, written]).then(() => undefined);
  }

  /**
   * Without Redis: undefined (`has` says all). With it: resolves to why the session is refused (signed
   * out on another gateway, or Redis unreachable: cookie sessions fail closed), or undefined if it is not.
   */
  sharedCheck(sessionId: string): Promise<{ reason: string; unavailable?: boolean } | undefined> | undefined {
    const shared = this.shared;
    if (!shared) return undefined;
    if (!shared.isReachable) return Promise.resolve(unreachable(shared));
    return shared.client.exists(shared.key('session-revoked', sessionId)).then((found) => {
      if (!found) return undefined;
      this.revoked.set(sessionId, Math.ceil(Date.now() / 1000) + 60);
      return { reason: 'session signed out' };
    }, (err: unknown) => {
      shared.failed(err);
      return unreachable(shared);
    });
  }

  /** Entries only ever join: an id is forgotten once expired, never because another copy lacked it. */
  private merge(entries: Map<string, number>): void {
    const now = Date.now() / 1000;
    for (const [id, expiresAt] of entries) if (expiresAt > now) this.revoked.set(id, Math.max(expiresAt, this.revoked.get(id) ?? 0));
    for (const [id, expiresAt] of this.revoked) if (expiresAt <= now) this.revoked.delete(id);
  }

  private readNow(): Map<string, number> {
    try {
      return this.parse(readFileSync(this.options.path, 'utf8'));
    } catch (err) {
      return this.unreadable(err);
    }
  }

  private async readLater(): Promise<Map<string, number>> {
    try {
      return this.parse(await readFile(this.options.path, 'utf8'));
    } catch (err) {
      return this.unreadable(err);
    }
  }

  private unreadable(err: unknown): Map<string, number> {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') this.logger.error({ file: this.options.path, code, err: code ? undefined : err }, 'session revocations file unreadable; keeping the sessions ended so far');
    return new Map();
  }

  private parse(text: string): Map<string, number> {
    const parsed = JSON.parse(text) as Partial<RevocationsFile>;
    const entries = new Map<string, number>();
    for (const [id, expiresAt] of Object.entries(parsed.revoked ?? {})) if (typeof expiresAt === 'number') entries.set(id, expiresAt);
    return entries;
  }

  /** Read, merge, prune, write to a temp file and rename over: all under the lock file. */
  private async persist(): Promise<void> {
    const release = await this.lock();
    try {
      this.merge(await this.readLater());
      const revoked = Object.fromEntries([...this.revoked].sort((a, b) => a[1] - b[1]));
      const temp = `${this.options.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await writeFile(temp, JSON.stringify({ revoked } satisfies RevocationsFile, null, 1) + '\n', { mode: 0o600 });
        await rename(temp, this.options.path);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
    } finally {
      await release();
    }
  }

  private lock(): Promise<() => Promise<void>> {
    const lockPath = `${this.options.path}.lock`;
    return lockFile(lockPath, {
      staleMs: STALE_LOCK_MS, retryMs: LOCK_RETRY_MS,
      onStale: () => this.logger.warn({ file: lockPath }, 'removing a stale session revocations lock'),
    });
  }
}

function unreachable(shared: SharedState): { reason: string; unavailable: true } {
  return { unavailable: true, reason: `the shared state store (Redis) is unreachable, so sign-outs on other gateways cannot be checked; sign in again later, or use HTTP Basic or a token (${shared.problem})` };
}
