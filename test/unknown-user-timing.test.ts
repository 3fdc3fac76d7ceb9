// Nothing about users leaks through timing (issue 12, class 4). Unknown users were checked against a
// dummy bcrypt hash at auth.bcryptCost (12) while the file's users had cost-5 bcrypt or apr1 hashes:
// about 225 ms against 8 ms told anyone which user names exist. Now an unknown user costs what the
// file's most common entry costs: its format and cost, recomputed whenever the file is reloaded.
// The timings compare medians of interleaved attempts with a bound loose enough for a busy 2-core
// machine (0.5x to 2x; the leak was 30x to 60x); the format and cost are also checked exactly.
import { writeFileSync } from 'node:fs';
import aprMd5Module from 'apache-md5';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashCostKey, hashFormatProblem, hashPassword, unmatchableHashLike, verifyHash } from '../src/auth/htpasswd-formats.ts';
import { startTestGateway, waitForLog, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const aprMd5 = aprMd5Module as unknown as (password: string, salt?: string) => string;

let upstream: MlflowUpstream;
let gw: TestGateway;

async function bcryptLines(users: string[], cost: number): Promise<string[]> {
  return Promise.all(users.map(async (user) => `${user}:${await hashPassword(`${user}-password`, cost)}`));
}

function apr1Lines(users: string[]): string[] {
  return users.map((user) => `${user}:${aprMd5(`${user}-password`)}`);
}

beforeAll(async () => {
  upstream = await startMlflowUpstream();
  // The most common entry: bcrypt at cost 5; one apr1 user; the configured cost for new hashes is 12.
  const lines = [...await bcryptLines(['alice', 'bob', 'carol'], 5), ...apr1Lines(['dave']), ...await bcryptLines(['erin'], 8)];
  gw = await startTestGateway({
    upstream: upstream.url,
    htpasswd: lines.join('\n') + '\n',
    tls: false,
    // Timing only: every attempt is a wrong password, which the lockout would soon refuse unhashed.
    config: { auth: { bcryptCost: 12 }, lockout: { enabled: false } },
  });
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

let attempt = 0;

/** How long one refused sign-in takes, in ms (a new wrong password each time: nothing is cached or shared). */
async function timeSignIn(user: string): Promise<number> {
  const started = process.hrtime.bigint();
  const res = await gw.request('/api/2.0/mlflow/experiments/search', { method: 'POST', auth: [user, `wrong-${attempt++}`], body: '{"max_results":1}' });
  const took = Number(process.hrtime.bigint() - started) / 1e6;
  expect(res.status).toBe(401);
  return took;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median times of a known user's wrong password and an unknown user's, measured in turns. */
async function compare(known: string, rounds = 21): Promise<{ known: number; unknown: number; ratio: number }> {
  for (let i = 0; i < 3; i++) await timeSignIn(known); // warm up connections and the worker
  const knownTimes: number[] = [];
  const unknownTimes: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // Taking turns at going first, so that a burst of other load falls on both alike.
    if (i % 2) unknownTimes.push(await timeSignIn(`nobody-${i}`));
    knownTimes.push(await timeSignIn(known));
    if (i % 2 === 0) unknownTimes.push(await timeSignIn(`nobody-${i}`));
  }
  const result = { known: median(knownTimes), unknown: median(unknownTimes), ratio: median(unknownTimes) / median(knownTimes) };
  console.log(`[unknown-user timing] known ${known}: ${result.known.toFixed(1)} ms, unknown: ${result.unknown.toFixed(1)} ms, ratio ${result.ratio.toFixed(2)}`);
  return result;
}

/** The format and cost of a hash, as the attacker's stopwatch sees them. */
function profile(hash: string): string {
  const bcrypt = /^\$2[aby]\$(\d\d)\$/.exec(hash);
  if (bcrypt) return `bcrypt cost ${Number(bcrypt[1])}`;
  const sha = /^\$([56])\$(?:rounds=(\d+)\$)?/.exec(hash);
  if (sha) return `sha${sha[1] === '5' ? 256 : 512}-crypt rounds ${sha[2] ?? 5000}`;
  return /^(\$apr1\$|\$1\$|\{SHA\}|\{SSHA\}|\{PLAIN\})/.exec(hash)?.[1] ?? 'unknown';
}

describe('an unknown user name costs what a known one costs', () => {
  it('with cost-5 bcrypt users, an unknown user takes about as long as a known user\'s wrong password', async () => {
    const { ratio } = await compare('alice');
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
  });

  it('the hash checked for unknown users has the format and cost of the file\'s most common entry', () => {
    const dummy = gw.gateway.passwordChecker.unknownUserHash;
    expect(profile(dummy)).toBe('bcrypt cost 5');
  });

  it('is recomputed when the file is reloaded: mostly apr1 now, and timed like apr1', async () => {
    const lines = [...await bcryptLines(['alice'], 5), ...apr1Lines(['dave', 'erin', 'frank'])];
    writeFileSync(gw.htpasswdPath, lines.join('\n') + '\n');
    await waitForLog(gw.logs, (line) => line.msg === 'htpasswd file reloaded' && line.users === 4);
    expect(profile(gw.gateway.passwordChecker.unknownUserHash)).toBe('$apr1$');
    const { ratio } = await compare('dave');
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
  });

  it('follows sha512-crypt rounds and bcrypt costs above the configured one', async () => {
    const sha = '$6$rounds=20000$saltsaltsaltsalt$' + 'a'.repeat(86);
    const lines = [`u1:${sha}`, `u2:${sha.replace('saltsaltsaltsalt', 'othersaltothersa')}`, ...await bcryptLines(['alice'], 5)];
    writeFileSync(gw.htpasswdPath, lines.join('\n') + '\n');
    await waitForLog(gw.logs, (line) => line.msg === 'htpasswd file reloaded' && line.users === 3);
    expect(profile(gw.gateway.passwordChecker.unknownUserHash)).toBe('sha512-crypt rounds 20000');

    writeFileSync(gw.htpasswdPath, (await bcryptLines(['alice', 'bob'], 13)).join('\n') + '\n');
    await waitForLog(gw.logs, (line) => line.msg === 'htpasswd file reloaded' && line.users === 2);
    expect(profile(gw.gateway.passwordChecker.unknownUserHash)).toBe('bcrypt cost 13');
  });

  it('with no usable user, unknown users cost bcrypt at auth.bcryptCost', async () => {
    writeFileSync(gw.htpasswdPath, '# nobody yet\n');
    await waitForLog(gw.logs, (line) => line.msg === 'htpasswd file reloaded' && line.users === 0);
    expect(profile(gw.gateway.passwordChecker.unknownUserHash)).toBe('bcrypt cost 12');
  });
});

describe('the dummy hash of each format', () => {
  const samples: [string, string][] = [
    ['bcrypt', '$2y$05$abcdefghijklmnopqrstuuJ7r1HkV5yVZ9P0bJrVh3zO0R5f2Gm4K'],
    ['apr1', '$apr1$heGjOFMJ$dfajhvgp/PfpPouGSE3RH.'],
    ['md5-crypt', '$1$saltsalt$qjXMvbEw8oaL.CzflDugX/'],
    ['sha256-crypt', `$5$rounds=12000$saltsaltsaltsalt$${'b'.repeat(43)}`],
    ['sha512-crypt', `$6$saltsaltsaltsalt$${'c'.repeat(86)}`],
    ['sha1', '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='],
    ['ssha', `{SSHA}${Buffer.alloc(28, 7).toString('base64')}`],
    ['plain', '{PLAIN}secret'],
  ];
  it.each(samples)('%s: well formed, the same cost, and no password matches it', async (_scheme, hash) => {
    expect(hashFormatProblem(hash)).toBeUndefined();
    const dummy = unmatchableHashLike(hash)!;
    expect(hashFormatProblem(dummy)).toBeUndefined();
    expect(hashCostKey(dummy)).toBe(hashCostKey(hash));
    expect(dummy).not.toBe(hash);
    expect(unmatchableHashLike(hash)).not.toBe(dummy); // random each time
    expect(await verifyHash(dummy, 'password')).toBe(false);
    expect(await verifyHash(dummy, '')).toBe(false);
  });
});

