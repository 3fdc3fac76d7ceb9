import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import pino from 'pino';
import { TokenFileStore, tokenNameProblem, type TokenRecord, type TokenStore } from '../auth/api-tokens.ts';
import { readHtpasswdUsers } from '../auth/htpasswd-file.ts';
import { duration, formatDuration, type Config } from '../config/schema.ts';
import { closestName } from '../config/suggest.ts';
import { addConfigFlags } from './config-flags.ts';
import { recordCommandEvent } from '../log/audit-log.ts';
import { loadConfigOrExit } from './serve.ts';
import { SharedState } from '../state/redis-state.ts';
import { RedisTokenStore } from '../state/redis-tokens.ts';

type Options = Record<string, unknown>;

const DEFAULT_TTL = '90d';

/**
 * Runs `use` on the gateways' token store: tokens.file, or with state.redis the shared Redis (the
 * same config the gateways load, so a token issued here works on each of them at once).
 */
async function withTokenStore<T>(config: Config, use: (store: TokenStore) => Promise<T>): Promise<T> {
  const redis = config.state.redis;
  if (!redis) return use(new TokenFileStore(config.tokens.file));
  // A command reports its own errors; the connection's are in them.
  const shared = new SharedState(redis, pino({ level: 'silent' }));
  try {
    await shared.waitReady(Math.max(redis.timeout, 3000));
    return await use(new RedisTokenStore(shared));
  } finally {
    shared.stop();
  }
}

/** `mlgate token issue|list|revoke`: edits tokens.file (a running gateway re-reads it), or Redis with state.redis. */
export function registerToken(program: Command): void {
  const token = program.command('token').description('issue, list and revoke API tokens for MLFLOW_TRACKING_TOKEN (tokens.file)');

  addConfigFlags(token.command('issue').argument('<user>', 'the htpasswd user the token acts as'), ['htpasswd'])
    .description('issue a token and print it once on standard output')
    .option('--ttl <duration>', `how long the token is valid, e.g. 12h, 30d, or "never"`, DEFAULT_TTL)
    .option('--name <text>', 'what the token is for, shown by "token list" (e.g. ci-nightly)', '')
    .action(async (user: string, options: Options) => {
      const config = loadConfigOrExit(options).config;
      const { auth, tokens, audit } = config;
      const ttlMs = parseTtl(String(options.ttl));
      const name = String(options.name);
      const nameProblem = tokenNameProblem(name);
      if (nameProblem) throw new Error(`${nameProblem}; no token was issued`);
      if (!(await readHtpasswdUsers(auth.htpasswd)).includes(user)) {
        throw new Error(`user "${user}" does not exist in ${auth.htpasswd}; add it first with "mlgate user add ${user}". No token was issued`);
      }
      const { token: secret, record } = await withTokenStore(config, (store) => store.issue({ user, name, ttlMs }));
      process.stdout.write(`${secret}\n`);
      recordCommandEvent(audit, { event: 'token-issued', token: record.id, owner: record.user, expires: record.expires });
      process.stderr.write(
        `issued token ${record.id} for "${user}"${name ? ` (${name})` : ''}, ${record.expires ? `valid until ${record.expires}` : 'never expiring'}.\n` +
        'It is shown only this once: store it now, e.g. as MLFLOW_TRACKING_TOKEN in your CI secrets.\n' +
        (tokens.enabled ? '' : 'Note: tokens.enabled is false, so the gateway does not accept it yet.\n'),
      );
    });

  addConfigFlags(token.command('list'), ['htpasswd'])
    .description('show every token: id, user, name, created, expires, last used (never the token itself)')
    .option('--user <name>', 'only this user\'s tokens')
    .action(async (options: Options) => {
      const config = loadConfigOrExit(options).config;
      const { auth, tokens } = config;
      if (!config.state.redis && !existsSync(tokens.file)) {
        process.stderr.write(`no tokens: ${tokens.file} does not exist yet ("mlgate token issue USER" creates it)\n`);
        return;
      }
      const [{ records, problems }, lastUsed, where] = await withTokenStore(config, async (store) => [await store.list(), await store.lastUsed(), store.where] as const);
      for (const problem of problems) process.stderr.write(`warning: ${where}: ${problem}\n`);
      const user = options.user as string | undefined;
      const shown = user === undefined ? records : records.filter((record) => record.user === user);
      if (shown.length === 0 && user !== undefined) {
        const users = await readHtpasswdUsers(auth.htpasswd);
        if (users.includes(user)) return void process.stderr.write(`no tokens for "${user}" in ${where}\n`);
        // Most likely a typo: say that the user is unknown too, and who was probably meant.
        const guess = closestName(user, new Set([...users, ...records.map((record) => record.user)]));
        throw new Error(`no tokens for "${user}" in ${where}, and no user "${user}" in ${auth.htpasswd}${guess ? ` (did you mean ${guess}?)` : ''}; "mlgate user list" shows the users`);
      }
      if (shown.length === 0) {
        process.stderr.write(`no tokens in ${where}\n`);
        return;
      }
      process.stdout.write(table(shown, lastUsed, Date.now()));
    });

  addConfigFlags(token.command('revoke').argument('<id>', 'the token id, as "token list" shows it'), [])
    .description('revoke a token; a running gateway refuses it within watchInterval (with state.redis: at once)')
    .action(async (id: string, options: Options) => {
      const config = loadConfigOrExit(options).config;
      const { audit } = config;
      const [revoked, where] = await withTokenStore(config, async (store) => [await store.revoke(id), store.where] as const);
      if (!revoked) throw new Error(`no token with id "${id}" in ${where} ("mlgate token list" shows the ids); nothing was changed`);
      recordCommandEvent(audit, { event: 'token-revoked', token: revoked.id, owner: revoked.user });
      console.log(`revoked token ${revoked.id} of "${revoked.user}"${revoked.name ? ` (${revoked.name})` : ''}`);
    });
}

/** undefined for "never". */
function parseTtl(text: string): number | undefined {
  if (text === 'never') return undefined;
  const parsed = duration.safeParse(text);
  if (!parsed.success || parsed.data <= 0) throw new Error(`--ttl must be a duration such as 12h, 30d or 1s, or "never"; got "${text}". No token was issued`);
  return parsed.data;
}

function table(records: readonly TokenRecord[], lastUsed: Record<string, string>, now: number): string {
  const rows = records.map((record) => [
    record.id,
    record.user,
    record.name || '-',
    when(record.created),
    record.expires === null ? 'never' : `${when(record.expires)}${Date.parse(record.expires) <= now ? ' (expired)' : ` (in ${formatDuration(roughly(Date.parse(record.expires) - now))})`}`,
    lastUsed[record.id] ? when(lastUsed[record.id]!) : 'never',
  ]);
  const all = [['ID', 'USER', 'NAME', 'CREATED', 'EXPIRES', 'LAST USED'], ...rows];
  const widths = all[0]!.map((_, column) => Math.max(...all.map((row) => row[column]!.length)));
  return all.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n') + '\n';
}

/** "2025-06-01 14:03Z": minutes are enough to tell tokens apart, and UTC reads the same everywhere. */
function when(iso: string): string {
  return `${new Date(iso).toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

/** To the nearest day, hour, minute or second: "in 30d" rather than "in 2591998s". */
function roughly(ms: number): number {
  for (const unit of [86_400_000, 3_600_000, 60_000, 1000]) if (ms >= unit) return Math.round(ms / unit) * unit;
  return ms;
}
