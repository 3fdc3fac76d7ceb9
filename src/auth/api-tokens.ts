// API tokens issued by mlgate (`mlgate token issue`), for CI jobs and scripts that set
// MLFLOW_TRACKING_TOKEN. A token is "mlg_" + 43 base62 characters (32 random bytes) + a 6-character
// checksum, so secret scanners can find leaked ones and typos are told apart from revoked tokens.
// Only its SHA-256 is stored: for a 256-bit random secret a slow hash adds nothing, and a lookup by
// hash keeps the request path at one hash and one map lookup (with state.redis: one hash and one
// Redis GET, src/state/redis-tokens.ts).
import { lockFile } from '../config/file-lock.ts';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { readFileText, ReloadingFile, type FileReading } from '../config/reloading-file.ts';
import type { Logger } from '../log/logger.ts';
import { writeFileAtomic } from './htpasswd-file.ts';
import type { BearerVerdict, Principal } from './principal.ts';
import type { SharedState } from '../state/redis-state.ts';

export const TOKEN_PREFIX = 'mlg_';
const SECRET_CHARS = 43; // 62^43 > 2^256
const CHECKSUM_CHARS = 6; // 62^6 > 2^32
const TOKEN_SHAPE = new RegExp(`^${TOKEN_PREFIX}[0-9A-Za-z]{${SECRET_CHARS + CHECKSUM_CHARS}}$`);
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const HASH = /^sha256:[0-9a-f]{64}$/;
const ID = /^[0-9a-f]{12}$/;
const MAX_NAME_LENGTH = 100;

/** One line of `mlgate token list`; what the tokens file holds for each token. */
export interface TokenRecord {
  id: string;
  user: string;
  name: string;
  /** "sha256:" + hex of the token. */
  hash: string;
  /** ISO 8601. */
  created: string;
  /** ISO 8601, or null for a token that does not expire. */
  expires: string | null;
  /**
   * The owner's groups as their principal had them when the token was made on /-/tokens (a JWT's or
   * an identity provider's groups; htpasswd users have none there, their policy groups apply). Absent
   * in tokens from `mlgate token issue` and older files: no groups.
   */
  groups?: string[];
  /** Made by a user an identity provider vouched for (not in the htpasswd file). Absent: false. */
  external?: boolean;
  /** The identity provider that vouched for the owner (Principal.source), when one did. */
  source?: string;
}

function base62(bytes: Buffer, length: number): string {
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let text = '';
  while (n > 0n) {
    text = BASE62[Number(n % 62n)]! + text;
    n /= 62n;
  }
  return text.padStart(length, '0');
}

function checksum(secret: string): string {
  return base62(createHash('sha256').update(secret).digest().subarray(0, 4), CHECKSUM_CHARS);
}

function hashToken(token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex')}`;
}

/** A new token and the record kept of it (its hash, never the token), for either store. */
export function newToken(id: string, options: IssueOptions, now: number): { token: string; record: TokenRecord } {
  const token = generateToken();
  const record: TokenRecord = {
    id,
    user: options.user,
    name: options.name,
    hash: hashToken(token),
    created: new Date(now).toISOString(),
    expires: options.expiresAt !== undefined ? new Date(options.expiresAt).toISOString() : options.ttlMs === undefined ? null : new Date(now + options.ttlMs).toISOString(),
    ...(options.groups !== undefined ? { groups: [...options.groups] } : {}),
    ...(options.external !== undefined ? { external: options.external } : {}),
    ...(options.source !== undefined ? { source: options.source } : {}),
  };
  return { token, record };
}

export function generateToken(): string {
  const secret = base62(randomBytes(32), SECRET_CHARS);
  return TOKEN_PREFIX + secret + checksum(secret);
}

/** Why a string starting with mlg_ cannot be an mlgate token (cut short, mistyped), or undefined. */
function tokenFormatProblem(token: string): string | undefined {
  if (!TOKEN_SHAPE.test(token)) return `malformed mlgate token: expected ${TOKEN_PREFIX} and ${SECRET_CHARS + CHECKSUM_CHARS} letters and digits (was it cut short?)`;
  const secret = token.slice(TOKEN_PREFIX.length, TOKEN_PREFIX.length + SECRET_CHARS);
  if (checksum(secret) !== token.slice(-CHECKSUM_CHARS)) return 'malformed mlgate token: its checksum does not match (was it mistyped?)';
  return undefined;
}

