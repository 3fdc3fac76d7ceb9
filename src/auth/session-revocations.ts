import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { snapshotFile, watchFileChanges } from '../config/watch-file.ts';
import type { Logger } from '../log/logger.ts';

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

  constructor(private readonly options: SessionRevocationsOptions, private readonly logger: Logger) {}

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
    return write;
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

  private async lock(): Promise<() => Promise<void>> {
    const lockPath = `${this.options.path}.lock`;
    for (;;) {
      try {
        const handle = await open(lockPath, 'wx', 0o600);
        await handle.close();
        return () => unlink(lockPath).catch(() => undefined);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const held = await stat(lockPath).catch(() => undefined);
        if (held && Date.now() - held.mtimeMs > STALE_LOCK_MS) {
          this.logger.warn({ file: lockPath }, 'removing a stale session revocations lock');
          await unlink(lockPath).catch(() => undefined);
        } else {
          await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
        }
      }
    }
  }
}
