// The policy file (config/policy.yaml): its messages, reloading, and the decision it feeds
// (src/authz/decide.ts), precedence first to last.
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/auth/principal.ts';
import { effectiveLevel, groupsOf, isAdmin, mayUseWorkspace, resourceInfoFromTags, subjectOf, type ResourceInfo } from '../src/authz/decide.ts';
import { builtinPolicy, globToRegExp, loadPolicy, parsePolicy, PolicyError, PolicyStore, type Policy } from '../src/authz/policy.ts';
import { captureLogs, startTestGateway, waitForLog } from './helpers/gateway.ts';
import { runCli } from './helpers/cli.ts';
import pino from 'pino';

const dir = mkdtempSync(join(tmpdir(), 'mlgate-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problems(text: string): string[] {
  try {
    parsePolicy(text, 'policy.yaml');
  } catch (err) {
    if (err instanceof PolicyError) return err.problems;
    throw err;
  }
  throw new Error('expected the policy to be refused');
}

const lines = (...text: string[]) => `${text.join('\n')}\n`;

describe('reading the policy file', () => {
  it('reads groups, admins, rules and the default', () => {
    const policy = parsePolicy(lines(
      'groups:',
      '  team-a: [alice, carol]',
      '  viewers: [victor]',
      'admins: [root, "@platform"]',
      'rules:',
      '  - { experiment: "team-a/*", groups: [team-a], level: edit }',
      '  - { model: "shared-*", users: ["*"], level: READ }',
      'default: NO_PERMISSIONS',
    ), 'policy.yaml');
    expect([...policy.admins.users]).toEqual(['root']);
    expect([...policy.admins.groups]).toEqual(['platform']);
    expect(policy.memberOf.get('carol')).toEqual(['team-a']);
    expect(policy.rules.map((rule) => [rule.number, rule.on, rule.pattern, rule.level, rule.everyone])).toEqual([
      [1, 'experiment', 'team-a/*', 'EDIT', false],
      [2, 'registered-model', 'shared-*', 'READ', true],
    ]);
    expect(policy.defaultLevel).toBe('NO_PERMISSIONS');
    expect(policy.admins.htpasswdOnly).toBe(false);
  });

  it('an empty file is a policy with nothing in it: no admins, default READ', () => {
    const policy = parsePolicy('# nothing yet\n', 'policy.yaml');
    expect(policy.admins.users.size + policy.admins.groups.size + policy.rules.length).toBe(0);
    expect(policy.defaultLevel).toBe('READ');
  });

  it('lists every problem at once, each with file, line and key', () => {
    expect(problems(lines(
      'groups:',
      '  team-a: alice',
      'admins: ["@"]',
      'rules:',
      '  - { experiment: "a/*", level: WRITE, groups: [x] }',
      '  - { experiment: "a/*", model: "b", users: [bob], level: READ }',
      '  - { experiment: "c/*", level: READ }',
      '  - { experiment: "d/*", users: [bob], levle: READ }',
      'defualt: READ',
    ))).toEqual([
      'policy.yaml:2: groups.team-a: must be a list, got "alice"',
      'policy.yaml:3: admins[0]: must be a user name, or @group, got "@"',
      'policy.yaml:5: rules[0].level: must be one of NO_PERMISSIONS, READ, EDIT, MANAGE, got "WRITE"',
      'policy.yaml:6: rules[1]: needs exactly one of experiment: or model: (a name glob)',
      'policy.yaml:7: rules[2]: needs users: or groups: (who the rule is for; users: ["*"] for everyone)',
      'policy.yaml:8: rules[3].level: is required',
      'policy.yaml:8: rules[3].levle: unknown key (known: workspace, experiment, model, users, groups, level)',
      'policy.yaml:9: defualt: unknown key (did you mean default?)',
    ]);
  });

  it('reports YAML that does not parse, and duplicate keys, with their line', () => {
    expect(problems('rules: [\n')[0]).toMatch(/^policy\.yaml:2:\d+: invalid YAML: /);
    expect(problems(lines('default: READ', 'default: EDIT'))).toEqual(['policy.yaml:2: default: duplicate key (first set on line 1)']);
    expect(problems('- just a list\n')).toEqual(['policy.yaml:1:1: the file must be a mapping of keys to values (like "default: READ"), not a list']);
  });

  it('no file at all is the built-in policy: default READ, the htpasswd user admin the only admin', () => {
    const policy = loadPolicy(join(dir, 'absent.yaml'));
    expect(policy.source).toBeUndefined();
    expect(policy).toEqual(builtinPolicy());
    expect([...policy.admins.users]).toEqual(['admin']);
    expect(policy.admins.htpasswdOnly).toBe(true);
  });

  it('globs: * any characters, / included; ? one character; the rest literally', () => {
    const glob = globToRegExp('team-a/*.v?');
    expect(['team-a/x.v1', 'team-a/deep/er.v2'].every((name) => glob.test(name))).toBe(true);
    expect(['team-a/x.v10', 'team-ab/x.v1', 'TEAM-A/x.v1', 'team-a/xxv1'].some((name) => glob.test(name))).toBe(false);
    expect(globToRegExp('(a)+[b]').test('(a)+[b]')).toBe(true);
  });
});

describe('reloading', () => {
  it('picks up an edit, keeps the policy in force on a broken one and on a removed file, and logs why', async () => {
    const file = join(dir, 'reload.yaml');
    writeFileSync(file, stringify({ admins: ['root'] }));
    const { logs, stream } = captureLogs();
    const store = new PolicyStore({ path: file, watchIntervalMs: 20 }, pino(stream));
    const changes: Policy[] = [];
    store.onChange((policy) => changes.push(policy));
    store.start();
    try {
      expect([...store.current().admins.users]).toEqual(['root']);
      writeFileSync(file, stringify({ admins: ['root', 'alice'], default: 'EDIT' }));
      await waitForLog(logs, (l) => l.msg === 'policy loaded');
      expect([...store.current().admins.users]).toEqual(['root', 'alice']);
      expect(changes).toHaveLength(1);

      writeFileSync(file, 'admins: [root\n');
      const refused = await waitForLog(logs, (l) => l.msg === 'policy file has problems; keeping the policy in force');
      expect(refused.file).toBe(file);
      expect((refused.problems as string[])[0]).toMatch(new RegExp(`^${file}:2:\\d+: invalid YAML`));
      expect(store.current().defaultLevel).toBe('EDIT');

      unlinkSync(file);
      await waitForLog(logs, (l) => l.msg === 'policy file removed; keeping the policy in force until it returns or mlgate restarts');
      expect(store.current().defaultLevel).toBe('EDIT');
      expect(changes).toHaveLength(1);
    } finally {
      store.stop();
    }
  });

  it('a policy file with problems stops start-up, listing them', async () => {
    const started = startTestGateway({ upstream: 'http://127.0.0.1:9', policy: 'default: SOMETIMES\n' });
    await expect(started).rejects.toThrow(PolicyError);
    await expect(started).rejects.toThrow(/policy\.yaml:1: default: must be one of NO_PERMISSIONS, READ, EDIT, MANAGE, got "SOMETIMES"/);
  });

  it('mlgate serve exits with status 2 and the problems before listening', () => {
    const cwd = mkdtempSync(join(dir, 'serve-'));
    writeFileSync(join(cwd, 'policy.yaml'), 'rules:\n  - { model: "x", level: READ }\n');
    const result = runCli(['serve', '--no-tls', '--port', '0'], { cwd, env: { MLGATE_AUTHZ_POLICY_FILE: 'policy.yaml' } });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('invalid policy file:\n  policy.yaml:2: rules[0]: needs users: or groups:');
  });
});

describe('the decision: where a level comes from, most specific first', () => {
  const policy = parsePolicy(lines(
    'groups: { team-a: [alice], viewers: [victor, alice], platform: [pat] }',
    'admins: [root, "@platform"]',
    'rules:',
    '  - { experiment: "team-a/*", groups: [team-a], level: EDIT }',
    '  - { experiment: "team-a/*", users: ["*"], level: NO_PERMISSIONS }',
    '  - { experiment: "*", groups: [viewers], level: READ }',
    '  - { model: "*", users: [bob], level: MANAGE }',
    'default: NO_PERMISSIONS',
  ), 'policy.yaml');
  const who = (user: string, groups: string[] = [], external = false): Principal => ({ user, method: 'basic', groups, ...(external ? { external } : {}) });
  const experiment = (name: string, tags: { key: string; value: string }[] = []): ResourceInfo => resourceInfoFromTags('experiment', 'default', { id: '7', name, tags });

  it('1. admins (users or @groups, a JWT group included) have MANAGE', () => {
    expect(effectiveLevel(who('root'), experiment('team-a/x'), policy)).toEqual({ level: 'MANAGE', reason: 'admin' });
    expect(effectiveLevel(who('pat'), experiment('x'), policy).reason).toBe('admin');
    expect(isAdmin(who('jo', ['platform'], true), policy)).toBe(true);
    expect(isAdmin(who('jo', ['team-a']), policy)).toBe(false);
  });

  it('2. the owner has MANAGE, and an explicit user grant wins over everything below it, even when lower', () => {
    expect(effectiveLevel(who('carl'), experiment('team-a/x', [{ key: 'mlgate.owner', value: 'carl' }]), policy)).toEqual({ level: 'MANAGE', reason: 'owner' });
    const granted = experiment('team-a/x', [{ key: 'mlgate.grant.user.alice', value: 'READ' }, { key: 'mlgate.grant.group.team-a', value: 'MANAGE' }]);
    expect(effectiveLevel(who('alice'), granted, policy)).toEqual({ level: 'READ', reason: 'user grant' });
  });

  it('3. else the highest grant to one of the user\'s groups (the file\'s and the JWT\'s)', () => {
    const tags = [{ key: 'mlgate.grant.group.viewers', value: 'READ' }, { key: 'mlgate.grant.group.team-a', value: 'EDIT' }, { key: 'mlgate.grant.group.ci', value: 'MANAGE' }];
    expect(effectiveLevel(who('alice'), experiment('other', tags), policy)).toEqual({ level: 'EDIT', reason: 'group grant @team-a' });
    expect(effectiveLevel(who('robot', ['ci'], true), experiment('other', tags), policy)).toEqual({ level: 'MANAGE', reason: 'group grant @ci' });
    expect(groupsOf(who('alice', ['ci']), policy)).toEqual(['team-a', 'viewers', 'ci']);
  });

  it('4. else the first rule matching the name and the user; 5. else the default', () => {
    expect(effectiveLevel(who('alice'), experiment('team-a/churn'), policy)).toEqual({ level: 'EDIT', reason: 'rule 1 (experiment team-a/*)' });
    expect(effectiveLevel(who('victor'), experiment('team-a/churn'), policy)).toEqual({ level: 'NO_PERMISSIONS', reason: 'rule 2 (experiment team-a/*)' });
    expect(effectiveLevel(who('victor'), experiment('team-b/x'), policy)).toEqual({ level: 'READ', reason: 'rule 3 (experiment *)' });
    expect(effectiveLevel(who('bob'), experiment('team-b/x'), policy)).toEqual({ level: 'NO_PERMISSIONS', reason: 'default' });
    expect(effectiveLevel(who('bob'), resourceInfoFromTags('registered-model', 'default', { name: 'm' }), policy)).toEqual({ level: 'MANAGE', reason: 'rule 4 (model *)' });
    // An experiment known only by id (it does not exist) has no name for rules to match.
    expect(effectiveLevel(who('victor'), { kind: 'experiment', workspace: 'default', id: '9', exists: false, grants: { users: new Map(), groups: new Map() } }, policy).reason).toBe('default');
  });

  it('the built-in policy\'s admin is the htpasswd user: a JWT naming "admin" is not an admin', () => {
    const builtin = builtinPolicy();
    expect(isAdmin(who('admin'), builtin)).toBe(true);
    expect(isAdmin({ user: 'admin', method: 'session', groups: [] }, builtin)).toBe(true);
    expect(isAdmin(who('admin', [], true), builtin)).toBe(false);
    expect(effectiveLevel(who('alice'), experiment('x'), builtin)).toEqual({ level: 'READ', reason: 'default' });
  });
});

describe('workspaces in the policy (MLflow --enable-workspaces)', () => {
  const policy = parsePolicy(lines(
    'groups:',
    '  team-a: [alice]',
    'admins: [root]',
    'workspaces:',
    '  team-a: { admins: [carol, "@leads"] }',
    '  team-b: { default: READ }',
    '  team-c:',
    'rules:',
    '  - { experiment: "*", users: [bob], level: EDIT }',
    '  - { workspace: team-a, experiment: "*", groups: [team-a], level: EDIT }',
    '  - { workspace: "team-*", model: "shared-*", users: ["*"], level: READ }',
    'default: READ',
  ), 'policy.yaml');
  const who = (user: string, groups: string[] = []): Principal => ({ user, method: 'basic', groups });
  const inWorkspace = (workspace: string, name: string, kind: 'experiment' | 'registered-model' = 'experiment') => resourceInfoFromTags(kind, workspace, { id: kind === 'experiment' ? '7' : undefined, name });
  const subject = (user: string, groups: string[] = []) => subjectOf(who(user, groups), policy);

  it('a rule without workspace: is the default workspace\'s; one with it matches only its workspaces (a glob)', () => {
    expect(effectiveLevel(who('bob'), inWorkspace('default', 'x'), policy)).toEqual({ level: 'EDIT', reason: 'rule 1 (experiment *)' });
    expect(effectiveLevel(who('bob'), inWorkspace('team-a', 'x'), policy)).toEqual({ level: 'NO_PERMISSIONS', reason: 'default' });
    expect(effectiveLevel(who('alice'), inWorkspace('team-a', 'x'), policy)).toEqual({ level: 'EDIT', reason: 'rule 2 (experiment * in workspace team-a)' });
    expect(effectiveLevel(who('alice'), inWorkspace('default', 'x'), policy)).toEqual({ level: 'READ', reason: 'default' });
    expect(effectiveLevel(who('dave'), inWorkspace('team-z', 'shared-churn', 'registered-model'), policy).reason).toBe('rule 3 (model shared-* in workspace team-z)');
  });

  it('the top-level default is the default workspace\'s; another\'s is its own default:, NO_PERMISSIONS unless set', () => {
    expect(effectiveLevel(who('dave'), inWorkspace('default', 'x'), policy).level).toBe('READ');
    expect(effectiveLevel(who('dave'), inWorkspace('team-b', 'x'), policy).level).toBe('READ');
    expect(effectiveLevel(who('dave'), inWorkspace('team-c', 'x'), policy).level).toBe('NO_PERMISSIONS');
    expect(effectiveLevel(who('dave'), inWorkspace('not-listed', 'x'), policy).level).toBe('NO_PERMISSIONS');
  });

  it('workspace admins (users or @groups) have MANAGE in their workspace only; admins everywhere', () => {
    expect(effectiveLevel(who('carol'), inWorkspace('team-a', 'x'), policy)).toEqual({ level: 'MANAGE', reason: 'workspace admin' });
    expect(effectiveLevel(who('lee', ['leads']), inWorkspace('team-a', 'x'), policy).reason).toBe('workspace admin');
    expect(effectiveLevel(who('carol'), inWorkspace('team-b', 'x'), policy).level).toBe('READ');
    expect(isAdmin(who('carol'), policy)).toBe(false);
    expect(effectiveLevel(who('root'), inWorkspace('team-c', 'x'), policy).reason).toBe('admin');
  });

  it('who may use a workspace: everyone the default one; another its admins, users a rule there gives READ, everyone when its default does', () => {
    expect(mayUseWorkspace(subject('dave'), 'default')).toBe(true);
    expect(mayUseWorkspace(subject('alice'), 'team-a')).toBe(true);
    expect(mayUseWorkspace(subject('carol'), 'team-a')).toBe(true);
    expect(mayUseWorkspace(subject('bob'), 'team-a')).toBe(true); // rule 3: shared-* models in team-*, for everyone
    expect(mayUseWorkspace(subject('dave'), 'team-b')).toBe(true);
    expect(mayUseWorkspace(subject('dave'), 'other')).toBe(false);
    expect(mayUseWorkspace(subject('root'), 'other')).toBe(true);
    const narrow = parsePolicy(lines('workspaces: { team-a: { admins: [carol] } }', 'rules:', '  - { workspace: team-a, experiment: "*", users: [alice], level: NO_PERMISSIONS }'), 'policy.yaml');
    expect(mayUseWorkspace(subjectOf(who('alice'), narrow), 'team-a')).toBe(false);
    expect(mayUseWorkspace(subjectOf(who('carol'), narrow), 'team-b')).toBe(false);
  });

  it('names each problem with file, line and key', () => {
    expect(problems(lines(
      'workspaces:',
      '  Team_A: { admins: [carol] }',
      '  team-b: { admin: [carol] }',
      '  default: { default: EDIT }',
      'rules:',
      '  - { workspace: "Team A", experiment: "*", users: [bob], level: READ }',
    ))).toEqual([
      expect.stringMatching(/^policy\.yaml:2: workspaces\.Team_A: .*must be an MLflow workspace name/),
      'policy.yaml:3: workspaces.team-b.admin: unknown key (did you mean admins?)',
      expect.stringMatching(/^policy\.yaml:4: workspaces\.default\.default: the default workspace's level is the top-level default:/),
      expect.stringMatching(/^policy\.yaml:6: rules\[0\]\.workspace: must be a workspace name, or a glob/),
    ]);
  });
});

describe('config/policy.example.yaml', () => {
  const text = readFileSync(new URL('../config/policy.example.yaml', import.meta.url), 'utf8');

  it('is a valid policy as shipped', () => {
    const policy = parsePolicy(text, 'policy.example.yaml');
    expect(policy.rules.length).toBeGreaterThan(0);
    expect(policy.workspaces.size).toBe(0);
  });

  it('and with its workspace lines uncommented', () => {
    const [head, tail] = text.split('# Uncomment to use:\n') as [string, string];
    const workspaces = tail.split('# and add rules such as:\n')[0]!.replace(/^# /gm, '');
    const rule = tail.split('# and add rules such as:\n')[1]!.replace(/^#\s*/gm, '  ');
    const uncommented = head.replace(/^rules:\n/m, `rules:\n${rule}`) + workspaces;
    const policy = parsePolicy(uncommented, 'policy.example.yaml');
    expect([...policy.workspaces.keys()]).toEqual(['team-a', 'team-b']);
    expect(policy.rules[0]).toMatchObject({ workspace: 'team-a', pattern: '*', level: 'EDIT' });
  });
});
