// Files made by the real `htpasswd` (Debian package apache2-utils) where it
// matters; those tests are skipped with the reason in their name without it.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, lstatSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  parseHtpasswd,
  readHtpasswdUsers,
  removeHtpasswdUser,
  setHtpasswdUser,
  userNameProblem,
} from '../src/auth/htpasswd-file.ts';
import { hashPassword, verifyHash } from '../src/auth/htpasswd-formats.ts';

const HAVE_HTPASSWD = spawnSync('htpasswd', ['-nbB', '-C', '4', 'u', 'p']).status === 0;
const NO_HTPASSWD = ' — skipped: htpasswd not found (Debian package apache2-utils)';

// Fixed, valid hashes for parser tests (made with htpasswd / openssl once).
const BCRYPT = '$2y$05$ngtJEApAbveND4n3G88BU.SBHxb9/OzT.X4pStt0Y6uhB3KZC/pbi'; // "secret"
const APR1 = '$apr1$heGjOFMJ$dfajhvgp/PfpPouGSE3RH.'; // "pässwörd€"
const SHA1 = '{SHA}ZP3rbRcrbmduZRGkzG2Nm6ZUH08='; // "secretpw"
const DES = 'ecfUSYRJfK0Xg'; // "secretpw"

const strict = { allowInsecureHashes: false };

