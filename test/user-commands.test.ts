// `mlgate user ...` run as users run it, against a real htpasswd file that also holds lines
// written by others: comments, other users, a `:comment` field. Those bytes must survive.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseHtpasswd } from '../src/auth/htpasswd-file.ts';
import { verifyHash } from '../src/auth/htpasswd-formats.ts';
import { runCli } from './helpers/cli.ts';
import { HAVE_PYTHON_PTY, runCliAtTerminal } from './helpers/terminal.ts';

// Made once with `htpasswd -nbB -C 5`; the password is "secret".
const CAROL = 'carol:$2y$05$ngtJEApAbveND4n3G88BU.SBHxb9/OzT.X4pStt0Y6uhB3KZC/pbi';
const ORIGINAL = [
  '# MLflow users: ask the platform team before editing',
  CAROL,
  '',
  '# service accounts',
  `ci-bot:${CAROL.split(':')[1]}:added for the nightly job`,
  '',
].join('\n');

let dir: string;
let htpasswd: string;
// The lowest bcrypt cost keeps each hash at a few milliseconds.
const env = { MLGATE_AUTH_BCRYPT_COST: '4' };
const user = (args: string[], input?: string) => runCli(['user', ...args, '--htpasswd', htpasswd], { cwd: dir, env, input });
const read = () => readFileSync(htpasswd, 'utf8');

