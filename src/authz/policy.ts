// The policy file (config/policy.yaml): groups, admins, name-glob rules and the default level.
// Validated like the main configuration (every problem at once, each as "file:line: key: rule"),
// re-read when it changes; an edit with a problem keeps the policy in force and logs why.
//
//   groups:                      # group -> members (a JWT's groups claim counts too)
//     team-a: [alice, carol]
//     viewers: [victor]
//   admins: [admin, "@platform"] # users, or @groups
//   rules:                       # the first rule matching the resource's NAME and the user decides
//     - { experiment: "team-a/*", groups: [team-a], level: EDIT }
//     - { model: "team-a-*", groups: [team-a], level: EDIT }
//     - { experiment: "*", groups: [viewers], level: READ }
//   default: READ                # NO_PERMISSIONS, READ, EDIT or MANAGE
//
// With MLflow's workspaces (mlflow server --enable-workspaces) every experiment and model lives in
// one workspace. Rules and `default` above are the default workspace's; a rule names another with
// `workspace:` (a glob, "*" for every workspace), and `workspaces:` gives each its own admins and
// default level (NO_PERMISSIONS unless set):
//
//   workspaces:
//     team-a: { admins: [carol], default: READ }
//   rules:
//     - { workspace: team-a, experiment: "*", groups: [team-a], level: EDIT }
//
// Without a policy file the built-in policy applies: no rules, default READ, and the htpasswd user
// `admin` (the one made on first start) is an admin, so existing single-user installs keep working.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { BOOTSTRAP_USER } from '../auth/bootstrap-admin.ts';
import { formatPath } from '../config/load.ts';
import { describeIssue } from '../config/issue-message.ts';
import { closestName } from '../config/suggest.ts';
import { ReloadingFile, type FileReading } from '../config/reloading-file.ts';
import { parseYamlText, type YamlFile } from '../config/yaml-file.ts';
import type { Logger } from '../log/logger.ts';
import { PERMISSION_LEVELS, parsePermissionLevel, type PermissionLevel } from './levels.ts';
import { DEFAULT_WORKSPACE, WORKSPACE_NAME } from './workspace.ts';

export type RuleTarget = 'experiment' | 'registered-model';

export interface PolicyRule {
  /** 1-based position in the file's `rules` list, for reasons and logs ("rule 2"). */
  number: number;
  on: RuleTarget;
  /** The glob as written: `*` any characters (`/` included), `?` one character. */
  pattern: string;
  regex: RegExp;
  /** The workspaces the rule is for: `default` unless the rule says (a glob). */
  workspace: string;
  workspaceRegex: RegExp;
  /** `users: ["*"]`: every authenticated user. */
  everyone: boolean;
  users: ReadonlySet<string>;
  groups: ReadonlySet<string>;
  level: PermissionLevel;
}

export interface Policy {
  /** The file it was read from; undefined for the built-in policy (no file). */
  source: string | undefined;
  admins: {
    users: ReadonlySet<string>;
    groups: ReadonlySet<string>;
    /**
     * Built-in policy only: the admin users count only when signed in through the htpasswd file
     * (password, mlgate token or session), not when a JWT names them.
     */
    htpasswdOnly: boolean;
  };
  /** Group -> members, as the file lists them. */
  groups: ReadonlyMap<string, ReadonlySet<string>>;
  /** User -> the file's groups that list them. */
  memberOf: ReadonlyMap<string, readonly string[]>;
  rules: readonly PolicyRule[];
  /** The default workspace's default level (`default:`). */
  defaultLevel: PermissionLevel;
  /** `workspaces:`: per workspace, its admins (MANAGE on everything in it) and default level. */
  workspaces: ReadonlyMap<string, WorkspacePolicy>;
}

export interface WorkspacePolicy {
  admins: { users: ReadonlySet<string>; groups: ReadonlySet<string> };
  /** For everyone else in the workspace, where no grant or rule says more; NO_PERMISSIONS unless set. */
  defaultLevel: PermissionLevel;
}

