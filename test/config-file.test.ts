// The configuration as users meet it: a YAML file, MLGATE_* variables and flags, the messages
// start-up prints when something is wrong, and `config check`.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument, parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { flagOverrides } from '../src/cli/config-flags.ts';
import { effectiveConfigYaml, REDACTED, redactSecrets } from '../src/config/effective-config.ts';
import { describeIssue } from '../src/config/issue-message.ts';
import { ConfigError, environmentVariableNames, loadConfig, type LoadConfigOptions } from '../src/config/load.ts';
import { leafPaths, secret, secretPaths } from '../src/config/schema-paths.ts';
import { configSchema } from '../src/config/schema.ts';
import { PROJECT_ROOT, runCli } from './helpers/cli.ts';

const EXAMPLE_FILE = join(PROJECT_ROOT, 'config', 'mlgate.example.yaml');
const DEFAULTS = configSchema.parse({});

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'mlgate-config-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(text: string, name = 'mlgate.yaml'): string {
  writeFileSync(join(dir, name), text);
  return name;
}

/** The problems loadConfig reports, or [] when the configuration is valid. */
function problemsOf(options: LoadConfigOptions): string[] {
  try {
    loadConfig({ env: {}, cwd: dir, ...options });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems;
  }
}

const lines = (...text: string[]) => text.join('\n') + '\n';