export function tokenNameProblem(name: string): string | undefined {
  if (name.length > MAX_NAME_LENGTH) return `the token name is longer than ${MAX_NAME_LENGTH} characters`;
  if (/\p{Cc}/u.test(name)) return 'the token name contains a control character';
  return undefined;
}

/** config/tokens.json -> config/tokens.last-used.json: written by the gateway, never by the CLI. */
function lastUsedPath(tokensFile: string): string {
  return tokensFile.endsWith('.json') ? `${tokensFile.slice(0, -5)}.last-used.json` : `${tokensFile}.last-used.json`;
}

// ---- the file -------------------------------------------------------------------------------

/** Every token a store holds. */
export interface TokenListing {
  records: TokenRecord[];
  /** Each names the entry ("tokens[2]") and what is wrong; never quotes a hash. */
  problems: string[];
}

function parseTokenFile(text: string): TokenListing {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { records: [], problems: [`not valid JSON (${(err as Error).message})`] };
  }
  if (!isRecord(data) || data.version !== 1 || !Array.isArray(data.tokens)) {
    return { records: [], problems: ['expected {"version": 1, "tokens": [...]}'] };
  }
  const records: TokenRecord[] = [];
  const problems: string[] = [];
  const ids = new Set<string>();
  data.tokens.forEach((entry: unknown, i) => {
    const problem = tokenRecordProblem(entry);
    if (problem) return void problems.push(`tokens[${i}]: ${problem}`);
    const record = entry as TokenRecord;
    if (ids.has(record.id)) return void problems.push(`tokens[${i}]: id ${record.id} appears twice`);
    ids.add(record.id);
    records.push({
      id: record.id, user: record.user, name: record.name, hash: record.hash, created: record.created, expires: record.expires,
      ...(record.groups !== undefined ? { groups: [...record.groups] } : {}),
      ...(record.external !== undefined ? { external: record.external } : {}),
      ...(record.source !== undefined ? { source: record.source } : {}),
    });
  });
  return { records, problems };
}

/** What is wrong with one stored token record, or undefined. */
export function tokenRecordProblem(entry: unknown): string | undefined {
  if (!isRecord(entry)) return 'not an object';
  if (typeof entry.id !== 'string' || !ID.test(entry.id)) return 'id must be 12 hex digits';
  if (typeof entry.user !== 'string' || entry.user === '') return 'user must be a user name';
  if (typeof entry.name !== 'string') return 'name must be text';
  if (typeof entry.hash !== 'string' || !HASH.test(entry.hash)) return 'hash must be "sha256:" and 64 hex digits';
  if (typeof entry.created !== 'string' || Number.isNaN(Date.parse(entry.created))) return 'created must be an ISO 8601 time';
  if (entry.expires !== null && (typeof entry.expires !== 'string' || Number.isNaN(Date.parse(entry.expires)))) return 'expires must be an ISO 8601 time or null';
  if (entry.groups !== undefined && (!Array.isArray(entry.groups) || !entry.groups.every((group) => typeof group === 'string'))) return 'groups must be a list of group names';
  if (entry.external !== undefined && typeof entry.external !== 'boolean') return 'external must be true or false';
  if (entry.source !== undefined && typeof entry.source !== 'string') return 'source must be text';
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A missing file holds no tokens. */
export async function readTokenFile(path: string): Promise<TokenListing> {
  try {
    return parseTokenFile(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], problems: [] };
    throw err;
  }
}

/** Rewrites the file atomically (temp file, rename), mode 0600 when new. */
async function writeTokenFile(path: string, records: readonly TokenRecord[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, Buffer.from(`${JSON.stringify({ version: 1, tokens: records }, null, 2)}\n`), existsSync(path));
}

/** Reads the file for an edit; an edit of a file with problems could drop entries, so it is refused. */
async function readForEdit(path: string): Promise<TokenRecord[]> {
  const { records, problems } = await readTokenFile(path);
  if (problems.length) throw new Error(`${path} has problems; fix them first, nothing was changed:\n  ${problems.join('\n  ')}`);
  return records;
}