/** Every problem with a policy file, each as "file:line: key: what is wrong". */
export class PolicyError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid policy file:\n  ${problems.join('\n  ')}`);
    this.name = 'PolicyError';
  }
}

const EMPTY: ReadonlySet<string> = new Set();

/** The policy without a file: no rules, READ for everyone, and the htpasswd user `admin` is an admin. */
export function builtinPolicy(): Policy {
  return {
    source: undefined,
    admins: { users: new Set([BOOTSTRAP_USER]), groups: EMPTY, htpasswdOnly: true },
    groups: new Map(),
    memberOf: new Map(),
    rules: [],
    defaultLevel: 'READ',
    workspaces: new Map(),
  };
}

// ---- the schema -------------------------------------------------------------------------------

const LEVEL_RULE = `must be one of ${PERMISSION_LEVELS.join(', ')}`;
const level = z.string({ error: LEVEL_RULE }).transform((value, ctx) => {
  const parsed = parsePermissionLevel(value);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: LEVEL_RULE, input: value });
    return z.NEVER;
  }
  return parsed;
});
const userName = z.string({ error: 'must be a user name' }).regex(/^[^\s@]\S*$/, 'must be a user name (no spaces; "@" starts a group only in admins)');
const groupName = z.string({ error: 'must be a group name' }).regex(/^[^\s@]\S*$/, 'must be a group name without "@" (no spaces)');
const adminName = z.string({ error: 'must be a user name, or @group' }).regex(/^@?[^\s@]\S*$/, 'must be a user name, or @group');
const glob = z.string({ error: 'must be a name glob such as "team-a/*"' }).min(1);
const WORKSPACE_RULE = 'must be an MLflow workspace name (2-63 lowercase letters, digits and inner hyphens)';
const workspaceGlob = z.string({ error: 'must be a workspace name, or a glob such as "team-*" ("*": every workspace)' })
  .regex(/^[-a-z0-9*?]+$/, 'must be a workspace name, or a glob such as "team-*" ("*": every workspace)');

const workspaceSchema = z.strictObject({
  admins: z.array(adminName).default([]),
  default: level.optional(),
});

const ruleSchema = z.strictObject({
  workspace: workspaceGlob.optional(),
  experiment: glob.optional(),
  model: glob.optional(),
  users: z.array(z.union([z.literal('*'), userName], { error: 'must be a user name, or "*" for every user' })).optional(),
  groups: z.array(groupName).optional(),
  level,
}).superRefine((rule, ctx) => {
  if ((rule.experiment === undefined) === (rule.model === undefined)) {
    ctx.addIssue({ code: 'custom', path: [], message: 'needs exactly one of experiment: or model: (a name glob)' });
  }
  if (!rule.users?.length && !rule.groups?.length) {
    ctx.addIssue({ code: 'custom', path: [], message: 'needs users: or groups: (who the rule is for; users: ["*"] for everyone)' });
  }
});

const policySchema = z.strictObject({
  groups: z.record(groupName, z.array(userName)).default({}),
  admins: z.array(adminName).default([]),
  rules: z.array(ruleSchema).default([]),
  default: level.default('READ'),
  workspaces: z.record(z.string(), workspaceSchema.nullable()).default({}).check((ctx) => {
    for (const [name, workspace] of Object.entries(ctx.value)) {
      if (name !== DEFAULT_WORKSPACE && !WORKSPACE_NAME.test(name)) ctx.issues.push({ code: 'custom', path: [name], message: WORKSPACE_RULE, input: name });
      if (name === DEFAULT_WORKSPACE && workspace?.default !== undefined) {
        ctx.issues.push({ code: 'custom', path: [name, 'default'], message: 'the default workspace\'s level is the top-level default:', input: workspace.default });
      }
    }
  }),
});

const KNOWN_KEYS = { top: Object.keys(policySchema.shape), rule: Object.keys(ruleSchema.shape), workspace: Object.keys(workspaceSchema.shape) };

// ---- reading ---------------------------------------------------------------------------------

/** `*` any characters, `/` included; `?` one character; everything else literally. Case-sensitive, like MLflow's names. */
export function globToRegExp(pattern: string): RegExp {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 's');
}

/** Parses policy text; `label` names the file in messages. Throws PolicyError with every problem. */
export function parsePolicy(text: string, label: string): Policy {
  const yaml = parseYamlText(text);
  const problems: { line: number; text: string }[] = yaml.problems.map(({ line, col, path, message }) => ({
    line,
    text: path ? `${label}:${line}: ${formatPath(path)}: ${message}` : `${label}:${line}:${col}: ${message.replace('"port: 8888"', '"default: READ"')}`,
  }));
  if (!yaml.value) {
    if (!problems.length) problems.push({ line: 0, text: `${label}: the file must be a mapping of keys to values` });
    throw new PolicyError(problems.map((p) => p.text));
  }
  const raw = yaml.value;
  for (const key of ['groups', 'rules', 'admins', 'workspaces'] as const) if (raw[key] === null) delete raw[key];
  const result = policySchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      const paths = issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...issue.path, key]) : [issue.path];
      for (const path of paths.map((p) => p.map((key) => (typeof key === 'number' ? key : String(key))))) {
        const message = issue.code === 'unrecognized_keys' ? unknownKey(path)
          : issue.code === 'invalid_type' && (issue as { input?: unknown }).input === undefined ? 'is required'
          : describeIssue(issue, true);
        problems.push(located(yaml, label, path, message));
      }
    }
  }
  if (problems.length || !result.success) throw new PolicyError(problems.sort((a, b) => a.line - b.line).map((p) => p.text));
  return compile(result.data, label);
}

function unknownKey(path: (string | number)[]): string {
  const key = String(path.at(-1));
  const known = path.length > 1 && path[0] === 'rules' ? KNOWN_KEYS.rule : path.length > 2 && path[0] === 'workspaces' ? KNOWN_KEYS.workspace : KNOWN_KEYS.top;
  const guess = closestName(key, known);
  return guess ? `unknown key (did you mean ${guess}?)` : `unknown key (known: ${known.join(', ')})`;
}

function located(yaml: YamlFile, label: string, path: (string | number)[], message: string): { line: number; text: string } {
  const { line } = yaml.locate(path);
  return { line, text: `${label}:${line}: ${formatPath(path) || '(top level)'}: ${message}` };
}

function compile(data: z.output<typeof policySchema>, source: string): Policy {
  const groups = new Map<string, ReadonlySet<string>>();
  const memberOf = new Map<string, string[]>();
  for (const [group, members] of Object.entries(data.groups)) {
    groups.set(group, new Set(members));
    for (const member of new Set(members)) {
      const list = memberOf.get(member) ?? [];
      list.push(group);
      memberOf.set(member, list);
    }
  }
  const rules = data.rules.map((rule, i): PolicyRule => {
    const pattern = (rule.experiment ?? rule.model)!;
    const users = rule.users ?? [];
    const workspace = rule.workspace ?? DEFAULT_WORKSPACE;
    return {
      number: i + 1,
      on: rule.experiment !== undefined ? 'experiment' : 'registered-model',
      pattern,
      regex: globToRegExp(pattern),
      workspace,
      workspaceRegex: globToRegExp(workspace),
      everyone: users.includes('*'),
      users: new Set(users.filter((user) => user !== '*')),
      groups: new Set(rule.groups ?? []),
      level: rule.level,
    };
  });
  const workspaces = new Map<string, WorkspacePolicy>();
  for (const [name, workspace] of Object.entries(data.workspaces)) {
    workspaces.set(name, { admins: adminsOf(workspace?.admins ?? []), defaultLevel: workspace?.default ?? 'NO_PERMISSIONS' });
  }
  return {
    source,
    admins: { ...adminsOf(data.admins), htpasswdOnly: false },
    groups,
    memberOf,
    rules,
    defaultLevel: data.default,
    workspaces,
  };
}

/** `[alice, "@ops"]` as the users and the groups it names. */
function adminsOf(names: readonly string[]): { users: ReadonlySet<string>; groups: ReadonlySet<string> } {
  return {
    users: new Set(names.filter((name) => !name.startsWith('@'))),
    groups: new Set(names.filter((name) => name.startsWith('@')).map((name) => name.slice(1))),
  };
}

/**
 * Reads the policy file. A file that does not exist gives the built-in policy; any other problem
 * (unreadable, bad YAML, a broken rule) throws PolicyError listing them all.
 */
export function loadPolicy(path: string, label = path): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return builtinPolicy();
    const reason = code === 'EACCES' ? 'the policy file is not readable (permission denied)' : code === 'EISDIR' ? 'is a directory, not a policy file' : `cannot read the policy file: ${(err as Error).message}`;
    throw new PolicyError([`${label}: ${reason}`]);
  }
  return parsePolicy(text, label);
}

// ---- the store -------------------------------------------------------------------------------

interface PolicyStoreOptions {
  path: string;
  /** How the file is named in messages (relative to the working directory, as configured). */
  label?: string;
  watchIntervalMs: number;
}

/**
 * The policy in force. `current()` is what every decision reads (a plain field read); the file is
 * watched and re-read on change. A file with a problem keeps the policy in force and logs every
 * problem at error; a file removed while running keeps it too (until a restart or it returns),
 * so that a deleted file never silently widens access.
 */
export class PolicyStore {
  private policy: Policy = builtinPolicy();
  private readonly file: ReloadingFile<Policy>;
  private readonly listeners = new Set<(policy: Policy) => void>();
  readonly label: string;

  /**
   * Reads the file now; throws PolicyError when it has problems (start-up stops with them). The
   * read goes through the watched file, so that start() watches from the version read here and an
   * edit made during the rest of start-up is still picked up.
   */
  constructor(private readonly options: PolicyStoreOptions, private readonly logger?: Logger) {
    this.label = options.label ?? options.path;
    this.file = new ReloadingFile(options, { read: (initial) => this.read(initial), apply: (next, initial) => this.apply(next, initial) }, logger);
    this.file.reload(true);
  }

  current(): Policy {
    return this.policy;
  }

  /** Called with the new policy after each successful reload; returns an unsubscribe function. */
  onChange(listener: (policy: Policy) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.file.watch();
  }

  stop(): void {
    this.file.stop();
  }

  /** Re-reads the file; true when a new policy is in force. */
  reload(): boolean {
    return this.file.reload(false);
  }

  /** Every problem goes in one log line, as start-up reports them in one message. */
  private read(initial: boolean): FileReading<Policy> | undefined {
    if (initial) return { value: loadPolicy(this.options.path, this.label) };
    let next: Policy;
    try {
      next = loadPolicy(this.options.path, this.label);
    } catch (err) {
      const problems = err instanceof PolicyError ? err.problems : [(err as Error).message];
      this.logger?.error({ file: this.label, problems }, 'policy file has problems; keeping the policy in force');
      return undefined;
    }
    if (next.source === undefined && this.policy.source !== undefined) {
      this.logger?.warn({ file: this.label }, 'policy file removed; keeping the policy in force until it returns or mlgate restarts');
      return undefined;
    }
    return { value: next };
  }

  private apply(next: Policy, initial: boolean): void {
    this.policy = next;
    // Start-up describes the policy itself, and nobody has subscribed yet.
    if (initial) return;
    this.logger?.info(describePolicy(next, this.label), 'policy loaded');
    for (const listener of this.listeners) listener(next);
  }
}

/** What a log line says about a policy. */
export function describePolicy(policy: Policy, label: string): Record<string, unknown> {
  return {
    file: policy.source === undefined ? `${label} (absent: built-in policy)` : label,
    admins: [...policy.admins.users, ...[...policy.admins.groups].map((group) => `@${group}`)],
    groups: policy.groups.size,
    rules: policy.rules.length,
    default: policy.defaultLevel,
    ...(policy.workspaces.size ? { workspaces: [...policy.workspaces.keys()] } : {}),
  };
}