describe('configuration file problems: every one at once, "file:line: key: what is wrong"', () => {
  const table: { name: string; file: string; problems: string[] }[] = [
    {
      name: 'wrong types, out of range and not one of the options, sorted by line',
      file: lines(
        'tls:',
        '  minVersion: TLSv1.1',
        '  hsts: true',
        'auth:',
        '  bcryptCost: 3',
        '  hashWorkers: 0',
        '  cacheSize: 1.5',
        'port: "8080"',
        'shutdownGrace: soon',
        'log: {level: loud}',
      ),
      problems: [
        'mlgate.yaml:2: tls.minVersion: must be one of "TLSv1.2", "TLSv1.3", got "TLSv1.1"',
        'mlgate.yaml:3: tls.hsts: must be a Strict-Transport-Security header value, or false to send none, got true',
        'mlgate.yaml:5: auth.bcryptCost: must be at least 4, got 3',
        'mlgate.yaml:6: auth.hashWorkers: must be at least 1, got 0',
        'mlgate.yaml:7: auth.cacheSize: must be a whole number, got 1.5',
        'mlgate.yaml:8: port: must be a number, got "8080"',
        'mlgate.yaml:9: shutdownGrace: must be a duration such as 500ms, 30s, 5m, 12h or 7d (a bare number is seconds), got "soon"',
        'mlgate.yaml:10: log.level: must be one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "loud"',
      ],
    },
    {
      name: 'unknown keys at any depth, with the key that was probably meant',
      file: lines('tls:', '  crt: server.pem', '  extra:', '    deeper: 1', 'auth:', '  bcrypt_cost: 10', 'realm: MLflow', 'tls_key: key.pem', 'colour: blue'),
      problems: [
        'mlgate.yaml:2: tls.crt: unknown key (did you mean tls.cert?)',
        'mlgate.yaml:3: tls.extra: unknown key',
        'mlgate.yaml:6: auth.bcrypt_cost: unknown key (did you mean auth.bcryptCost?)',
        'mlgate.yaml:7: realm: unknown key (did you mean auth.realm?)',
        'mlgate.yaml:8: tls_key: unknown key (did you mean tls.key?)',
        'mlgate.yaml:9: colour: unknown key',
      ],
    },
    {
      name: 'a duplicate key names both lines',
      file: lines('port: 8080', 'auth:', '  realm: one', '  realm: two', 'port: 9090'),
      problems: [
        'mlgate.yaml:4: auth.realm: duplicate key (first set on line 3)',
        'mlgate.yaml:5: port: duplicate key (first set on line 1)',
      ],
    },
    {
      name: 'a certificate without its key is one message naming both keys',
      file: lines('tls:', '  minVersion: TLSv1.1', '  cert: /etc/mlgate/fullchain.pem'),
      problems: [
        'mlgate.yaml:2: tls.minVersion: must be one of "TLSv1.2", "TLSv1.3", got "TLSv1.1"',
        'mlgate.yaml:3: tls.cert: is set without tls.key; set both (the certificate chain and its private key), or neither for a self-signed pair in tls.selfSignedDir',
      ],
    },
    {
      name: 'and a key without its certificate',
      file: lines('tls:', '  key: /etc/mlgate/privkey.pem'),
      problems: [
        'mlgate.yaml:2: tls.key: is set without tls.cert; set both (the certificate chain and its private key), or neither for a self-signed pair in tls.selfSignedDir',
      ],
    },
    {
      name: 'list entries are located on their own line',
      file: lines('proxy:', '  trustedProxies:', '    - 10.0.0.0/8', '    - 10.0.0.0/33', '  stripHeaders: [X-Ok, "Not A Header"]', '  timeout: -1', '  maxBodySize: lots'),
      problems: [
        'mlgate.yaml:4: proxy.trustedProxies[1]: must be an IP address or CIDR range, e.g. 10.0.0.0/8, got "10.0.0.0/33"',
        'mlgate.yaml:5: proxy.stripHeaders[1]: must be an HTTP header name, got "Not A Header"',
        'mlgate.yaml:6: proxy.timeout: must be at least 0, got -1',
        'mlgate.yaml:7: proxy.maxBodySize: must be a size such as 512KB, 100MB or 5GiB (a bare number is bytes), got "lots"',
      ],
    },
    {
      name: 'a key with no value, and sections that are mappings',
      file: lines('port:', 'tls: on', 'auth: [realm]'),
      problems: [
        'mlgate.yaml:1: port: has no value (remove the key to use the default)',
        'mlgate.yaml:2: tls: must be a mapping of keys to values, got "on"',
        'mlgate.yaml:3: auth: must be a mapping of keys to values, got a list',
      ],
    },
    {
      name: 'YAML syntax errors with line and column; nothing else is checked',
      file: lines('port: 8080', 'tls:', '  hosts: [a.example', '  cert: x'),
      problems: ['mlgate.yaml:4:3: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    },
    {
      name: 'tabs for indentation',
      file: lines('tls:', '\tenabled: false'),
      problems: ['mlgate.yaml:2:1: invalid YAML: Tabs are not allowed as indentation'],
    },
    {
      name: 'a file that is a list',
      file: lines('- port: 8080'),
      problems: ['mlgate.yaml:1:1: the file must be a mapping of keys to values (like "port: 8888"), not a list'],
    },
    {
      name: 'a file that is one value',
      file: lines('', 'port 8080'),
      problems: ['mlgate.yaml:2:1: the file must be a mapping of keys to values (like "port: 8888"), not a single value'],
    },
  ];

  for (const { name, file, problems } of table) {
    it(name, () => {
      expect(problemsOf({ configPath: writeConfig(file) })).toEqual(problems);
    });
  }

  it('an explicit file that is missing or a directory', () => {
    expect(problemsOf({ configPath: 'missing.yaml' })).toEqual(['missing.yaml: configuration file not found']);
    expect(problemsOf({ env: { MLGATE_CONFIG: 'missing.yaml' } })).toEqual(['missing.yaml: configuration file not found (named by MLGATE_CONFIG)']);
    mkdirSync(join(dir, 'conf.d'));
    expect(problemsOf({ configPath: 'conf.d' })).toEqual(['conf.d: is a directory, not a configuration file']);
  });

  it('an empty file, a file of comments and empty sections all mean the defaults', () => {
    for (const text of ['', '# nothing yet\n', lines('tls:', '  # cert: x', 'auth:')]) {
      expect(loadConfig({ configPath: writeConfig(text), env: {}, cwd: dir }).config).toEqual(DEFAULTS);
    }
  });

  it('ConfigError.message is what start-up prints: every problem, one per line', () => {
    const error = (() => { try { loadConfig({ configPath: writeConfig(lines('port: x', 'log: {level: loud}')), env: {}, cwd: dir }); } catch (err) { return err as ConfigError; } })();
    expect(error?.message).toBe(
      'invalid configuration:\n' +
      '  mlgate.yaml:1: port: must be a number, got "x"\n' +
      '  mlgate.yaml:2: log.level: must be one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "loud"',
    );
  });
});

describe('precedence: defaults < file < MLGATE_* environment < flags', () => {
  const flags = (options: Record<string, unknown>) => flagOverrides(options);

  it('each source wins over the ones before it', () => {
    const configPath = writeConfig(lines('port: 1001', 'auth:', '  realm: from-file'));
    const env = { MLGATE_PORT: '1002' };
    expect(loadConfig({ env: {}, cwd: dir }).config.port).toBe(8888);
    expect(loadConfig({ configPath, env: {}, cwd: dir }).config.port).toBe(1001);
    expect(loadConfig({ configPath, env, cwd: dir }).config.port).toBe(1002);
    const both = loadConfig({ configPath, env, cwd: dir, overrides: flags({ port: '1003' }) }).config;
    expect(both.port).toBe(1003);
    expect(both.auth.realm).toBe('from-file');
  });

  it('reads config/mlgate.yaml when present; --config wins over MLGATE_CONFIG', () => {
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'mlgate.yaml'), 'port: 2001\n');
    writeConfig('port: 2002\n', 'env.yaml');
    writeConfig('port: 2003\n', 'flag.yaml');
    const { originOf, ...loaded } = loadConfig({ env: {}, cwd: dir });
    expect(loaded).toEqual({ config: { ...DEFAULTS, port: 2001 }, file: join(dir, 'config', 'mlgate.yaml') });
    // Where each value came from, as problems name it.
    expect([originOf(['port']), originOf(['host'])]).toEqual([`${join('config', 'mlgate.yaml')}:1`, '(defaults)']);
    const flagged = loadConfig({ env: { MLGATE_HOST: '127.0.0.1' }, cwd: dir, overrides: flags({ port: '2004' }) });
    expect([flagged.originOf(['port']), flagged.originOf(['host'])]).toEqual(['--port (command line)', 'MLGATE_HOST (environment)']);
    expect(loadConfig({ env: { MLGATE_CONFIG: 'env.yaml' }, cwd: dir }).config.port).toBe(2002);
    expect(loadConfig({ configPath: 'flag.yaml', env: { MLGATE_CONFIG: 'env.yaml' }, cwd: dir }).config.port).toBe(2003);
  });

  it('environment values are read as YAML would read them, as text where the key wants text', () => {
    const { config } = loadConfig({
      cwd: dir,
      env: {
        MLGATE_TLS_ENABLED: 'false',
        MLGATE_TLS_HSTS: 'false',
        MLGATE_TLS_HOSTS: 'a.example, 10.0.0.1',
        MLGATE_PROXY_TRUSTED_PROXIES: '[10.0.0.0/8]',
        MLGATE_AUTH_REALM: 'Team #1',
        MLGATE_TLS_SELF_SIGNED_DIR: '2024.10',
        MLGATE_AUTH_BCRYPT_COST: '4',
        MLGATE_AUTH_HASH_WORKERS: 'auto',
        MLGATE_SHUTDOWN_GRACE: '45',
        MLGATE_LOG_LEVEL: '', // empty is unset, as compose files and systemd units write it
      },
    });
    expect(config.tls).toMatchObject({ enabled: false, hsts: false, hosts: ['a.example', '10.0.0.1'], selfSignedDir: '2024.10' });
    expect(config.proxy.trustedProxies).toEqual(['10.0.0.0/8']);
    expect(config.auth).toMatchObject({ realm: 'Team #1', bcryptCost: 4, hashWorkers: 'auto' });
    expect(config.shutdownGrace).toBe(45_000);
    expect(config.log.level).toBe('info');
  });

  it('names the variable or flag a bad value came from, after the file problems', () => {
    const configPath = writeConfig(lines('port: 1001', 'log:', '  level: loud'));
    const problems = problemsOf({
      configPath,
      env: { MLGATE_PORT: 'eighty', MLGATE_PORTT: '1', MLGATE_WHATEVER: 'x', MLGATE_TLS_CERT: 'cert.pem' },
      overrides: flags({ upstream: 'ftp://mlflow' }),
    });
    expect(problems).toEqual([
      'mlgate.yaml:3: log.level: must be one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "loud"',
      'MLGATE_PORTT (environment): unknown variable; did you mean MLGATE_PORT? (the variables are listed in docs/configuration.md)',
      'MLGATE_WHATEVER (environment): unknown variable (the variables are listed in docs/configuration.md)',
      'MLGATE_PORT (environment): port: must be a number, got "eighty"',
      'MLGATE_TLS_CERT (environment): tls.cert: is set without tls.key; set both (the certificate chain and its private key), or neither for a self-signed pair in tls.selfSignedDir',
      '--upstream (command line): upstream: must be an http:// or https:// URL without query, fragment or credentials, got "ftp://mlflow"',
    ]);
  });

  it('has one variable per schema key', () => {
    const names = environmentVariableNames();
    expect(names.size).toBe(leafPaths(configSchema).length);
    expect(names.get('MLGATE_TLS_CERT')).toEqual(['tls', 'cert']);
    expect(names.get('MLGATE_AUTH_BCRYPT_COST')).toEqual(['auth', 'bcryptCost']);
    expect(names.get('MLGATE_PROXY_MAX_BODY_SIZE')).toEqual(['proxy', 'maxBodySize']);
  });
});

