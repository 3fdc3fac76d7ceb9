import { unwatchFile, watchFile, type Stats } from 'node:fs';

/**
 * Calls onChange when a file is replaced, rewritten, created or removed. Polls stat() rather than
 * using inotify so atomic renames, symlink swaps (certbot) and network filesystems all work.
 */
export function watchFileChanges(path: string, intervalMs: number, onChange: () => void): () => void {
  const listener = (current: Stats, previous: Stats) => {
    if (current.mtimeMs !== previous.mtimeMs || current.ino !== previous.ino || current.size !== previous.size) onChange();
  };
  watchFile(path, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(path, listener);
}
