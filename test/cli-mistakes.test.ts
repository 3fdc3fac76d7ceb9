// Typing mistakes at the command line, run as users run them: each gets an error that says what was
// wrong and what was probably meant, never a gateway started (or a file made) by surprise.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listeningUrl, runCli, spawnCli, stopCli } from './helpers/cli.ts';
import { htpasswdLines } from './helpers/gateway.ts';

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'mlgate-mistakes-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mlgate = (args: string[], env?: NodeJS.ProcessEnv) => runCli(args, { cwd: dir, env });

describe('a mistyped command', () => {
  it.each([
    [['usr', 'list'], "mlgate: unknown command 'usr' (did you mean user?); \"mlgate --help\" lists the commands\n"],
    // The misspelt command's own options must not turn it into a complaint about serve's options.
    [['tokn', 'list', '--user', 'bob'], "mlgate: unknown command 'tokn' (did you mean token?); \"mlgate --help\" lists the commands\n"],
    [['--port', '9000', 'grnat', 'bob'], "mlgate: unknown command 'grnat' (did you mean grant?); \"mlgate --help\" lists the commands\n"],
    [['frobnicate'], "mlgate: unknown command 'frobnicate'; \"mlgate --help\" lists the commands\n"],
    [['--prot', '9000'], "mlgate: unknown option '--prot' (did you mean --port?); \"mlgate serve --help\" lists the options\n"],
    [['serve', 'now'], "mlgate: serve takes no arguments, got 'now'; \"mlgate serve --help\" lists its options\n"],
  ])('mlgate %j is refused without starting the gateway', (args, stderr) => {
    const result = mlgate(args);
    expect(result).toEqual({ status: 1, stdout: '', stderr });
    // A start would have made the first-start files.
    expect(existsSync(join(dir, 'config', 'htpasswd'))).toBe(false);
    expect(existsSync(join(dir, 'certs'))).toBe(false);
  });
});

describe('each command takes only the flags it uses', () => {
  const optionsOf = (args: string[]) => {
    const help = mlgate([...args, '--help']);
    expect(help.status, help.stderr).toBe(0);
    return [...help.stdout.matchAll(/^\s+(?:-\w, )?(--[\w-]+)/gm)].map((match) => match[1]).sort();
  };

  it('--help lists them', () => {
    for (const command of [['user', 'add'], ['user', 'passwd'], ['user', 'remove'], ['user', 'list'], ['token', 'issue']]) {
      expect(optionsOf(command).filter((flag) => !['--name', '--ttl'].includes(flag!)), command.join(' ')).toEqual(['--config', '--help', '--htpasswd']);
    }
    expect(optionsOf(['token', 'list'])).toEqual(['--config', '--help', '--htpasswd', '--user']);
    expect(optionsOf(['token', 'revoke'])).toEqual(['--config', '--help']);
    expect(optionsOf(['grant'])).toEqual(['--config', '--force', '--help', '--htpasswd', '--upstream', '--workspace']);
    expect(optionsOf(['revoke'])).toEqual(['--config', '--help', '--upstream', '--workspace']);
    expect(optionsOf(['permissions'])).toEqual(['--config', '--help', '--json', '--upstream', '--workspace']);
    expect(optionsOf(['serve'])).toEqual(expect.arrayContaining(['--port', '--host', '--upstream', '--htpasswd', '--tls-cert', '--no-tls', '--workers', '--log-level']));
    expect(optionsOf(['config', 'check'])).toEqual(optionsOf(['serve']));
  });

  it('a flag of another command is an error, not silently ignored', () => {
    const result = mlgate(['user', 'list', '--port', '9000']);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("error: unknown option '--port'");
  });
});

describe('an htpasswd file named explicitly that does not exist', () => {
  const hint = (path: string) => `auth.htpasswd: ${path} does not exist. Check the path (an existing htpasswd file is used as it is), or create it with a first user: `
    + `npm run mlgate -- user add admin --htpasswd ${path}. Only the default, config/htpasswd, is created on first start\n`;

  it.each([
    ['--htpasswd', ['serve', '--port', '0', '--htpasswd', 'etc/htpaswd'], {}, '--htpasswd (command line)'],
    ['MLGATE_AUTH_HTPASSWD', ['serve', '--port', '0'], { MLGATE_AUTH_HTPASSWD: 'etc/htpaswd' }, 'MLGATE_AUTH_HTPASSWD (environment)'],
    ['the config file', ['serve', '--config', 'mlgate.yaml'], {}, 'mlgate.yaml:3'],
    ['config check', ['config', 'check', '--htpasswd', 'etc/htpaswd'], {}, '--htpasswd (command line)'],
  ])('by %s stops start-up (status 2) with the path, where it was set and a hint; nothing is created', (_by, args, env, origin) => {
    writeFileSync(join(dir, 'mlgate.yaml'), 'port: 0\nauth:\n  htpasswd: etc/htpaswd\n');
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'htpasswd'), 'alice:$2y$04$abcdefghijklmnopqrstuu5qGZzTVIr2SJqQHVfPF3RPqmWZ9HaW\n');
    const result = mlgate(args, env);
    expect(result).toEqual({ status: 2, stdout: '', stderr: `mlgate: invalid configuration:\n  ${origin}: ${hint('etc/htpaswd')}` });
    expect(existsSync(join(dir, 'etc', 'htpaswd'))).toBe(false);
    expect(existsSync(join(dir, 'config', 'htpasswd'))).toBe(false);
  });

  it('an explicit path that is the default one (as in mlgate.example.yaml) is still created on first start', async () => {
    writeFileSync(join(dir, 'mlgate.yaml'), `host: 127.0.0.1\nport: 0\ntls:\n  enabled: false\nauth:\n  htpasswd: ${join(dir, 'config', 'htpasswd')}\n  bcryptCost: 4\n`);
    const cli = spawnCli(['serve', '--config', 'mlgate.yaml'], { cwd: dir });
    try {
      await listeningUrl(cli);
      expect(cli.output().stderr).toMatch(/user:\s+admin\n\s+password:\s+\S{16,}/);
    } finally {
      await stopCli(cli);
    }
    expect(existsSync(join(dir, 'config', 'htpasswd'))).toBe(true);
  });

  it('an existing file named explicitly starts as before', async () => {
    writeFileSync(join(dir, 'users'), await htpasswdLines({ alice: 'alice-password' }), { mode: 0o600 });
    const cli = spawnCli(['serve', '--port', '0', '--host', '127.0.0.1', '--no-tls', '--htpasswd', 'users'], { cwd: dir });
    try {
      await listeningUrl(cli);
      expect(cli.output().stderr).not.toMatch(/password/);
    } finally {
      await stopCli(cli);
    }
  });
});
