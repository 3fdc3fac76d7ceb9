import { stat, statSync, type Stats } from 'node:fs';

type Seen = Pick<Stats, 'mtimeMs' | 'ino' | 'size'> | undefined;

function seenOf(stats: Stats | undefined): Seen {
  return stats ? { mtimeMs: stats.mtimeMs, ino: stats.ino, size: stats.size } : undefined;
}

function differs(a: Seen, b: Seen): boolean {
  if (!a || !b) return a !== b;
  return a.mtimeMs !== b.mtimeMs || a.ino !== b.ino || a.size !== b.size;
}

/**
 * Calls onChange when a file is replaced, rewritten, created or removed. Polls stat() rather than
 * using inotify so atomic renames, symlink swaps (certbot) and network filesystems all work. The
 * first stat is taken before this returns (fs.watchFile takes it later, so an edit made right after
 * the file was read could go unnoticed for good).
 */
export function watchFileChanges(path: string, intervalMs: number, onChange: () => void): () => void {
  let seen: Seen;
  try {
    seen = seenOf(statSync(path));
  } catch {
    seen = undefined;
  }
  let polling = false;
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    stat(path, (err, stats) => {
      polling = false;
      const now = err ? undefined : seenOf(stats);
      if (!differs(now, seen)) return;
      seen = now;
      onChange();
    });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
