import type { Logger } from '../log/logger.ts';
import { readFileText, ReloadingFile, type FileReading } from '../config/reloading-file.ts';
import { parseHtpasswd, type HtpasswdEntry, type ParsedHtpasswd } from './htpasswd-file.ts';
import { hashCostKey, unmatchableHashLike } from './htpasswd-formats.ts';

interface HtpasswdStoreOptions {
  path: string;
  allowInsecureHashes: boolean;
  watchIntervalMs: number;
  /** Users whose line changed or disappeared on a reload. */
  onUsersChanged?: (users: string[]) => void;
  /** The file may be missing (people sign in through identity providers only): then it has no users. */
  optional?: boolean;
}

const REFUSED = 'htpasswd file has errors; keeping the previous users until it is fixed';

/** The users of one htpasswd file, re-read whenever the file changes (nginx reads it per request). */
export class HtpasswdStore {
  private entries = new Map<string, HtpasswdEntry>();
  private dummy: string | undefined;
  private readonly file: ReloadingFile<ParsedHtpasswd>;

  constructor(private readonly options: HtpasswdStoreOptions, private readonly logger: Logger) {
    this.file = new ReloadingFile(options, { read: (initial) => this.read(initial), refused: REFUSED, apply: (parsed, initial) => this.apply(parsed, initial) }, logger);
  }

  /** Reads the file now and then follows its changes. */
  start(): void {
    this.file.start();
  }

  stop(): void {
    this.file.stop();
  }

  hashOf(user: string): string | undefined {
    return this.entries.get(user)?.hash;
  }

  /**
   * A hash no password matches, of the format and cost of the file's most common entry (recomputed
   * on every reload): checked for unknown user names, so that they take as long as known ones.
   * Undefined while the file has no usable user.
   */
  get unknownUserHash(): string | undefined {
    return this.dummy;
  }

  get userCount(): number {
    return this.entries.size;
  }

  /** At start-up a bad line is skipped; on a reload a file with any bad line keeps the previous users. */
  reload(initial: boolean): boolean {
    return this.file.reload(initial);
  }

  private read(initial: boolean): FileReading<ParsedHtpasswd> | undefined {
    const file = this.options.path;
    const read = readFileText(file);
    // Sign-in through identity providers only: a file that is not there has no users.
    if (read.text === undefined && read.code === 'ENOENT' && this.options.optional) return { value: parseHtpasswd('', { allowInsecureHashes: false }), problems: [] };
    if (read.text === undefined) {
      if (initial) throw new Error(`cannot read the htpasswd file ${file}: ${read.code ?? read.error}`);
      this.logger.error({ file, code: read.code }, 'htpasswd file unreadable; keeping the previous users');
      return undefined;
    }
    const parsed = parseHtpasswd(read.text, { allowInsecureHashes: this.options.allowInsecureHashes });
    return { value: parsed, problems: parsed.problems.map(({ line, message }) => ({ line, message: `htpasswd: ${message}` })) };
  }

  private apply(parsed: ParsedHtpasswd, initial: boolean): void {
    const file = this.options.path;
    if (parsed.weakUsers.length) this.logger.warn({ file, users: parsed.weakUsers }, 'htpasswd: weak hash formats (MD5/SHA-1); re-set these passwords with "mlgate user passwd NAME"');
    if (parsed.refusedUsers.length) this.logger.error({ file, users: parsed.refusedUsers }, 'htpasswd: plaintext and DES-crypt passwords are refused (auth.allowInsecureHashes: true accepts plaintext; DES-crypt is not supported)');
    if (parsed.entries.size === 0 && !this.options.optional) this.logger.warn({ file }, 'htpasswd file has no usable users; every request will be refused');

    const changed: string[] = [];
    for (const [user, entry] of this.entries) if (parsed.entries.get(user)?.hash !== entry.hash) changed.push(user);
    this.entries = parsed.entries;
    this.dummy = mostCommonCostLike(parsed.entries.values());
    if (!initial) {
      this.logger.info({ file, users: parsed.entries.size }, 'htpasswd file reloaded');
      if (changed.length) this.options.onUsersChanged?.(changed);
    }
  }
}

/** An unmatchable hash costing what the most common kind of entry costs (ties: the first in the file). */
function mostCommonCostLike(entries: Iterable<HtpasswdEntry>): string | undefined {
  const kinds = new Map<string, { count: number; hash: string }>();
  for (const { hash } of entries) {
    const key = hashCostKey(hash);
    const kind = kinds.get(key);
    if (kind) kind.count++;
    else kinds.set(key, { count: 1, hash });
  }
  let best: { count: number; hash: string } | undefined;
  for (const kind of kinds.values()) if (!best || kind.count > best.count) best = kind;
  return best && unmatchableHashLike(best.hash);
}
