// Keeping identity-provider users' groups current (docs/oidc.md, "Keeping groups current"). When a
// provider hands out a refresh token at sign-in, it is kept server-side, one per (provider, user),
// encrypted (AES-256-GCM, key derived from the session key) in oidc.refreshTokensFile. At each
// provider's refreshInterval it is used: a provider that refuses (invalid_grant), or a user who no
// longer passes requiredGroups / allowedDomains, ends that user's sessions from the provider and
// removes their tokens; changed groups are written onto their tokens (and sessions that lost a
// group end). A provider that does not answer changes nothing: the next interval tries again.
//
// A rotated refresh token works once. One host: one process refreshes (gateway.ts). Several gateways
// with state.redis: each refreshes, but a user is refreshed by one at a time (a Redis lock with an
// expiry, SET NX PX), and the entry is read again once the lock is held, so a token another gateway
// has just spent is never spent twice.
import { lockFile } from '../config/file-lock.ts';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log/logger.ts';
import type { SharedState } from '../state/redis-state.ts';
import type { TokenStore } from './api-tokens.ts';
import { writeFileAtomic } from './htpasswd-file.ts';
import type { OidcProvider, RefreshResult } from './oidc.ts';
import type { Session } from './session.ts';

/** One user's refresh token from one provider, as the file holds it. Times are ISO 8601. */
interface RefreshEntry {
  provider: string;
  user: string;
  /** The provider's `sub` at sign-in: a refresh answering for anyone else is a refusal. */
  subject: string;
  groups: string[];
  /** "v1." + base64url(iv) + "." + base64url(ciphertext) + "." + base64url(tag). */
  token: string;
  /** Dropped after this: the refresh token's own lifetime, or sign-in + session.absoluteTimeout + tokens.externalMaxTtl. */
  expires: string;
  signedIn: string;
  refreshed?: string;
  /** Sessions signed in with this provider (newest last), ended when the user is dropped; `until` in seconds. */
  sessions: { id: string; signedInAt: number; until: number }[];
}

interface RefreshFile {
  version: 1;
  entries: RefreshEntry[];
}

interface ProviderRefreshOptions {
  path: string;
  providers: ReadonlyMap<string, OidcProvider>;
  /** The AES-256-GCM key (32 bytes), asked each time: it follows the session key. */
  key(): Buffer;
  /** Ends one session everywhere (as sign-out does). */
  revokeSession(session: Session): Promise<void>;
  /** Where API tokens are kept (tokens.file or Redis), when tokens are on. */
  tokens?: TokenStore;
  /** Called after the tokens changed, so this process re-reads tokens.file at once. */
  tokensChanged?(): void;
  /** state.redis: users are refreshed under a lock there, so that several gateways may run refreshes. */
  shared?: SharedState;
  absoluteTimeoutMs: number;
  externalMaxTtlMs: number;
  logger: Logger;
}

/** Sessions remembered per entry (the newest): a user signing in more often than this within session.absoluteTimeout is unusual. */
const MAX_SESSIONS_PER_ENTRY = 100;
/** Seconds before the refresh token's stated expiry (refresh_expires_in) that its entry is dropped. */
const EXPIRY_MARGIN_SECONDS = 60;
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 5_000;
/** Held no longer than a refresh can take: the provider's answer (its timeout) and the edits after it. */
const refreshLockMs = (provider: OidcProvider) => 60_000 + 4 * provider.settings.timeout;

// Deletes the lock only if it is still this gateway's (it may have expired and been taken since).
const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

export class ProviderRefresh {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(private readonly options: ProviderRefreshOptions) {}