export interface IssueOptions {
  user: string;
  name: string;
  /** undefined: never expires. */
  ttlMs: number | undefined;
  /** An exact expiry (ms since the epoch) instead of ttlMs. */
  expiresAt?: number;
  /** Recorded only when given (tokens made on /-/tokens). */
  groups?: readonly string[];
  external?: boolean;
  source?: string;
  /**
   * Refuses (TokenLimitError, file untouched) when the user already has this many unexpired
   * tokens; the user's expired tokens are dropped from the file in the same write.
   */
  maxPerUser?: number;
}

/** The user holds `live` unexpired tokens, the most allowed. */
export class TokenLimitError extends Error {
  constructor(readonly user: string, readonly live: number) {
    super(`user ${user} has ${live} tokens that have not expired, the most allowed (tokens.maxPerUser); revoke one first`);
  }
}

/** A lock older than this was left by a process that died mid-edit (an edit takes milliseconds). */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 5_000;

/**
 * Runs one read-modify-write of the tokens file holding `<file>.lock` (created exclusively), so the
 * CLI and gateways sharing the file (workers, /-/tokens) never write over each other's edits.
 */
async function whileLocked<T>(path: string, edit: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  await mkdir(dirname(path), { recursive: true });
  const release = await lockFile(lock, {
    staleMs: STALE_LOCK_MS, waitMs: LOCK_WAIT_MS,
    heldMessage: `${lock} is held by another edit of the tokens file; if no mlgate command or gateway is editing it, remove it. Nothing was changed`,
  });
  try {
    return await edit();
  } finally {
    await release();
  }
}

export function issueToken(path: string, options: IssueOptions): Promise<{ token: string; record: TokenRecord }> {
  return whileLocked(path, () => issueLocked(path, options));
}

async function issueLocked(path: string, options: IssueOptions): Promise<{ token: string; record: TokenRecord }> {
  let records = await readForEdit(path);
  const now = Date.now();
  if (options.maxPerUser !== undefined) {
    const expired = (record: TokenRecord) => record.user === options.user && record.expires !== null && Date.parse(record.expires) <= now;
    records = records.filter((record) => !expired(record));
    const live = records.filter((record) => record.user === options.user).length;
    if (live >= options.maxPerUser) throw new TokenLimitError(options.user, live);
  }
  const ids = new Set(records.map((record) => record.id));
  let id: string;
  do id = randomBytes(6).toString('hex'); while (ids.has(id));
  const { token, record } = newToken(id, options, now);
  await writeTokenFile(path, [...records, record]);
  return { token, record };
}

/**
 * The revoked token's record, or undefined (file untouched) if no token has that id (or none that
 * `may` allows: a user revoking their own).
 */
function revokeToken(path: string, id: string, may: (record: TokenRecord) => boolean = () => true): Promise<TokenRecord | undefined> {
  return whileLocked(path, async () => {
    const records = await readForEdit(path);
    const revoked = records.find((record) => record.id === id && may(record));
    if (revoked) await writeTokenFile(path, records.filter((record) => record !== revoked));
    return revoked;
  });
}

/**
 * The tokens an identity provider's user made (source and user match, external): their groups set
 * anew, or with `groups` undefined all removed (the provider dropped the user). How many there were.
 */
function editProviderUserTokens(path: string, source: string, user: string, groups: readonly string[] | undefined): Promise<number> {
  if (!existsSync(path)) return Promise.resolve(0);
  return whileLocked(path, async () => {
    const records = await readForEdit(path);
    const theirs = (record: TokenRecord) => record.user === user && record.source === source && record.external === true;
    const count = records.filter(theirs).length;
    if (count === 0) return 0;
    await writeTokenFile(path, groups === undefined ? records.filter((record) => !theirs(record)) : records.map((record) => (theirs(record) ? { ...record, groups: [...groups] } : record)));
    return count;
  });
}