describe('config/mlgate.example.yaml', () => {
  const example = readFileSync(EXAMPLE_FILE, 'utf8');

  it('is valid as it is and gives exactly the defaults', () => {
    expect(loadConfig({ configPath: EXAMPLE_FILE, env: {}, cwd: dir }).config).toEqual(DEFAULTS);
  });

  it('documents every key of the schema, optional ones as commented-out examples that are valid too', () => {
    // "  # cert: /path" is an example value; prose comments never start with "word: ".
    const uncommented = example.replace(/^(\s*)# ([a-z][A-Za-z]*: )/gm, '$1$2');
    const doc = parseDocument(uncommented);
    const missing = leafPaths(configSchema).filter((path) => !doc.hasIn(path)).map((path) => path.join('.'));
    expect(missing).toEqual([]);
    expect(() => loadConfig({ configPath: writeConfig(uncommented), env: {}, cwd: dir })).not.toThrow();
  });

  it('explains every key on the line above it', () => {
    const fileLines = example.split('\n');
    fileLines.forEach((line, i) => {
      if (/^\s*(# )?[a-z][A-Za-z]*:/.test(line) && !/^\s*[a-z][A-Za-z]*:$/.test(line)) {
        expect(fileLines[i - 1], `line ${i + 1}: ${line}`).toMatch(/^\s*#/);
      }
    });
  });
});

describe('secrets', () => {
  it('redactSecrets replaces the value at each path that is set, and nothing else', () => {
    const config = { auth: { realm: 'MLflow', clientSecret: 's3cret' }, oidc: { token: undefined }, port: 1 };
    const redacted = redactSecrets(config, [['auth', 'clientSecret'], ['oidc', 'token'], ['absent', 'key']]);
    expect(redacted).toEqual({ auth: { realm: 'MLflow', clientSecret: REDACTED }, oidc: { token: undefined }, port: 1 });
    expect(config.auth.clientSecret).toBe('s3cret');
  });

  it('a key marked secret() is found through its wrappers and redacted in the printed configuration', () => {
    const schema = z.strictObject({
      name: z.string().default('x'),
      auth: z.strictObject({ clientSecret: secret(z.string()).optional(), cookieKey: secret(z.string().min(8)).default('changeme!') }).prefault({}),
    });
    expect(secretPaths(schema)).toEqual([['auth', 'clientSecret'], ['auth', 'cookieKey']]);
    const printed = effectiveConfigYaml(schema.parse({ auth: { clientSecret: 'abc' } }) as never, schema);
    expect(parseYaml(printed)).toEqual({ name: 'x', auth: { clientSecret: REDACTED, cookieKey: REDACTED } });
    expect(printed).not.toContain('abc');
  });

  it('a problem with a secret key never quotes the value', () => {
    const schema = z.strictObject({ clientSecret: secret(z.string().min(32)), name: z.string().min(32) });
    const issues = schema.safeParse({ clientSecret: 'short-secret', name: 'short-name' }, { reportInput: true }).error!.issues;
    expect(describeIssue(issues[0]!, false)).toBe('must be at least 32 characters long');
    expect(describeIssue(issues[1]!, true)).toBe('must be at least 32 characters long, got "short-name"');
  });

  it('the real schema\'s secrets are marked secret', () => {
    expect(secretPaths(configSchema)).toEqual(expect.arrayContaining([['session', 'secret']]));
  });
});

const BUILT_IN_POLICY = 'policy: no file at config/policy.yaml, so the built-in policy applies: admin is the only admin (when signed in through the htpasswd file, not by a JWT); '
  + 'no rules; everyone has READ on everything; creators have MANAGE on what they create';

describe('mlgate config check', () => {
  it('prints every problem as start-up does and exits 2', () => {
    writeConfig(lines('port: 70000', 'tls:', '  cert: a.pem', 'bogus: 1'));
    const result = runCli(['config', 'check', '--config', 'mlgate.yaml', '--log-level', 'chatty'], { cwd: dir, env: { MLGATE_AUTH_REALM: 'a"b' } });
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe([
      'mlgate: invalid configuration:',
      '  mlgate.yaml:1: port: must be at most 65535, got 70000',
      '  mlgate.yaml:3: tls.cert: is set without tls.key; set both (the certificate chain and its private key), or neither for a self-signed pair in tls.selfSignedDir',
      '  mlgate.yaml:4: bogus: unknown key',
      '  MLGATE_AUTH_REALM (environment): auth.realm: must not contain quotes, backslashes or newlines, got "a\\"b"',
      '  --log-level (command line): log.level: must be one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "chatty"',
      '',
    ].join('\n'));
  });

  it('prints "configuration OK" and the configuration in effect as YAML that loads back to the same', () => {
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'mlgate.yaml'), lines('shutdownGrace: 90', 'proxy:', '  timeout: 1500ms', '  maxBodySize: 10MB'));
    const result = runCli(['config', 'check', '--port', '9443'], { cwd: dir, env: { MLGATE_AUTH_BCRYPT_COST: '10' } });
    expect(result.stderr).toBe(`configuration OK (config/mlgate.yaml)\n${BUILT_IN_POLICY}\n`);
    expect(result.status).toBe(0);
    const printed = parseYaml(result.stdout) as Record<string, Record<string, unknown>>;
    expect(printed.shutdownGrace).toBe('90s');
    expect(printed.port).toBe(9443);
    expect(printed.proxy).toMatchObject({ timeout: '1500ms', maxBodySize: 10_000_000 });
    expect(printed.auth).toMatchObject({ bcryptCost: 10 });

    writeConfig(result.stdout, 'printed.yaml');
    const reloaded = loadConfig({ configPath: 'printed.yaml', env: {}, cwd: dir }).config;
    expect(reloaded).toEqual({ ...DEFAULTS, port: 9443, shutdownGrace: 90_000, proxy: { ...DEFAULTS.proxy, timeout: 1500, maxBodySize: 10_000_000 }, auth: { ...DEFAULTS.auth, bcryptCost: 10 } });
  });

  it('says "defaults" when there is no file', () => {
    const result = runCli(['config', 'check'], { cwd: dir });
    expect(result.stderr).toBe(`configuration OK (defaults)\n${BUILT_IN_POLICY}\n`);
    expect(parseYaml(result.stdout)).toMatchObject({ port: 8888, tls: { enabled: true }, watchInterval: '1s' });
  });

  it('checks the policy file too, printing every problem with file and line, and exits 2', () => {
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'policy.yaml'), lines(
      'groups:',
      '  team-a: [alice]',
      'admins: ["@"]',
      'rules:',
      '  - { experiment: "a/*", level: WRITE, groups: [team-a] }',
      'defualt: READ',
    ));
    const result = runCli(['config', 'check'], { cwd: dir });
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe([
      'configuration OK (defaults)',
      'mlgate: invalid policy file:',
      '  config/policy.yaml:3: admins[0]: must be a user name, or @group, got "@"',
      '  config/policy.yaml:5: rules[0].level: must be one of NO_PERMISSIONS, READ, EDIT, MANAGE, got "WRITE"',
      '  config/policy.yaml:6: defualt: unknown key (did you mean default?)',
      '',
    ].join('\n'));
  });

  it('reads the policy file authz.policyFile names, and says what it holds when it is valid', () => {
    mkdirSync(join(dir, 'policies'));
    writeConfig(lines('authz:', '  policyFile: policies/access.yaml'));
    writeFileSync(join(dir, 'policies', 'access.yaml'), lines(
      'groups: { team-a: [alice, carol], viewers: [victor] }',
      'admins: [root, "@platform"]',
      'rules:',
      '  - { experiment: "team-a/*", groups: [team-a], level: EDIT }',
      'default: NO_PERMISSIONS',
    ));
    const ok = runCli(['config', 'check', '--config', 'mlgate.yaml'], { cwd: dir });
    expect(ok.stderr).toBe('configuration OK (mlgate.yaml)\npolicy OK (policies/access.yaml): admins root, @platform; 2 groups; 1 rule; default NO_PERMISSIONS\n');
    expect(ok.status).toBe(0);
    expect(parseYaml(ok.stdout)).toMatchObject({ authz: { policyFile: 'policies/access.yaml' } });

    // The default policy file is not looked at when another is named.
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'policy.yaml'), 'admins: "not a list"\n');
    expect(runCli(['config', 'check', '--config', 'mlgate.yaml'], { cwd: dir }).status).toBe(0);

    writeFileSync(join(dir, 'policies', 'access.yaml'), lines('rules:', '  - { model: "m-*", users: ["bad name"], level: READ }'));
    const bad = runCli(['config', 'check', '--config', 'mlgate.yaml'], { cwd: dir });
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('  policies/access.yaml:2: rules[0].users[0]: must be a user name');
  });

  it('says which built-in policy applies when the file is absent, and refuses a directory in its place', () => {
    const absent = runCli(['config', 'check'], { cwd: dir, env: { MLGATE_AUTHZ_POLICY_FILE: 'nowhere/policy.yaml' } });
    expect(absent.status).toBe(0);
    expect(absent.stderr).toBe(`configuration OK (defaults)\n${BUILT_IN_POLICY.replace('config/policy.yaml', 'nowhere/policy.yaml')}\n`);

    mkdirSync(join(dir, 'config', 'policy.yaml'), { recursive: true });
    const directory = runCli(['config', 'check'], { cwd: dir });
    expect(directory.status).toBe(2);
    expect(directory.stderr).toBe('configuration OK (defaults)\nmlgate: invalid policy file:\n  config/policy.yaml: is a directory, not a policy file\n');
  });
});

