// A file the gateway holds in memory and re-reads when it changes (htpasswd users, API tokens, the
// policy, the session key). An edit that cannot be used keeps the state in force: a half-saved or
// mistyped file must neither lock everyone out nor widen access, and the log names the file and line
// to fix. What the file means, and what "in force" is, stays with each store.
import { readFileSync } from 'node:fs';
import type { Logger } from '../log/logger.ts';
import { snapshotFile, watchFileChanges, type FileSnapshot } from './watch-file.ts';

/** Something wrong in the file, on its line when that is known. */
export interface FileProblem {
  message: string;
  line?: number;
}

/** What one reading of the file holds. */
export interface FileReading<T> {
  value: T;
  /** At start-up only what they name is left out; on a reload any of them keeps the state in force. */
  problems?: readonly FileProblem[];
}

/** Which file, and how often its stat() is polled. */
interface WatchedFile {
  path: string;
  watchIntervalMs: number;
}

interface ReloadingFileOptions<T> {
  /**
   * Reads the file: what it holds, or undefined to keep the state in force (having logged why).
   * Throwing at start-up (initial) stops it; on a reload nothing may throw.
   */
  read(initial: boolean): FileReading<T> | undefined;
  /** Logged at error, after the problems, when a reload with problems is refused (say what is kept). */
  refused?: string;
  /** Puts a reading in force; `initial` for the one made at start-up. */
  apply(value: T, initial: boolean): void;
}

export class ReloadingFile<T> {
  private stopWatching: (() => void) | undefined;
  /** The file's version as it was just before the last read: watching starts from it. */
  private lastRead: FileSnapshot | undefined;

  constructor(private readonly watched: WatchedFile, private readonly options: ReloadingFileOptions<T>, private readonly logger?: Logger) {}

  /** Reads the file now, then follows its changes. */
  start(): void {
    this.reload(true);
    this.watch();
  }

  /**
   * Follows the file's changes since the last reload(), however long ago that was (a store may read
   * the file, do other start-up work, then watch): an edit in between is a change, not the baseline.
   */
  watch(): void {
    this.stopWatching ??= watchFileChanges(this.watched.path, this.watched.watchIntervalMs, () => this.reload(false), this.lastRead);
  }

  stop(): void {
    this.stopWatching?.();
    this.stopWatching = undefined;
  }

  /** True when a new reading is in force. */
  reload(initial: boolean): boolean {
    // Before the read, so that a write right after it differs from what the watch compares with.
    this.lastRead = snapshotFile(this.watched.path);
    const reading = this.options.read(initial);
    if (!reading) return false;
    const file = this.watched.path;
    const problems = reading.problems ?? [];
    for (const { message, line } of problems) this.logger?.error(line === undefined ? { file } : { file, line }, message);
    if (problems.length && !initial) {
      this.logger?.error({ file }, this.options.refused ?? 'file has errors; keeping the previous state until it is fixed');
      return false;
    }
    this.options.apply(reading.value, initial);
    return true;
  }
}

/** A file's text, or why it could not be read (the errno code: ENOENT, EACCES, ...). */
type FileText = { text: string } | { text?: undefined; code: string | undefined; error: unknown };

export function readFileText(path: string): FileText {
  try {
    return { text: readFileSync(path, 'utf8') };
  } catch (error) {
    return { code: (error as NodeJS.ErrnoException).code, error };
  }
}
