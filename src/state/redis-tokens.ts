// Issued API tokens in the shared Redis (state.redis; docs/operations.md "Several gateways"), so a
// token made through any gateway or `mlgate token issue` works on every gateway, and a revoke through
// any of them is refused by every gateway's next request: the request path asks Redis for the
// token's hash on every request (one GET), and nothing remembers "still valid". Only hashes are kept.
//
// Keys, under state.redis.keyPrefix:
//   tokens              hash: token id -> the record (JSON, with `expiresMs` for the scripts)
//   token:<sha256 hex>  the same record, looked up by the request path; expires a month after the
//                       token does (until then a request is told "expired", not "unknown")
//   tokens-last-used    hash: token id -> ms since the epoch
//   tokens-imported     set: ids imported from tokens.file, each only ever once
import { randomBytes } from 'node:crypto';
import {
  newToken, readTokenFile, TokenLimitError, tokenRecordProblem,
  type IssueOptions, type SharedTokenStore, type TokenListing, type TokenRecord,
} from '../auth/api-tokens.ts';
import type { SharedState } from './redis-state.ts';

/** How long a token's lookup key outlives the token, so that its requests are told it expired. */
const EXPIRED_KEPT_MS = 30 * 86_400_000;

/** Redis could not be asked (or did not answer in time): nothing is known to have changed. */
export class SharedStateUnavailableError extends Error {
  constructor(doing: string, problem: string) {
    super(`the shared state store (Redis) is unreachable, so ${doing}; try again once it is back (${problem})`);
  }
}

// Counts the user's unexpired tokens (dropping the expired ones, as the file store does) and adds the
// new one, atomically: two gateways issuing at once cannot both pass tokens.maxPerUser.
const ISSUE = `
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return {'collision'} end
local max = tonumber(ARGV[3])
if max >= 0 then
  local now = tonumber(ARGV[4])
  local live = 0
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local ok, r = pcall(cjson.decode, all[i + 1])
    if ok and type(r) == 'table' and r.user == ARGV[1] then
      if type(r.expiresMs) == 'number' and r.expiresMs <= now then
        redis.call('HDEL', KEYS[1], all[i])
        redis.call('HDEL', KEYS[3], all[i])
      else
        live = live + 1
      end
    end
  end
  if live >= max then return {'limit', live} end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[5])
redis.call('SET', KEYS[2], ARGV[5])
if ARGV[6] ~= '0' then redis.call('PEXPIREAT', KEYS[2], ARGV[6]) end
return {'ok'}
`;

