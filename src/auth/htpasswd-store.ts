import { readFileSync } from 'node:fs';
import type { Logger } from '../log/logger.ts';
import { watchFileChanges } from '../config/watch-file.ts';
import { parseHtpasswd, type HtpasswdEntry } from './htpasswd-file.ts';

export interface HtpasswdStoreOptions {
  path: string;
  allowInsecureHashes: boolean;
  watchIntervalMs: number;
  /** Users whose line changed or disappeared on a reload. */
  onUsersChanged?: (users: string[]) => void;
}

/** The users of one htpasswd file, re-read whenever the file changes (nginx reads it per request). */
export class HtpasswdStore {
  private entries = new Map<string, HtpasswdEntry>();
  private stopWatching: (() => void) | undefined;

  constructor(private readonly options: HtpasswdStoreOptions, private readonly logger: Logger) {}

  /** Reads the file now and then follows its changes. */
  start(): void {
    this.reload(true);
    this.stopWatching = watchFileChanges(this.options.path, this.options.watchIntervalMs, () => this.reload(false));
  }

  stop(): void {
    this.stopWatching?.();
  }

  hashOf(user: string): string | undefined {
    return this.entries.get(user)?.hash;
  }

  get userCount(): number {
    return this.entries.size;
  }

  /** At start-up a bad line is skipped; on a reload a file with any bad line keeps the previous users. */
  reload(initial: boolean): boolean {
    const file = this.options.path;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (initial) throw new Error(`cannot read the htpasswd file ${file}: ${code ?? err}`);
      this.logger.error({ file, code }, 'htpasswd file unreadable; keeping the previous users');
      return false;
    }
    const parsed = parseHtpasswd(text, { allowInsecureHashes: this.options.allowInsecureHashes });
    for (const problem of parsed.problems) this.logger.error({ file, line: problem.line }, `htpasswd: ${problem.message}`);
    if (parsed.problems.length && !initial) {
      this.logger.error({ file }, 'htpasswd file has errors; keeping the previous users until it is fixed');
      return false;
    }
    if (parsed.weakUsers.length) this.logger.warn({ file, users: parsed.weakUsers }, 'htpasswd: weak hash formats (MD5/SHA-1); re-set these passwords with "mlgate user passwd NAME"');
    if (parsed.refusedUsers.length) this.logger.error({ file, users: parsed.refusedUsers }, 'htpasswd: plaintext and DES-crypt passwords are refused (auth.allowInsecureHashes: true accepts plaintext; DES-crypt is not supported)');
    if (parsed.entries.size === 0) this.logger.warn({ file }, 'htpasswd file has no usable users; every request will be refused');

    const changed: string[] = [];
    for (const [user, entry] of this.entries) if (parsed.entries.get(user)?.hash !== entry.hash) changed.push(user);
    this.entries = parsed.entries;
    if (!initial) {
      this.logger.info({ file, users: parsed.entries.size }, 'htpasswd file reloaded');
      if (changed.length) this.options.onUsersChanged?.(changed);
    }
    return true;
  }
}
