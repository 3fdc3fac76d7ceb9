import { stat, statSync, unwatchFile, watchFile, type Stats } from 'node:fs';

type Seen = Pick<Stats, 'mtimeMs' | 'ino' | 'size'> | undefined;

/** What identifies a version of the file; undefined when there is none (fs.watchFile reports zeros). */
function seenOf(stats: Stats | undefined): Seen {
  if (!stats || (stats.ino === 0 && stats.mtimeMs === 0)) return undefined;
  return { mtimeMs: stats.mtimeMs, ino: stats.ino, size: stats.size };
}

function differs(a: Seen, b: Seen): boolean {
  if (!a || !b) return a !== b;
  return a.mtimeMs !== b.mtimeMs || a.ino !== b.ino || a.size !== b.size;
}

/**
 * Calls onChange when a file is replaced, rewritten, created or removed. Polls stat() rather than
 * using inotify so atomic renames, symlink swaps (certbot) and network filesystems all work.
 * fs.watchFile takes its first stat some time after it is called, and only reports differences
 * from that one: an edit made in between (right after the caller read the file) would go unnoticed
 * for good. So the version the caller read is taken now, and compared once more after one interval.
 */
export function watchFileChanges(path: string, intervalMs: number, onChange: () => void): () => void {
  let seen: Seen;
  try {
    seen = seenOf(statSync(path));
  } catch {
    seen = undefined;
  }
  const changedTo = (now: Seen) => {
    if (!differs(now, seen)) return;
    seen = now;
    onChange();
  };
  const listener = (current: Stats) => changedTo(seenOf(current));
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  const first = setTimeout(() => stat(path, (err, stats) => changedTo(err ? undefined : seenOf(stats))), intervalMs);
  first.unref();
  return () => {
    clearTimeout(first);
    unwatchFile(path, listener);
  };
}