// A token's record rewritten (its groups) only while it exists: a revoke meanwhile stays a revoke.
const REPLACE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] ~= '0' then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
return 1
`;

// A token from tokens.file, once: an id imported before and revoked since is not brought back.
const IMPORT = `
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[2])
if ARGV[3] ~= '0' then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
return 1
`;

// Last use only moves forward, and only for a token that still exists.
const USED = `
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
local seen = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if tonumber(ARGV[2]) > seen then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
`;

type Stored = TokenRecord & { expiresMs?: number };

function expiresMs(record: TokenRecord): number | undefined {
  return record.expires === null ? undefined : Date.parse(record.expires);
}

function stored(record: TokenRecord): string {
  const ms = expiresMs(record);
  return JSON.stringify({ ...record, ...(ms !== undefined ? { expiresMs: ms } : {}) } satisfies Stored);
}

/** The lookup key's PEXPIREAT, or '0' for a token that never expires. */
function keyExpiry(record: TokenRecord): string {
  const ms = expiresMs(record);
  return ms === undefined ? '0' : String(ms + EXPIRED_KEPT_MS);
}

/** A stored record, or undefined for one that is not (damaged, or written by something else). */
function parseStoredRecord(text: string | null | undefined): TokenRecord | undefined {
  if (!text) return undefined;
  let data: Stored;
  try {
    data = JSON.parse(text) as Stored;
  } catch {
    return undefined;
  }
  if (tokenRecordProblem(data)) return undefined;
  const { expiresMs: _, ...record } = data;
  return record;
}

export class RedisTokenStore implements SharedTokenStore {
  readonly where = 'the shared state store (Redis)';

  constructor(private readonly shared: SharedState) {}

  private get index(): string {
    return this.shared.key('tokens');
  }

  private lookupKey(hash: string): string {
    return this.shared.key('token', hash.replace(/^sha256:/, ''));
  }

  private get lastUsedKey(): string {
    return this.shared.key('tokens-last-used');
  }

  /** Runs a command; a failure marks Redis unreachable and becomes a SharedStateUnavailableError. */
  private async ask<T>(doing: string, command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (err) {
      this.shared.failed(err);
      throw new SharedStateUnavailableError(doing, this.shared.problem || (err instanceof Error ? err.message : String(err)));
    }
  }

  /** The request path's one round trip: the record of the token with this hash, if there is one. */
  async lookup(hash: string): Promise<TokenRecord | undefined> {
    return parseStoredRecord(await this.shared.client.get(this.lookupKey(hash)));
  }

  async issue(options: IssueOptions): Promise<{ token: string; record: TokenRecord }> {
    const now = Date.now();
    for (;;) {
      const { token, record } = newToken(randomBytes(6).toString('hex'), options, now);
      const answer = await this.ask('no token was issued', () => this.shared.client.eval(
        ISSUE, 3, this.index, this.lookupKey(record.hash), this.lastUsedKey,
        options.user, record.id, String(options.maxPerUser ?? -1), String(now), stored(record), keyExpiry(record),
      )) as [string, number?];
      if (answer[0] === 'limit') throw new TokenLimitError(options.user, Number(answer[1]));
      if (answer[0] === 'ok') return { token, record };
    }
  }

  async revoke(id: string, may: (record: TokenRecord) => boolean = () => true): Promise<TokenRecord | undefined> {
    const doing = 'the token was not revoked';
    const record = parseStoredRecord(await this.ask(doing, () => this.shared.client.hget(this.index, id)));
    if (!record || !may(record)) return undefined;
    await this.ask(doing, () => this.shared.client.multi()
      .hdel(this.index, id).del(this.lookupKey(record.hash)).hdel(this.lastUsedKey, id)
      .exec().then(failedStep));
    return record;
  }

  async list(): Promise<TokenListing> {
    const all = await this.ask('the tokens cannot be listed', () => this.shared.client.hgetall(this.index));
    const records: TokenRecord[] = [];
    const problems: string[] = [];
    for (const [id, text] of Object.entries(all)) {
      const record = parseStoredRecord(text);
      if (record) records.push(record);
      else problems.push(`token ${id.slice(0, 40)}: damaged record in Redis, ignored`);
    }
    records.sort((a, b) => a.created.localeCompare(b.created) || a.id.localeCompare(b.id));
    return { records, problems };
  }

  async lastUsed(): Promise<Record<string, string>> {
    const all = await this.ask('last-use times cannot be read', () => this.shared.client.hgetall(this.lastUsedKey));
    return Object.fromEntries(Object.entries(all).filter(([, ms]) => Number(ms) > 0).map(([id, ms]) => [id, new Date(Number(ms)).toISOString()]));
  }

  /** Off the request path: the caller neither waits for it nor fails with it. */
  noteUsed(id: string, at: number): Promise<unknown> {
    return this.shared.client.eval(USED, 2, this.lastUsedKey, this.index, id, String(at));
  }

  async editProviderUserTokens(source: string, user: string, groups: readonly string[] | undefined): Promise<number> {
    const theirs = (await this.list()).records.filter((record) => record.user === user && record.source === source && record.external === true);
    const doing = "the identity provider's change was not applied to the user's tokens";
    for (const record of theirs) {
      if (groups === undefined) {
        await this.revoke(record.id);
        continue;
      }
      const next = { ...record, groups: [...groups] };
      await this.ask(doing, () => this.shared.client.eval(REPLACE, 2, this.index, this.lookupKey(record.hash), record.id, stored(next), keyExpiry(next)));
    }
    return theirs.length;
  }

  /**
   * Copies tokens.file's tokens into Redis, each id only ever once (an imported token revoked since
   * stays revoked, whichever gateway starts next). How many were new.
   */
  async importFile(path: string): Promise<{ imported: number; problems: string[] }> {
    const { records, problems } = await readTokenFile(path);
    let imported = 0;
    for (const record of records) {
      const added = await this.ask('tokens.file was not imported', () => this.shared.client.eval(
        IMPORT, 3, this.index, this.lookupKey(record.hash), this.shared.key('tokens-imported'), record.id, stored(record), keyExpiry(record),
      ));
      if (added === 1) imported++;
    }
    return { imported, problems };
  }
}

/** MULTI's exec answers each step's error in place rather than rejecting. */
function failedStep(results: [Error | null, unknown][] | null): void {
  if (results === null) throw new Error('the transaction was aborted');
  const failed = results.find(([err]) => err);
  if (failed) throw failed[0];
}