describe('--dir and MLGATE_HOME: where relative paths resolve', () => {
  /** A configuration directory elsewhere than the one the command runs in. */
  function home(name: string, ...settings: string[]): string {
    mkdirSync(join(dir, name, 'config'), { recursive: true });
    writeFileSync(join(dir, name, 'config', 'mlgate.yaml'), lines(...settings));
    return join(dir, name);
  }
  const checkedPort = (result: { stdout: string; stderr: string; status: number | null }) => {
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/^configuration OK \(config\/mlgate\.yaml\)\n/);
    return (parseYaml(result.stdout) as { port: number }).port;
  };

  it('reads config/mlgate.yaml there, before or after the command; --dir wins over MLGATE_HOME', () => {
    home('flag', 'port: 3001');
    home('env', 'port: 3002');
    expect(checkedPort(runCli(['--dir', 'flag', 'config', 'check'], { cwd: dir }))).toBe(3001);
    expect(checkedPort(runCli(['config', 'check', '--dir', join(dir, 'flag')], { cwd: tmpdir() }))).toBe(3001);
    expect(checkedPort(runCli(['config', 'check'], { cwd: dir, env: { MLGATE_HOME: 'env' } }))).toBe(3002);
    expect(checkedPort(runCli(['config', 'check', '--dir', 'flag'], { cwd: dir, env: { MLGATE_HOME: 'env' } }))).toBe(3001);
  });

  it('makes the files the configuration names there, creating the directory and saying so', () => {
    const added = runCli(['user', 'add', 'alice', '--dir', 'state/mlgate'], { cwd: dir, input: 'pw\n' });
    expect(added.status, added.stderr).toBe(0);
    expect(added.stderr).toContain(`mlgate: created ${join(dir, 'state', 'mlgate')} (named by --dir) for its configuration and files\n`);
    expect(readFileSync(join(dir, 'state', 'mlgate', 'config', 'htpasswd'), 'utf8')).toMatch(/^alice:/);

    // Existing now: used as it is, without a word about it; a relative htpasswd in its file resolves there too.
    home('state/other', 'auth:', '  htpasswd: users/htpasswd');
    const again = runCli(['user', 'add', 'bob'], { cwd: dir, env: { MLGATE_HOME: join(dir, 'state', 'other') }, input: 'pw\n' });
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).not.toContain('mlgate: created');
    expect(readFileSync(join(dir, 'state', 'other', 'users', 'htpasswd'), 'utf8')).toMatch(/^bob:/);
  });

  it('refuses a path that is not a directory, and an empty --dir', () => {
    writeFileSync(join(dir, 'plain'), '');
    const file = runCli(['config', 'check', '--dir', 'plain'], { cwd: dir });
    expect(file.status).toBe(1);
    expect(file.stderr).toBe(`mlgate: --dir names ${join(dir, 'plain')}, which is not a directory\n`);
    const empty = runCli(['config', 'check', '--dir', ''], { cwd: dir });
    expect(empty.status).toBe(1);
    expect(empty.stderr).toBe('mlgate: --dir names no directory (the path is empty)\n');
  });

  it('MLGATE_HOME is not taken for an unknown key, and is suggested for a near miss', () => {
    expect(problemsOf({ env: { MLGATE_HOME: 'somewhere' } })).toEqual([]);
    expect(problemsOf({ env: { MLGATE_HOMR: 'somewhere' } })).toEqual([
      'MLGATE_HOMR (environment): unknown variable; did you mean MLGATE_HOME? (the variables are listed in docs/configuration.md)',
    ]);
  });
});