/** Token id -> ISO time of last use, as the gateway last saved it. */
async function readLastUsed(tokensFile: string): Promise<Record<string, string>> {
  try {
    const data: unknown = JSON.parse(await readFile(lastUsedPath(tokensFile), 'utf8'));
    if (!isRecord(data)) return {};
    return Object.fromEntries(Object.entries(data).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  } catch {
    return {}; // missing or damaged: it is only a convenience
  }
}

// ---- where tokens are kept ------------------------------------------------------------------

/**
 * Where issued tokens are made, listed and revoked: tokens.file, or with state.redis the shared Redis
 * (src/state/redis-tokens.ts). The gateway's pages, the CLI and identity-provider refreshes edit
 * through this, so each works the same with either.
 */
export interface TokenStore {
  /** For messages: "tokens.json", "the shared state store (Redis)". */
  readonly where: string;
  issue(options: IssueOptions): Promise<{ token: string; record: TokenRecord }>;
  /** The revoked token's record, or undefined (nothing changed) if no token has that id that `may` allows. */
  revoke(id: string, may?: (record: TokenRecord) => boolean): Promise<TokenRecord | undefined>;
  list(): Promise<TokenListing>;
  /** Token id -> ISO time of last use, as saved so far. */
  lastUsed(): Promise<Record<string, string>>;
  editProviderUserTokens(source: string, user: string, groups: readonly string[] | undefined): Promise<number>;
}

/** A store every gateway shares (src/state/redis-tokens.ts): asked on every request, nothing cached here. */
export interface SharedTokenStore extends TokenStore {
  lookup(hash: string): Promise<TokenRecord | undefined>;
  noteUsed(id: string, at: number): Promise<unknown>;
  /** Copies a tokens file in, each id only ever once. */
  importFile(path: string): Promise<{ imported: number; problems: string[] }>;
}

export class TokenFileStore implements TokenStore {
  /** `revoked`: awaited after a token is revoked or edited, before the change is answered (ApiTokenStoreOptions.revoked). */
  constructor(readonly where: string, private readonly revoked?: () => Promise<unknown>) {}
  issue(options: IssueOptions) {
    return issueToken(this.where, options);
  }
  async revoke(id: string, may?: (record: TokenRecord) => boolean) {
    const record = await revokeToken(this.where, id, may);
    if (record) await this.revoked?.();
    return record;
  }
  list() {
    return readTokenFile(this.where);
  }
  lastUsed() {
    return readLastUsed(this.where);
  }
  async editProviderUserTokens(source: string, user: string, groups: readonly string[] | undefined) {
    const count = await editProviderUserTokens(this.where, source, user, groups);
    if (count) await this.revoked?.();
    return count;
  }
}

// ---- the gateway's view ---------------------------------------------------------------------

/** What tells one version of the file from the next: writes are atomic renames, so a new inode each time. */
function versionOf(path: string): string {
  try {
    // No exception for a missing file: those cost more than the stat, and a flood would pay each.
    const stats = statSync(path, { throwIfNoEntry: false });
    return stats ? `${stats.mtimeMs}:${stats.size}:${stats.ino}` : '';
  } catch {
    return 'unreadable';
  }
}

interface ApiTokenStoreOptions {
  path: string;
  watchIntervalMs: number;
  /** Whether the user is still in the htpasswd file; asked on every request, so it must be cheap. */
  userExists(user: string): boolean;
  /** How often "last used" times are saved (at most); also saved on stop. */
  saveIntervalMs?: number;
  /**
   * state.redis: tokens live in Redis and every request asks it; tokens.file is imported once (each
   * id only ever once) and then not read.
   */
  shared?: { tokens: SharedTokenStore; state: SharedState };
  /**
   * Without Redis, in one of several worker processes: tells the others to re-read tokens.file (a
   * revoke is answered once they have), since each holds its own copy and would otherwise notice
   * only at its next watch.
   */
  revoked?(): Promise<unknown>;
}

/** With Redis, a token's last use is written at most this often by one gateway. */
const SHARED_LAST_USED_EVERY_MS = 60_000;

const REFUSED = 'tokens file has errors; keeping the previous tokens until it is fixed';

interface ActiveToken {
  id: string;
  expiresAt: number;
  principal: Principal;
}

/**
 * The tokens of one file, looked up by hash and re-read whenever the file changes (so a revoke takes
 * effect within watchInterval). Last-use times are kept in memory and saved at most once a minute to
 * a file of their own, so the gateway never rewrites the tokens file and cannot undo a revoke.
 * With state.redis, the gateway's view is Redis itself: no copy of the tokens is kept here.
 */
export class ApiTokenStore {
  private byHash = new Map<string, ActiveToken>();
  private readonly lastUsed = new Map<string, number>();
  private dirty = false;
  private saving: Promise<void> = Promise.resolve();
  private readonly file: ReloadingFile<TokenRecord[] | 'removed'>;
  private timer: NodeJS.Timeout | undefined;
  /** mtime, size and inode of the file as last read ('' when it was missing). */
  private versionRead = '';
  /** With Redis: when this gateway last wrote each token's last use there. */
  private readonly lastUseShared = new Map<string, number>();
  private imported = false;
  /** Where tokens are made, listed and revoked: the file, or Redis. */
  readonly edits: TokenStore;

  constructor(private readonly options: ApiTokenStoreOptions, private readonly logger: Logger) {
    this.file = new ReloadingFile(options, { read: (initial) => this.read(initial), refused: REFUSED, apply: (records, initial) => this.apply(records, initial) }, logger);
    this.edits = options.shared?.tokens ?? new TokenFileStore(options.path, options.revoked && (() => options.revoked!()));
  }

  start(): void {
    const { shared } = this.options;
    if (shared) {
      // Once Redis is first reachable (now, or when it comes): not at every reconnection, so that a
      // Redis that lost its data does not get the file's tokens back behind the operator's back.
      if (shared.state.client.status === 'ready') void this.importFile(shared);
      else shared.state.client.once('ready', () => void this.importFile(shared));
      this.timer = setInterval(() => this.forgetSharedWrites(), SHARED_LAST_USED_EVERY_MS).unref();
      return;
    }
    this.file.start();
    this.timer = setInterval(() => void this.saveLastUsed(), this.options.saveIntervalMs ?? 60_000).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    if (this.options.shared) return;
    this.file.stop();
    await this.saveLastUsed();
  }

  private async importFile(shared: NonNullable<ApiTokenStoreOptions['shared']>): Promise<void> {
    if (this.imported) return;
    this.imported = true;
    const file = this.options.path;
    try {
      const { imported, problems } = await shared.tokens.importFile(file);
      for (const problem of problems) this.logger.warn({ file, problem }, 'tokens file: entry not imported into the shared state store (Redis)');
      if (imported) this.logger.info({ file, imported }, 'imported API tokens from tokens.file into the shared state store (Redis); the file is not read while state.redis is set');
    } catch (err) {
      this.imported = false;
      this.logger.error({ file, err }, 'could not import tokens.file into the shared state store (Redis); trying again when it is reachable again');
      shared.state.client.once('ready', () => void this.importFile(shared));
    }
  }

  private forgetSharedWrites(): void {
    const before = Date.now() - SHARED_LAST_USED_EVERY_MS;
    for (const [id, at] of this.lastUseShared) if (at <= before) this.lastUseShared.delete(id);
  }

  /**
   * Synchronous: one SHA-256 and a map lookup. A well-formed token not in the map may have been
   * issued since the watch last looked (up to watchInterval ago), and a CI job uses its token the
   * moment `token issue` returns: so a miss first asks stat() whether the file changed (a few
   * microseconds, also under a flood of made-up tokens) and re-reads it only when it did.
   */
  authenticate(token: string): BearerVerdict | Promise<BearerVerdict> {
    if (this.options.shared) return this.authenticateShared(token, this.options.shared);
    const hash = hashToken(token);
    let active = this.byHash.get(hash);
    if (!active) {
      const malformed = tokenFormatProblem(token);
      if (malformed) return { ok: false, reason: malformed };
      if (this.fileChanged() && this.file.reload(false)) active = this.byHash.get(hash);
      if (!active) return { ok: false, reason: 'unknown or revoked token' };
    }
    return this.verdictOn(active);
  }

  /**
   * With Redis: one GET by hash on every request, no answer remembered, so a revoke through any
   * gateway is refused by the next request anywhere. Redis unreachable: refused with 503 (fail
   * closed: nothing here can tell a token revoked elsewhere from a good one; MLflow's client
   * retries 503s).
   */
  private authenticateShared(token: string, shared: NonNullable<ApiTokenStoreOptions['shared']>): BearerVerdict | Promise<BearerVerdict> {
    const malformed = tokenFormatProblem(token);
    if (malformed) return { ok: false, reason: malformed };
    if (!shared.state.isReachable) return sharedUnreachable(shared.state);
    return shared.tokens.lookup(hashToken(token)).then((record): BearerVerdict => {
      if (!record) return { ok: false, reason: 'unknown or revoked token' };
      return this.verdictOn(activeOf(record));
    }, (err: unknown) => {
      shared.state.failed(err);
      return sharedUnreachable(shared.state);
    });
  }

  private verdictOn(active: ActiveToken): BearerVerdict {
    const now = Date.now();
    if (now >= active.expiresAt) return { ok: false, reason: `the token expired at ${new Date(active.expiresAt).toISOString()}` };
    // An external user is not in the htpasswd file: their tokens expire instead (tokens.externalMaxTtl).
    if (!active.principal.external && !this.options.userExists(active.principal.user)) return { ok: false, reason: "the token's user no longer exists" };
    this.lastUsed.set(active.id, now);
    const shared = this.options.shared;
    if (!shared) {
      this.dirty = true;
    } else if (now - (this.lastUseShared.get(active.id) ?? -Infinity) >= SHARED_LAST_USED_EVERY_MS) {
      // Not waited for: the request goes on; a failed write is tried again at the next use.
      this.lastUseShared.set(active.id, now);
      shared.tokens.noteUsed(active.id, now).catch(() => this.lastUseShared.delete(active.id));
    }
    return { ok: true, principal: active.principal };
  }

  /** At start-up a bad entry is skipped; on a reload a file with any problem keeps the previous tokens. */
  reload(initial: boolean): void {
    if (!this.options.shared) this.file.reload(initial);
  }

  private fileChanged(): boolean {
    return versionOf(this.options.path) !== this.versionRead;
  }

  /** A missing file holds no tokens ('removed'); an unreadable one keeps those in force. */
  private read(initial: boolean): FileReading<TokenRecord[] | 'removed'> | undefined {
    const file = this.options.path;
    // Taken before the read: a change in between makes the next miss read again, never miss the change.
    // Recorded whatever the outcome, so a file with problems is read (and logged) once per change.
    this.versionRead = versionOf(file);
    const read = readFileText(file);
    if (read.text === undefined) {
      if (read.code === 'ENOENT') return { value: 'removed' };
      this.logger.error({ file, code: read.code }, initial ? 'tokens file unreadable; no API tokens are accepted until it is fixed' : 'tokens file unreadable; keeping the previous tokens');
      return undefined;
    }
    const { records, problems } = parseTokenFile(read.text);
    return { value: records, problems: problems.map((problem) => ({ message: `tokens file: ${problem}` })) };
  }

  private apply(records: TokenRecord[] | 'removed', initial: boolean): void {
    const file = this.options.path;
    if (records === 'removed') {
      if (this.byHash.size) this.logger.warn({ file }, 'tokens file removed; no API tokens are accepted');
      this.byHash = new Map();
      return;
    }
    const byHash = new Map<string, ActiveToken>();
    for (const record of records) byHash.set(record.hash, activeOf(record));
    this.byHash = byHash;
    if (!initial) this.logger.info({ file, tokens: byHash.size }, 'tokens file reloaded');
  }

  /** When this process last saw each token used (ms since the epoch); not yet saved ones included. */
  lastUsedHere(): ReadonlyMap<string, number> {
    return this.lastUsed;
  }

  /** Merges this process's last-use times into the shared file (several workers or replicas may write it). */
  saveLastUsed(): Promise<void> {
    this.saving = this.saving.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const file = lastUsedPath(this.options.path);
      try {
        const saved = await readLastUsed(this.options.path);
        const current = new Set([...this.byHash.values()].map((active) => active.id));
        const merged: Record<string, string> = {};
        for (const [id, at] of Object.entries(saved)) if (current.has(id)) merged[id] = at;
        for (const [id, at] of this.lastUsed) {
          if (current.has(id) && !(Date.parse(merged[id] ?? '') >= at)) merged[id] = new Date(at).toISOString();
        }
        await writeFileAtomic(file, Buffer.from(`${JSON.stringify(merged, null, 2)}\n`), existsSync(file));
      } catch (err) {
        this.logger.warn({ file, err }, 'could not save the last-use times of API tokens');
      }
    });
    return this.saving;
  }
}

function activeOf(record: TokenRecord): ActiveToken {
  return {
    id: record.id,
    expiresAt: record.expires === null ? Infinity : Date.parse(record.expires),
    principal: Object.freeze({
      user: record.user, method: 'bearer', groups: Object.freeze([...(record.groups ?? [])]), token: record.id,
      ...(record.external ? { external: true } : {}),
      ...(record.source !== undefined ? { source: record.source } : {}),
    }),
  };
}

function sharedUnreachable(state: SharedState): BearerVerdict {
  return {
    ok: false, unavailable: true,
    reason: `the shared state store (Redis) is unreachable, so API tokens cannot be checked against revocations made on other gateways; retry shortly (${state.problem})`,
  };
}