async function passwordOf(name: string): Promise<{ check: (password: string) => Promise<boolean> }> {
  const entry = parseHtpasswd(read(), { allowInsecureHashes: false }).entries.get(name);
  expect(entry, `${name} in the file`).toBeDefined();
  return { check: (password) => verifyHash(entry!.hash, password) };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mlgate-user-'));
  htpasswd = join(dir, 'htpasswd');
  writeFileSync(htpasswd, ORIGINAL, { mode: 0o600 });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('mlgate user', () => {
  it('add, list, passwd, remove: a round trip that leaves every other byte alone', async () => {
    const added = user(['add', 'bob'], 'first-password\n');
    expect(added).toMatchObject({ status: 0, stdout: `added user "bob" to ${htpasswd}\n`, stderr: '' });
    expect(read()).toMatch(new RegExp(`^${escape(ORIGINAL)}bob:\\$2y\\$04\\$[./A-Za-z0-9]{53}\\n$`));
    expect(await (await passwordOf('bob')).check('first-password')).toBe(true);

    expect(user(['list'])).toMatchObject({ status: 0, stdout: 'carol\nci-bot\nbob\n' });

    const changed = user(['passwd', 'bob'], 'second password with spaces \r\nignored second line\n');
    expect(changed).toMatchObject({ status: 0, stdout: `changed the password of "bob" in ${htpasswd}\n` });
    const bob = await passwordOf('bob');
    expect(await bob.check('second password with spaces ')).toBe(true);
    expect(await bob.check('first-password')).toBe(false);
    expect(read().startsWith(ORIGINAL)).toBe(true);

    expect(user(['remove', 'bob'])).toMatchObject({ status: 0, stdout: `removed user "bob" from ${htpasswd}\n` });
    expect(read()).toBe(ORIGINAL);
  });

  it('passwd keeps the line in place, with its :comment', async () => {
    expect(user(['passwd', 'ci-bot'], 'rotated\n').status).toBe(0);
    const text = read();
    expect(text.split('\n')[4]).toMatch(/^ci-bot:\$2y\$04\$[^:]+:added for the nightly job$/);
    expect(text.replace(/^ci-bot:[^:]+/m, `ci-bot:${CAROL.split(':')[1]}`)).toBe(ORIGINAL);
    expect(await (await passwordOf('ci-bot')).check('rotated')).toBe(true);
  });

  it('refuses a user that exists, one that does not, an empty or missing password and a bad name', () => {
    const cases: [args: string[], input: string, stderr: string][] = [
      [['add', 'carol'], 'pw\n', `mlgate: user "carol" already exists in ${htpasswd}; "user passwd carol" changes the password\n`],
      [['passwd', 'dave'], 'pw\n', `mlgate: user "dave" does not exist in ${htpasswd}; nothing was changed\n`],
      [['remove', 'dave'], '', `mlgate: user "dave" does not exist in ${htpasswd}; nothing was changed\n`],
      [['add', 'erin'], '\n', 'mlgate: the password is empty; nothing was changed\n'],
      [['add', 'erin'], '', 'mlgate: no password on standard input (pipe it in, or run this at a terminal to be asked)\n'],
      [['add', 'er:in'], 'pw\n', "mlgate: user name must not contain ':'; nothing was changed\n"],
      [['add', '#erin'], 'pw\n', "mlgate: user name must not start with '#' (the line would be a comment); nothing was changed\n"],
    ];
    for (const [args, input, stderr] of cases) {
      const result = user(args, input);
      expect({ args, status: result.status, stderr: result.stderr, stdout: result.stdout }).toEqual({ args, status: 1, stderr, stdout: '' });
    }
    expect(read()).toBe(ORIGINAL);
  });

  it('add creates a missing file, and its directory, with mode 0600, and says so', async () => {
    htpasswd = join(dir, 'new', 'dir', 'htpasswd');
    expect(user(['add', 'bob'], 'pw\n')).toEqual({ status: 0, stdout: `added user "bob" to ${htpasswd}\n`, stderr: `note: ${htpasswd} did not exist; it was created (mode 0600)\n` });
    expect(statSync(htpasswd).mode & 0o777).toBe(0o600);
    expect(await (await passwordOf('bob')).check('pw')).toBe(true);
    expect(user(['add', 'carl'], 'pw\n').stderr).toBe('');
  });

  it('list, passwd and remove on a file that does not exist say so, rather than "no users"', () => {
    htpasswd = join(dir, 'htpaswd');
    const missing = `${htpasswd} does not exist (check --htpasswd or auth.htpasswd; "mlgate user add NAME --htpasswd ${htpasswd}" creates it)`;
    expect(user(['list'])).toEqual({ status: 1, stdout: '', stderr: `mlgate: ${missing}\n` });
    expect(user(['passwd', 'carol'], 'pw\n')).toEqual({ status: 1, stdout: '', stderr: `mlgate: ${missing}; nothing was changed\n` });
    expect(user(['remove', 'carol'])).toEqual({ status: 1, stdout: '', stderr: `mlgate: ${missing}; nothing was changed\n` });
    expect(existsSync(htpasswd)).toBe(false);

    // Before the first start, the default file is simply not there yet.
    expect(runCli(['user', 'list'], { cwd: dir })).toEqual({
      status: 1,
      stdout: '',
      stderr: 'mlgate: there is no htpasswd file at config/htpasswd yet: the first "mlgate serve" creates it with an "admin" user, or "mlgate user add NAME" creates it now\n',
    });
  });

  it('list on an empty file says there are no users', () => {
    writeFileSync(htpasswd, '# nobody yet\n');
    expect(user(['list'])).toEqual({ status: 0, stdout: '', stderr: `no users in ${htpasswd}\n` });
  });

  it('takes the file and the bcrypt cost from --config; configuration problems exit 2', () => {
    writeFileSync(join(dir, 'mlgate.yaml'), `auth:\n  htpasswd: ${htpasswd}\n  bcryptCost: 5\n`);
    const added = runCli(['user', 'add', 'bob', '--config', 'mlgate.yaml'], { cwd: dir, input: 'pw\n' });
    expect(added.status).toBe(0);
    expect(read()).toMatch(/^bob:\$2y\$05\$/m);

    const bad = runCli(['user', 'list', '--config', 'mlgate.yaml'], { cwd: dir, env: { MLGATE_AUTH_BCRYPT_COST: '99' } });
    expect(bad).toMatchObject({ status: 2, stdout: '' });
    expect(bad.stderr).toBe('mlgate: invalid configuration:\n  MLGATE_AUTH_BCRYPT_COST (environment): auth.bcryptCost: must be at most 17, got 99\n');
  });

  it.skipIf(!HAVE_PYTHON_PTY)('at a terminal, asks twice without echoing the password', async () => {
    const typed = runCliAtTerminal(['user', 'add', 'tty-user', '--htpasswd', htpasswd], [
      ['New password for tty-user: ', 'typed-secret\r'],
      ['Repeat it: ', 'typed-secret\r'],
    ], { cwd: dir, env });
    expect(typed.status).toBe(0);
    expect(typed.screen).toContain('added user "tty-user"');
    expect(typed.screen).not.toContain('typed-secret');
    expect(await (await passwordOf('tty-user')).check('typed-secret')).toBe(true);

    const mismatch = runCliAtTerminal(['user', 'passwd', 'tty-user', '--htpasswd', htpasswd], [
      ['New password for tty-user: ', 'one\r'],
      ['Repeat it: ', 'two\r'],
    ], { cwd: dir, env });
    expect(mismatch.status).toBe(1);
    expect(mismatch.screen).toContain('mlgate: the two passwords do not match; nothing was changed');
    expect(await (await passwordOf('tty-user')).check('typed-secret')).toBe(true);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
