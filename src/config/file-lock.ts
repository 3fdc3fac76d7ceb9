// A lock file beside a file that several processes edit (the CLI, gateway workers, replicas sharing a
// directory): created exclusively, removed after the edit, and taken over once older than `staleMs`
// (left by a process that died mid-edit; an edit takes milliseconds).
import { open, rm, stat } from 'node:fs/promises';

interface LockOptions {
  /** A lock older than this is stale. */
  staleMs: number;
  /** Give up after this long with `heldMessage`; undefined: wait as long as it takes. */
  waitMs?: number;
  heldMessage?: string;
  /** Between attempts (default 10-30 ms, random, so waiters do not retry in step). */
  retryMs?: number;
  /** Called before a stale lock is removed. */
  onStale?(): void;
}

/** Takes `path` (the lock file itself); resolves with the function that releases it. */
export async function lockFile(path: string, options: LockOptions): Promise<() => Promise<void>> {
  const deadline = options.waitMs === undefined ? Infinity : Date.now() + options.waitMs;
  for (;;) {
    try {
      await (await open(path, 'wx', 0o600)).close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const held = await stat(path).catch(() => undefined);
      if (held && Date.now() - held.mtimeMs > options.staleMs) {
        options.onStale?.();
        await rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(options.heldMessage ?? `${path} is held by another edit`);
      await new Promise((resolve) => setTimeout(resolve, options.retryMs ?? 10 + Math.random() * 20));
    }
  }
}
