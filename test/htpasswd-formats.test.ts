// Hashes come from the real tools (Debian packages apache2-utils and openssl);
// tests that need a missing tool are skipped with the reason in their name.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  detectScheme,
  hashFormatProblem,
  hashPassword,
  REFUSED_UNLESS_ALLOWED,
  verifyHash,
  WEAK_SCHEMES,
  type HashScheme,
} from '../src/auth/htpasswd-formats.ts';

function run(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : undefined;
}
const HAVE_HTPASSWD = run('htpasswd', ['-nbB', '-C', '4', 'u', 'p']) !== undefined;
const HAVE_OPENSSL_SHA = run('openssl', ['passwd', '-6', 'p']) !== undefined;
const NO_HTPASSWD = 'htpasswd not found (Debian package apache2-utils)';
const NO_OPENSSL = 'openssl passwd -5/-6 not available (Debian package openssl, OpenSSL >= 1.1.1)';

/** The hash `htpasswd -n<flags>` prints for user "u". */
function htpasswd(flags: string[], password: string): string {
  const out = run('htpasswd', ['-nb', ...flags, 'u', password]);
  if (out === undefined) throw new Error(`htpasswd ${flags.join(' ')} failed`);
  return out.split('\n')[0]!.slice('u:'.length);
}
function openssl(flag: string, password: string): string {
  const out = run('openssl', ['passwd', flag, password]);
  if (out === undefined) throw new Error(`openssl passwd ${flag} failed`);
  return out.trim();
}
function ssha(password: string, salt: Buffer): string {
  const digest = createHash('sha1').update(password, 'utf8').update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString('base64')}`;
}

const PASSWORDS = ['correct horse', 'pässwörd€ 🔑'];
const WRONG = 'correct horsE';

interface Case { name: string; scheme: HashScheme; make: (pw: string) => string; skip?: string }
const CASES: Case[] = [
  { name: 'htpasswd -B -C 5', scheme: 'bcrypt', make: (pw) => htpasswd(['-B', '-C', '5'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: 'htpasswd -m', scheme: 'apr1', make: (pw) => htpasswd(['-m'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: 'openssl passwd -apr1', scheme: 'apr1', make: (pw) => openssl('-apr1', pw), skip: HAVE_OPENSSL_SHA ? undefined : NO_OPENSSL },
  { name: 'openssl passwd -1', scheme: 'md5-crypt', make: (pw) => openssl('-1', pw), skip: HAVE_OPENSSL_SHA ? undefined : NO_OPENSSL },
  { name: 'htpasswd -s', scheme: 'sha1', make: (pw) => htpasswd(['-s'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: '{SSHA} via node:crypto', scheme: 'ssha', make: (pw) => ssha(pw, randomBytes(8)) },
  { name: 'htpasswd -2', scheme: 'sha256-crypt', make: (pw) => htpasswd(['-2'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: 'htpasswd -2 -r 1234', scheme: 'sha256-crypt', make: (pw) => htpasswd(['-2', '-r', '1234'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: 'htpasswd -5', scheme: 'sha512-crypt', make: (pw) => htpasswd(['-5'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: 'openssl passwd -5', scheme: 'sha256-crypt', make: (pw) => openssl('-5', pw), skip: HAVE_OPENSSL_SHA ? undefined : NO_OPENSSL },
  { name: 'openssl passwd -6', scheme: 'sha512-crypt', make: (pw) => openssl('-6', pw), skip: HAVE_OPENSSL_SHA ? undefined : NO_OPENSSL },
  { name: 'htpasswd -p (plaintext)', scheme: 'plain', make: (pw) => htpasswd(['-p'], pw), skip: HAVE_HTPASSWD ? undefined : NO_HTPASSWD },
  { name: '{PLAIN} prefix', scheme: 'plain', make: (pw) => `{PLAIN}${pw}` },
];

describe('verifyHash with hashes made by real tools', () => {
  for (const c of CASES) {
    for (const pw of PASSWORDS) {
      it.skipIf(c.skip !== undefined)(`${c.name} [${JSON.stringify(pw)}]${c.skip ? ` — skipped: ${c.skip}` : ''}`, async () => {
        const hash = c.make(pw);
        expect(detectScheme(hash)).toBe(c.scheme);
        expect(hashFormatProblem(hash)).toBeUndefined();
        expect(await verifyHash(hash, pw)).toBe(true);
        expect(await verifyHash(hash, WRONG)).toBe(false);
        expect(await verifyHash(hash, '')).toBe(false);
        expect(await verifyHash(hash, pw + 'x')).toBe(false);
      });
    }
  }

  it.skipIf(!HAVE_HTPASSWD)(`bcrypt accepts $2a$, $2b$ and $2y$ labels${HAVE_HTPASSWD ? '' : ` — skipped: ${NO_HTPASSWD}`}`, async () => {
    const y = htpasswd(['-B', '-C', '4'], 'secret');
    expect(y.startsWith('$2y$04$')).toBe(true);
    for (const label of ['$2a$', '$2b$', '$2y$']) {
      const hash = label + y.slice(4);
      expect(detectScheme(hash)).toBe('bcrypt');
      expect(await verifyHash(hash, 'secret')).toBe(true);
      expect(await verifyHash(hash, 'Secret')).toBe(false);
    }
  });

  it.skipIf(!HAVE_HTPASSWD)(`DES crypt is detected but never verifies${HAVE_HTPASSWD ? '' : ` — skipped: ${NO_HTPASSWD}`}`, async () => {
    const hash = htpasswd(['-d'], 'secretpw');
    expect(hash).toHaveLength(13);
    expect(detectScheme(hash)).toBe('des-crypt');
    expect(hashFormatProblem(hash)).toMatch(/DES/);
    expect(await verifyHash(hash, 'secretpw')).toBe(false);
  });
});

describe('detectScheme', () => {
  it.each<[string, HashScheme]>([
    ['$2y$05$ngtJEApAbveND4n3G88BU.SBHxb9/OzT.X4pStt0Y6uhB3KZC/pbi', 'bcrypt'],
    ['$2a$05$x', 'bcrypt'],
    ['$2b$05$x', 'bcrypt'],
    ['$apr1$heGjOFMJ$dfajhvgp/PfpPouGSE3RH.', 'apr1'],
    ['$1$abcdefgh$yf.SYBPl.sbEdP0oHetO21', 'md5-crypt'],
    ['$5$salt$x', 'sha256-crypt'],
    ['$6$rounds=5000$salt$x', 'sha512-crypt'],
    ['{SHA}ZP3rbRcrbmduZRGkzG2Nm6ZUH08=', 'sha1'],
    ['{SSHA}abc', 'ssha'],
    ['ecfUSYRJfK0Xg', 'des-crypt'],
    ['{PLAIN}secret', 'plain'],
    ['secret', 'plain'],
    ['ecfUSYRJfK0X', 'plain'], // 12 chars: not DES
    ['$2x$05$x', 'plain'], // buggy-crypt_blowfish label: not accepted
    ['$y$j9T$abc$def', 'plain'], // yescrypt: unsupported, see hashFormatProblem
    ['', 'plain'],
  ])('%s -> %s', (hash, scheme) => {
    expect(detectScheme(hash)).toBe(scheme);
  });

  it('policy sets', () => {
    expect([...WEAK_SCHEMES].sort()).toEqual(['apr1', 'md5-crypt', 'sha1', 'ssha']);
    expect([...REFUSED_UNLESS_ALLOWED].sort()).toEqual(['des-crypt', 'plain']);
  });
});

describe('malformed or unsupported hashes never verify and never throw', () => {
  const shaBody = 'x'.repeat(86);
  it.each([
    ['truncated bcrypt', '$2y$05$ngtJEApAbveND4n3G88BU.SBHxb9/OzT.X4pStt0Y6uhB3KZC/pb'],
    ['bcrypt cost above htpasswd range', '$2y$31$ngtJEApAbveND4n3G88BU.SBHxb9/OzT.X4pStt0Y6uhB3KZC/pbi'],
    ['bcrypt cost below range', '$2y$03$ngtJEApAbveND4n3G88BU.SBHxb9/OzT.X4pStt0Y6uhB3KZC/pbi'],
    ['apr1 bad digest length', '$apr1$heGjOFMJ$dfajhvgp/PfpPouGSE3RH'],
    ['sha512 absurd rounds', `$6$rounds=999999999$salt$${shaBody}`],
    ['sha512 bad salt chars', `$6$sa!t$${shaBody}`],
    ['sha256 with sha512-length digest', `$5$salt$${shaBody}`],
    ['{SHA} wrong length', '{SHA}AAAA'],
    ['{SHA} not base64', '{SHA}!!!!!!!!!!!!!!!!!!!!!!!!!!!='],
    ['{SSHA} without salt bytes', '{SSHA}ZP3rbRcrbmduZRGkzG2Nm6ZUH08='],
    ['yescrypt', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7'],
    ['argon2', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'],
    ['unknown brace scheme', '{SMD5}abcdef'],
    ['empty', ''],
  ])('%s', async (_name, hash) => {
    expect(hashFormatProblem(hash)).toBeTypeOf('string');
    const started = Date.now();
    expect(await verifyHash(hash, 'secret')).toBe(false);
    expect(await verifyHash(hash, hash)).toBe(false); // an unknown scheme is not a plaintext password
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('non-string input is false', async () => {
    expect(await verifyHash(undefined as unknown as string, 'x')).toBe(false);
    expect(await verifyHash('{PLAIN}x', undefined as unknown as string)).toBe(false);
  });

  it('plaintext compares the whole password', async () => {
    expect(await verifyHash('secret', 'secret')).toBe(true);
    expect(await verifyHash('secret', 'secre')).toBe(false);
    expect(await verifyHash('secret', 'secret ')).toBe(false);
    expect(await verifyHash('{PLAIN}', '')).toBe(true);
  });
});

describe('hashPassword', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-formats-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes $2y$ with the requested cost and verifies', async () => {
    const hash = await hashPassword('pässwörd€', 5);
    expect(hash).toMatch(/^\$2y\$05\$[./0-9A-Za-z]{53}$/);
    expect(detectScheme(hash)).toBe('bcrypt');
    expect(hashFormatProblem(hash)).toBeUndefined();
    expect(await verifyHash(hash, 'pässwörd€')).toBe(true);
    expect(await verifyHash(hash, 'passwörd€')).toBe(false);
    expect(await hashPassword('pässwörd€', 5)).not.toBe(hash); // fresh salt
  });

  it.skipIf(!HAVE_HTPASSWD)(`htpasswd -v accepts what hashPassword writes${HAVE_HTPASSWD ? '' : ` — skipped: ${NO_HTPASSWD}`}`, async () => {
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `alice:${await hashPassword('s3cret pass', 4)}\n`);
    expect(spawnSync('htpasswd', ['-vb', file, 'alice', 's3cret pass']).status).toBe(0);
    expect(spawnSync('htpasswd', ['-vb', file, 'alice', 'wrong']).status).not.toBe(0);
  });

  it('refuses bad costs and passwords bcrypt would mangle', async () => {
    await expect(hashPassword('x', 3)).rejects.toThrow(/cost/);
    await expect(hashPassword('x', 18)).rejects.toThrow(/cost/);
    await expect(hashPassword('x', 10.5)).rejects.toThrow(/cost/);
    await expect(hashPassword('', 4)).rejects.toThrow(/empty/);
    await expect(hashPassword('a'.repeat(73), 4)).rejects.toThrow(/72 bytes/);
    await expect(hashPassword('€'.repeat(25), 4)).rejects.toThrow(/72 bytes/); // 75 bytes, 25 chars
    expect(await verifyHash(await hashPassword('a'.repeat(72), 4), 'a'.repeat(72))).toBe(true);
  });
});
