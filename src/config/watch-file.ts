import { stat, statSync, unwatchFile, watchFile, type Stats } from 'node:fs';

type Seen = Pick<Stats, 'mtimeMs' | 'ino' | 'size'> | undefined;

/** A version of a file as stat() saw it: take it before reading the file, and watch from it. */
export interface FileSnapshot {
  readonly seen: Seen;
}

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
 * Taken before the read, a write landing right after the read still differs from it, and so is
 * seen as a change; taken after the read, that write would be the baseline and never re-read.
 */
export function snapshotFile(path: string): FileSnapshot {
  try {
    return { seen: seenOf(statSync(path)) };
  } catch {
    return { seen: undefined };
  }
}

/**
 * Calls onChange when a file is replaced, rewritten, created or removed. Polls stat() rather than
 * using inotify so atomic renames, symlink swaps (certbot) and network filesystems all work.
 * `since` is the version the caller read (snapshotFile before reading): an edit made after that
 * read, even before this call, counts as a change. Without it, the file as it is now is the
 * baseline, which is right only when nothing was read yet.
 * fs.watchFile takes its first stat some time after it is called and only reports differences from
 * that one, so it would miss whatever changed before; one comparison with `since` after an interval
 * catches that.
 */
export function watchFileChanges(path: string, intervalMs: number, onChange: () => void, since: FileSnapshot = snapshotFile(path)): () => void {
  let seen = since.seen;
  let stopped = false;
  const changedTo = (now: Seen) => {
    // A stat already under way when the watch stopped must not reload a stopped store.
    if (stopped || !differs(now, seen)) return;
    seen = now;
    onChange();
  };
  const listener = (current: Stats) => changedTo(seenOf(current));
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  const first = setTimeout(() => stat(path, (err, stats) => changedTo(err ? undefined : seenOf(stats))), intervalMs);
  first.unref();
  return () => {
    stopped = true;
    clearTimeout(first);
    unwatchFile(path, listener);
  };
}