  /** A sign-in that came with a refresh token: the newest one for (provider, user) wins. */
  remember(signIn: { provider: string; user: string; subject: string; groups: readonly string[]; refreshToken: string; refreshExpiresIn?: number; session: Session }): Promise<void> {
    const { provider, user, subject, groups, refreshToken, refreshExpiresIn, session } = signIn;
    return this.edit((entries) => {
      const index = entries.findIndex((entry) => entry.provider === provider && entry.user === user);
      const before = index === -1 ? undefined : entries[index]!;
      const now = Date.now();
      const until = session.signedInAt + Math.ceil(this.options.absoluteTimeoutMs / 1000);
      const entry: RefreshEntry = {
        provider, user, subject, groups: [...groups],
        token: this.seal(provider, user, refreshToken),
        expires: new Date(this.expiry(now, now, refreshExpiresIn)).toISOString(),
        signedIn: new Date(now).toISOString(),
        sessions: [...(before?.sessions ?? []), { id: session.id, signedInAt: session.signedInAt, until }].slice(-MAX_SESSIONS_PER_ENTRY),
      };
      if (before) entries[index] = entry;
      else entries.push(entry);
    });
  }

  /** Refreshes each provider's users at its refreshInterval (one gateway process does this: see gateway.ts). */
  start(): void {
    for (const provider of this.options.providers.values()) {
      this.timers.push(setInterval(() => void this.refreshProvider(provider), provider.settings.refreshInterval).unref());
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all(this.running.values());
  }

  /** One round for one provider; a round still running when the next is due is not doubled. */
  private refreshProvider(provider: OidcProvider): Promise<void> {
    const current = this.running.get(provider.name);
    if (current) return current;
    const round = this.round(provider).catch((err: unknown) => {
      this.options.logger.error({ provider: provider.name, file: this.options.path, err }, 'refreshing users\' groups failed; trying again at the next interval');
    }).finally(() => this.running.delete(provider.name));
    this.running.set(provider.name, round);
    return round;
  }

  private async round(provider: OidcProvider): Promise<void> {
    const now = Date.now();
    const entries = (await this.read()).filter((entry) => entry.provider === provider.name && Date.parse(entry.expires) > now);
    const { shared } = this.options;
    if (shared && entries.length && !shared.isReachable) {
      // Without the lock another gateway could spend the same refresh token: the user would look dropped.
      this.options.logger.warn({ provider: provider.name, notRefreshed: entries.length, problem: shared.problem }, "cannot refresh users' groups: the shared state store (Redis) is unreachable; keeping their sessions and tokens, trying again at the next interval");
      return;
    }
    for (const [done, entry] of entries.entries()) {
      if (this.stopped) return;
      const result = shared ? await this.refreshLocked(shared, provider, entry) : await this.refreshOne(provider, entry);
      if (result?.kind === 'unreachable' && !result.refreshToken) {
        // Down (or its token endpoint failing): the others would only wait for the same timeout.
        this.options.logger.warn({ provider: provider.name, detail: result.detail, notRefreshed: entries.length - done }, "cannot refresh users' groups: the identity provider did not answer usably; keeping their sessions and tokens, trying again at the next interval");
        return;
      }
    }
  }

  /**
   * refreshOne under the user's Redis lock, on the entry as it is once the lock is held. Undefined:
   * another gateway holds the lock, or has refreshed the user since this round read the file.
   */
  private async refreshLocked(shared: SharedState, provider: OidcProvider, read: RefreshEntry): Promise<RefreshResult | undefined> {
    const key = shared.key('oidc-refresh', provider.name, read.user);
    const owner = randomBytes(16).toString('hex');
    try {
      if (await shared.client.set(key, owner, 'PX', refreshLockMs(provider), 'NX') !== 'OK') return undefined;
    } catch (err) {
      shared.failed(err);
      return undefined;
    }
    try {
      const current = (await this.read()).find((entry) => entry.provider === read.provider && entry.user === read.user);
      if (!current || current.token !== read.token) return undefined;
      return await this.refreshOne(provider, current);
    } finally {
      await shared.client.eval(RELEASE, 1, key, owner).catch((err: unknown) => shared.failed(err));
    }
  }

  /** The provider's answer for this entry, or undefined when there was nothing to ask. */
  private async refreshOne(provider: OidcProvider, entry: RefreshEntry): Promise<RefreshResult | undefined> {
    const { logger } = this.options;
    const who = { provider: provider.name, user: entry.user };
    let refreshToken: string;
    try {
      refreshToken = this.open(entry);
    } catch {
      logger.warn(who, 'cannot decrypt a stored refresh token (the session key changed?); dropping it: the user\'s groups are kept as they are until they sign in again');
      await this.replace(entry, () => undefined);
      return undefined;
    }
    const result: RefreshResult = await provider.refresh(refreshToken, entry.subject);
    if (result.kind === 'unreachable') {
      if (result.refreshToken) {
        // The refresh worked but its answer named no groups: keep the rotated token, change nothing else.
        logger.warn({ ...who, detail: result.detail }, "cannot refresh a user's groups: the identity provider did not answer usably; keeping their sessions and tokens, trying again at the next interval");
        await this.replace(entry, (current) => ({ ...current, token: this.seal(current.provider, current.user, result.refreshToken!) }));
      }
      return result;
    }
    if (result.kind === 'refused' || result.user !== entry.user) {
      const detail = result.kind === 'refused' ? result.detail : `the provider now names them ${result.user}`;
      await this.replace(entry, async (current) => {
        // Both are tried, whichever fails.
        const [sessions, tokens] = await Promise.allSettled([this.endSessions(current, current.sessions), this.editTokens(current, undefined)]);
        if (sessions.status === 'fulfilled' && tokens.status === 'fulfilled') {
          logger.warn({ ...who, detail, sessions: current.sessions.length, tokens: tokens.value }, 'identity provider dropped a user: their sessions from it ended and their tokens were removed');
          return undefined;
        }
        const err = sessions.status === 'rejected' ? sessions.reason : (tokens as PromiseRejectedResult).reason;
        // The entry stays: the next interval asks again and, refused again, ends what is left.
        logger.error({ ...who, detail, err }, 'identity provider dropped a user, but their tokens or sessions could not all be ended; trying again at the next interval');
        return current;
      });
      return result;
    }
    const lost = entry.groups.filter((group) => !result.groups.includes(group));
    const gained = result.groups.filter((group) => !entry.groups.includes(group));
    await this.replace(entry, async (current) => {
      const now = Date.now();
      const next: RefreshEntry = {
        ...current,
        groups: result.groups,
        token: result.refreshToken ? this.seal(current.provider, current.user, result.refreshToken) : current.token,
        refreshed: new Date(now).toISOString(),
        expires: new Date(this.expiry(now, Date.parse(current.signedIn), result.refreshExpiresIn)).toISOString(),
      };
      if (lost.length || gained.length) {
        try {
          const tokens = await this.editTokens(current, result.groups);
          // A session cookie carries the groups it was signed in with: one that lost a group ends (the
          // user signs in again and gets the new ones); gaining one only waits for the next sign-in.
          if (lost.length) {
            await this.endSessions(current, current.sessions);
            next.sessions = [];
          }
          logger.info({ ...who, lost, gained, tokens, sessionsEnded: lost.length ? current.sessions.length : 0 }, "identity provider changed a user's groups");
        } catch (err) {
          // The rotated refresh token is kept whatever happens (the old one is spent); the old
          // groups too, so that the next interval makes the change again.
          logger.error({ ...who, lost, gained, err }, "could not apply a change of a user's groups to their tokens and sessions; trying again at the next interval");
          return { ...next, groups: current.groups, sessions: current.sessions };
        }
      }
      return next;
    });
    return result;
  }

  private async editTokens(entry: RefreshEntry, groups: readonly string[] | undefined): Promise<number> {
    if (this.options.tokens === undefined) return 0;
    const count = await this.options.tokens.editProviderUserTokens(entry.provider, entry.user, groups);
    if (count) this.options.tokensChanged?.();
    return count;
  }

  private async endSessions(entry: RefreshEntry, sessions: RefreshEntry['sessions']): Promise<void> {
    const now = Date.now() / 1000;
    for (const { id, signedInAt, until } of sessions) {
      if (until <= now) continue;
      await this.options.revokeSession({ user: entry.user, id, issuedAt: signedInAt, signedInAt, expiresAt: until, source: entry.provider });
    }
  }

  /**
   * Replaces the entry read earlier (undefined: drops it), unless a sign-in replaced it meanwhile (a
   * newer token, checked at that sign-in, wins over what this refresh learned from the older one).
   */
  private replace(read: RefreshEntry, change: (current: RefreshEntry) => RefreshEntry | undefined | Promise<RefreshEntry | undefined>): Promise<void> {
    return this.edit(async (entries) => {
      const index = entries.findIndex((entry) => entry.provider === read.provider && entry.user === read.user);
      if (index === -1 || entries[index]!.token !== read.token) return;
      const next = await change(entries[index]!);
      if (next) entries[index] = next;
      else entries.splice(index, 1);
    });
  }

  private expiry(now: number, signedIn: number, refreshExpiresIn: number | undefined): number {
    const longest = signedIn + this.options.absoluteTimeoutMs + this.options.externalMaxTtlMs;
    // A margin before the provider's own expiry: a refresh token that lapsed answers invalid_grant,
    // which would read as the provider dropping the user; the entry is dropped quietly first instead.
    return Math.min(longest, refreshExpiresIn !== undefined ? now + Math.max(0, refreshExpiresIn - EXPIRY_MARGIN_SECONDS) * 1000 : longest);
  }

  private seal(provider: string, user: string, token: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.options.key(), iv);
    cipher.setAAD(Buffer.from(`${provider}\0${user}`)); // an entry cannot be moved to another user
    const sealed = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), sealed.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  private open(entry: RefreshEntry): string {
    const [version, iv, sealed, tag] = entry.token.split('.');
    if (version !== 'v1' || iv === undefined || sealed === undefined || tag === undefined) throw new Error('not a sealed token');
    const decipher = createDecipheriv('aes-256-gcm', this.options.key(), Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(`${entry.provider}\0${entry.user}`));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(sealed, 'base64url')), decipher.final()]).toString('utf8');
  }

  private async read(): Promise<RefreshEntry[]> {
    let text: string;
    try {
      text = await readFile(this.options.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const parsed = JSON.parse(text) as Partial<RefreshFile>;
    return (Array.isArray(parsed.entries) ? parsed.entries : []).filter(isEntry);
  }

  /** One read-modify-write of the file under `<file>.lock`; expired entries and sessions are pruned. */
  private async edit(change: (entries: RefreshEntry[]) => void | Promise<void>): Promise<void> {
    const { path } = this.options;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const release = await lockFile(`${path}.lock`, { staleMs: STALE_LOCK_MS, waitMs: LOCK_WAIT_MS, heldMessage: `${path}.lock is held by another edit of the refresh tokens file; if no gateway is editing it, remove it` });
    try {
      const entries = await this.read();
      await change(entries);
      const now = Date.now();
      const kept = entries.filter((entry) => Date.parse(entry.expires) > now).map((entry) => ({ ...entry, sessions: entry.sessions.filter((session) => session.until * 1000 > now) }));
      await writeFileAtomic(path, Buffer.from(`${JSON.stringify({ version: 1, entries: kept } satisfies RefreshFile, null, 1)}\n`), existsSync(path));
    } finally {
      await release();
    }
  }
}

function isEntry(value: unknown): value is RefreshEntry {
  const entry = value as Partial<RefreshEntry> | null;
  return typeof entry === 'object' && entry !== null && typeof entry.provider === 'string' && typeof entry.user === 'string' && typeof entry.subject === 'string'
    && Array.isArray(entry.groups) && typeof entry.token === 'string' && typeof entry.expires === 'string' && typeof entry.signedIn === 'string' && Array.isArray(entry.sessions);
}