describe('parseHtpasswd', () => {
  it('reads entries, skips comments and blank lines, numbers lines from 1', () => {
    const text = ['# users', '', `alice:${BCRYPT}`, '   ', '  # indented comment', `bob:${APR1}`, ''].join('\n');
    const p = parseHtpasswd(text, strict);
    expect(p.problems).toEqual([]);
    expect([...p.entries.keys()]).toEqual(['alice', 'bob']);
    expect(p.entries.get('alice')).toEqual({ user: 'alice', hash: BCRYPT, scheme: 'bcrypt', line: 3 });
    expect(p.entries.get('bob')).toMatchObject({ scheme: 'apr1', line: 6 });
    expect(p.weakUsers).toEqual(['bob']);
    expect(p.refusedUsers).toEqual([]);
  });

  it('tolerates CRLF, a BOM, a missing final newline and trailing blanks after the hash', () => {
    const p = parseHtpasswd(`\uFEFFalice:${BCRYPT}\r\n# c\r\nbob:${SHA1}  \t`, strict);
    expect(p.problems).toEqual([]);
    expect(p.entries.get('alice')?.hash).toBe(BCRYPT);
    expect(p.entries.get('bob')).toMatchObject({ hash: SHA1, line: 3, scheme: 'sha1' });
  });

  it('treats text after a second colon as a comment', () => {
    const p = parseHtpasswd(`alice:${BCRYPT}:Alice Liddell, ops\nbob:${SHA1}:`, strict);
    expect(p.problems).toEqual([]);
    expect(p.entries.get('alice')?.hash).toBe(BCRYPT);
    expect(p.entries.get('bob')?.hash).toBe(SHA1);
  });

  it('accepts any UTF-8 user name without colons or control characters', () => {
    const p = parseHtpasswd(`jürgen.müller@example.org:${BCRYPT}\nJane Doe:${BCRYPT}\n用户:${BCRYPT}`, strict);
    expect(p.problems).toEqual([]);
    expect([...p.entries.keys()]).toEqual(['jürgen.müller@example.org', 'Jane Doe', '用户']);
  });

  it('reports unparseable lines with their line numbers and without echoing them', () => {
    const lines = [
      `ok:${BCRYPT}`, // 1
      'just-a-password-pasted-here', // 2
      `:${BCRYPT}`, // 3 empty user
      `ctl\u0007user:${BCRYPT}`, // 4
      ` spaced:${BCRYPT}`, // 5
      'empty:', // 6
      `trunc:${BCRYPT.slice(0, -1)}`, // 7
      'yes:$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7', // 8
      `${'x'.repeat(256)}:${BCRYPT}`, // 9
      `cr:${BCRYPT}\rjunk`, // 10 lone CR inside the line
      `rounds:$6$rounds=999999999$salt$${'x'.repeat(86)}`, // 11
    ];
    const p = parseHtpasswd(lines.join('\n'), strict);
    expect([...p.entries.keys()]).toEqual(['ok']);
    expect(p.problems.map((x) => x.line)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const byLine = new Map(p.problems.map((x) => [x.line, x.message]));
    expect(byLine.get(2)).toMatch(/user:hash/);
    expect(byLine.get(3)).toMatch(/empty/);
    expect(byLine.get(4)).toMatch(/control character/);
    expect(byLine.get(5)).toMatch(/whitespace/);
    expect(byLine.get(6)).toMatch(/"empty".*empty password hash/);
    expect(byLine.get(7)).toMatch(/malformed bcrypt/);
    expect(byLine.get(8)).toMatch(/unsupported/);
    expect(byLine.get(9)).toMatch(/255 bytes/);
    expect(byLine.get(10)).toMatch(/control character/);
    expect(byLine.get(11)).toMatch(/rounds/);
    for (const { message } of p.problems) {
      expect(message).not.toContain('just-a-password');
      expect(message).not.toContain(BCRYPT.slice(7, 30));
    }
    expect(p.refusedUsers).toEqual([]); // an unknown scheme is a problem, not "plaintext"
  });

  it('keeps the first of duplicate users and reports the others', () => {
    const p = parseHtpasswd(`alice:${BCRYPT}\nbob:${BCRYPT}\nalice:${SHA1}\nalice:${APR1}`, strict);
    expect(p.entries.get('alice')).toMatchObject({ hash: BCRYPT, line: 1 });
    expect(p.problems).toEqual([
      { line: 3, message: 'duplicate user "alice" (first defined on line 1); this line is ignored' },
      { line: 4, message: 'duplicate user "alice" (first defined on line 1); this line is ignored' },
    ]);
    expect(p.weakUsers).toEqual([]); // the ignored SHA-1/apr1 lines do not count
  });

  it('a refused or broken first line still blocks a later duplicate', () => {
    const p = parseHtpasswd(`alice:plaintext\nalice:${BCRYPT}\nbob:$2y$05$short\nbob:${BCRYPT}`, strict);
    expect(p.entries.size).toBe(0);
    expect(p.refusedUsers).toEqual(['alice']);
    expect(p.problems.map((x) => x.line)).toEqual([2, 3, 4]);
  });

  it('refuses plaintext and DES unless insecure hashes are allowed', () => {
    const text = `plain:secret\ntagged:{PLAIN}secret\ndes:${DES}\ngood:${BCRYPT}\nweak:${SHA1}`;
    const p = parseHtpasswd(text, strict);
    expect([...p.entries.keys()]).toEqual(['good', 'weak']);
    expect(p.refusedUsers).toEqual(['plain', 'tagged', 'des']);
    expect(p.weakUsers).toEqual(['weak']);
    expect(p.problems).toEqual([]);

    const loose = parseHtpasswd(text, { allowInsecureHashes: true });
    expect([...loose.entries.keys()]).toEqual(['plain', 'tagged', 'good', 'weak']);
    expect(loose.entries.get('plain')?.scheme).toBe('plain');
    expect(loose.refusedUsers).toEqual([]);
    expect(loose.weakUsers).toEqual(['plain', 'tagged', 'weak']);
    // DES crypt cannot be verified by mlgate, so allowing it only turns it into a reported problem.
    expect(loose.problems).toEqual([{ line: 3, message: expect.stringMatching(/"des".*DES crypt/) }]);
  });

  it('empty input', () => {
    expect(parseHtpasswd('', strict)).toEqual({ entries: new Map(), problems: [], weakUsers: [], refusedUsers: [] });
  });

  it.skipIf(!HAVE_HTPASSWD)(`parses a file written by htpasswd and verifies its users${HAVE_HTPASSWD ? '' : NO_HTPASSWD}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mlgate-parse-'));
    try {
      const file = join(dir, 'htpasswd');
      const mk = (flags: string[], user: string, pw: string) =>
        expect(spawnSync('htpasswd', ['-b', ...flags, file, user, pw]).status).toBe(0);
      mk(['-c', '-B', '-C', '4'], 'alice', 'a-pass');
      mk(['-m'], 'bob', 'b-pass');
      mk(['-s'], 'carol', 'c-pass');
      mk(['-5'], 'dave', 'd-pass');
      mk(['-d'], 'eve', 'e-pass');
      const p = parseHtpasswd(readFileSync(file, 'utf8'), strict);
      expect(p.problems).toEqual([]);
      expect(p.weakUsers).toEqual(['bob', 'carol']);
      expect(p.refusedUsers).toEqual(['eve']);
      for (const [user, pw] of [['alice', 'a-pass'], ['bob', 'b-pass'], ['carol', 'c-pass'], ['dave', 'd-pass']] as const) {
        const entry = p.entries.get(user)!;
        expect(await verifyHash(entry.hash, pw)).toBe(true);
        expect(await verifyHash(entry.hash, 'x' + pw)).toBe(false);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('userNameProblem', () => {
  it.each(['alice', 'Jane Doe', 'jürgen@example.org', 'x'.repeat(255), 'ü'.repeat(127)])('accepts %s', (u) => {
    expect(userNameProblem(u)).toBeUndefined();
  });
  it.each(['', 'a:b', 'tab\there', 'nl\n', 'del\u007f', 'c1\u0085', ' lead', 'trail ', '#hash', 'x'.repeat(256), 'ü'.repeat(128)])(
    'refuses %j',
    (u) => {
      expect(userNameProblem(u)).toBeTypeOf('string');
    },
  );
});

describe('editing', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mlgate-edit-'));
    file = join(dir, 'htpasswd');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const onlyTheFile = () => expect(readdirSync(dir)).toEqual(['htpasswd']);

  it('creates a missing file with mode 0600', async () => {
    const hash = await hashPassword('a-pass', 4);
    await setHtpasswdUser(file, 'alice', hash, { mustNotExist: true });
    expect(readFileSync(file, 'utf8')).toBe(`alice:${hash}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    onlyTheFile();
    expect(await readHtpasswdUsers(file)).toEqual(['alice']);
  });

  it('replaces a line in place and keeps every other byte', async () => {
    const invalidUtf8 = Buffer.from([0x23, 0x20, 0xff, 0xfe, 0x0a]); // "# \xff\xfe\n"
    const before = Buffer.concat([
      Buffer.from(`\uFEFF# header comment\r\nalice:${BCRYPT}\r\n\r\n`),
      invalidUtf8,
      Buffer.from(`bob:${SHA1}:Bob, keep me\r\n  # indented\ncarol:${APR1}`), // no final newline
    ]);
    writeFileSync(file, before);
    chmodSync(file, 0o640);
    const hash = await hashPassword('new-pass', 4);

    await setHtpasswdUser(file, 'bob', hash, { mustExist: true });
    const after = readFileSync(file);
    const expected = Buffer.from(before.toString('latin1').replace(`bob:${SHA1}:`, `bob:${hash}:`), 'latin1');
    expect(after.equals(expected)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    onlyTheFile();

    // Appending keeps the file's CRLF style and first ends the unterminated last line.
    await setHtpasswdUser(file, 'dave', hash, { mustNotExist: true });
    expect(readFileSync(file).equals(Buffer.concat([expected, Buffer.from(`\r\ndave:${hash}\r\n`)]))).toBe(true);

    // Removing restores the earlier bytes except for the line break added before dave.
    expect(await removeHtpasswdUser(file, 'dave')).toBe(true);
    expect(readFileSync(file).equals(Buffer.concat([expected, Buffer.from('\r\n')]))).toBe(true);

    // The first line (after the BOM) can be replaced too.
    await setHtpasswdUser(file, 'alice', hash, {});
    expect(readFileSync(file).subarray(0, 3).equals(Buffer.from([0xef, 0xbb, 0xbf]))).toBe(true);
    const p = parseHtpasswd(readFileSync(file, 'utf8'), strict);
    expect(p.problems).toEqual([]);
    expect([...p.entries.keys()]).toEqual(['alice', 'bob', 'carol']);
    expect(await verifyHash(p.entries.get('alice')!.hash, 'new-pass')).toBe(true);
    expect(await verifyHash(p.entries.get('bob')!.hash, 'new-pass')).toBe(true);
    expect(await readHtpasswdUsers(file)).toEqual(['alice', 'bob', 'carol']);
    onlyTheFile();
  });

  it('set drops later duplicates; remove removes every line of the user', async () => {
    writeFileSync(file, `alice:${BCRYPT}\nbob:${BCRYPT}\nalice:${SHA1}\n# end\n`);
    await setHtpasswdUser(file, 'alice', APR1, {});
    expect(readFileSync(file, 'utf8')).toBe(`alice:${APR1}\nbob:${BCRYPT}\n# end\n`);
    writeFileSync(file, `alice:${BCRYPT}\nbob:${BCRYPT}\nalice:${SHA1}\n# end\n`);
    expect(await removeHtpasswdUser(file, 'alice')).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(`bob:${BCRYPT}\n# end\n`);
    onlyTheFile();
  });

  it('user matching is exact, and comments that look like users are left alone', async () => {
    writeFileSync(file, `#alice:${BCRYPT}\nAlice:${BCRYPT}\nalice2:${BCRYPT}\n`);
    expect(await removeHtpasswdUser(file, 'alice')).toBe(false);
    await setHtpasswdUser(file, 'alice', APR1, {});
    expect(readFileSync(file, 'utf8')).toBe(`#alice:${BCRYPT}\nAlice:${BCRYPT}\nalice2:${BCRYPT}\nalice:${APR1}\n`);
  });

  it('mustExist / mustNotExist give actionable errors and leave the file untouched', async () => {
    writeFileSync(file, `alice:${BCRYPT}\n`);
    await expect(setHtpasswdUser(file, 'alice', APR1, { mustNotExist: true })).rejects.toThrow(
      `user "alice" already exists in ${file}; use "mlgate user passwd alice"`,
    );
    await expect(setHtpasswdUser(file, 'Jane Doe', APR1, { mustExist: true })).rejects.toThrow(
      `user "Jane Doe" does not exist in ${file}; use "mlgate user add 'Jane Doe'"`,
    );
    expect(readFileSync(file, 'utf8')).toBe(`alice:${BCRYPT}\n`);
    onlyTheFile();
  });

  it('validates user names and hashes before touching anything', async () => {
    await expect(setHtpasswdUser(file, 'a:b', BCRYPT, {})).rejects.toThrow(/invalid user name "a:b": .*':'/);
    await expect(setHtpasswdUser(file, 'x'.repeat(256), BCRYPT, {})).rejects.toThrow(/255 bytes/);
    await expect(setHtpasswdUser(file, 'nl\nuser', BCRYPT, {})).rejects.toThrow(/control character/);
    await expect(setHtpasswdUser(file, '', BCRYPT, {})).rejects.toThrow(/empty/);
    await expect(setHtpasswdUser(file, 'alice', 'a:b', {})).rejects.toThrow(/colon/);
    await expect(setHtpasswdUser(file, 'alice', `${BCRYPT}\nmallory:x`, {})).rejects.toThrow(/control/);
    await expect(setHtpasswdUser(file, 'alice', '$2y$05$short', {})).rejects.toThrow(/malformed bcrypt/);
    await expect(removeHtpasswdUser(file, 'a:b')).rejects.toThrow(/invalid user name/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a missing file has no users and removing from it is a no-op', async () => {
    expect(await readHtpasswdUsers(file)).toEqual([]);
    expect(await removeHtpasswdUser(file, 'alice')).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a missing directory is a clear error', async () => {
    const nowhere = join(dir, 'no', 'such', 'htpasswd');
    await expect(setHtpasswdUser(nowhere, 'alice', BCRYPT, {})).rejects.toThrow(/directory .* does not exist/);
  });

  it('edits through a symlink without replacing the link', async () => {
    const real = join(dir, 'real-htpasswd');
    writeFileSync(real, `alice:${BCRYPT}\n`);
    symlinkSync('real-htpasswd', file);
    await setHtpasswdUser(file, 'bob', APR1, {});
    expect(lstatSync(file).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toBe(`alice:${BCRYPT}\nbob:${APR1}\n`);
    expect(readdirSync(dir).sort()).toEqual(['htpasswd', 'real-htpasswd']);
  });

  it.skipIf(!HAVE_HTPASSWD)(`htpasswd and mlgate can edit the same file${HAVE_HTPASSWD ? '' : NO_HTPASSWD}`, async () => {
    expect(spawnSync('htpasswd', ['-cbB', '-C', '4', file, 'alice', 'a-pass']).status).toBe(0);
    await setHtpasswdUser(file, 'bob', await hashPassword('b-pass', 4), { mustNotExist: true });
    expect(spawnSync('htpasswd', ['-bm', file, 'carol', 'c-pass']).status).toBe(0);
    await setHtpasswdUser(file, 'alice', await hashPassword('a-new', 4), { mustExist: true });
    expect(spawnSync('htpasswd', ['-vb', file, 'alice', 'a-new']).status).toBe(0);
    expect(spawnSync('htpasswd', ['-vb', file, 'bob', 'b-pass']).status).toBe(0);
    expect(spawnSync('htpasswd', ['-vb', file, 'bob', 'wrong']).status).not.toBe(0);
    expect(await readHtpasswdUsers(file)).toEqual(['alice', 'bob', 'carol']);
    const p = parseHtpasswd(readFileSync(file, 'utf8'), strict);
    expect(await verifyHash(p.entries.get('carol')!.hash, 'c-pass')).toBe(true);
    expect(await removeHtpasswdUser(file, 'alice')).toBe(true);
    expect(spawnSync('htpasswd', ['-vb', file, 'alice', 'a-new']).status).not.toBe(0);
    onlyTheFile();
  });
});
