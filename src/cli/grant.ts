import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { readTokenFile } from '../auth/api-tokens.ts';
import { readHtpasswdUsers } from '../auth/htpasswd-file.ts';
import {
  describeGrantee,
  describeResource,
  inWorkspaceWords,
  MlflowGrantsClient,
  parseGrantee,
  permissionsView,
  type MlflowResource,
  type PermissionsView,
} from '../authz/grants-client.ts';
import type { Grantee } from '../authz/grant-tags.ts';
import { parsePermissionLevel, PERMISSION_LEVELS, type PermissionLevel } from '../authz/levels.ts';
import { loadPolicy, type Policy } from '../authz/policy.ts';
import type { CarrierKind } from '../authz/route-rule.ts';
import { DEFAULT_WORKSPACE, parseWorkspace } from '../authz/workspace.ts';
import type { Config } from '../config/schema.ts';
import { closestName } from '../config/suggest.ts';
import { addConfigFlags } from './config-flags.ts';
import { recordCommandEvent } from '../log/audit-log.ts';
import { loadConfigOrExit } from './serve.ts';
import { announceGrantChange } from '../state/grant-invalidation.ts';

type Options = Record<string, unknown>;

const KINDS = 'experiment or model';
const WORKSPACE_OPTION = ['--workspace <name>', 'the MLflow workspace the experiment or model is in (MLflow 3.10+ with --enable-workspaces; default: the default workspace)'] as const;

/**
 * `mlgate grant|revoke|permissions`: ownership and grants are tags on the experiment or registered
 * model in MLflow itself (mlgate has no database), so these talk to the MLflow server (`upstream`)
 * directly, from the gateway's host where it is reachable. With state.redis, a change is announced
 * to every gateway before the command returns (src/state/grant-invalidation.ts); without it, each
 * gateway sees it once its permission cache expires (authz.cacheTtl). With MLflow's workspaces,
 * --workspace names the one the resource is in (names are unique only within one); without it, the
 * default workspace.
 */
export function registerGrant(program: Command): void {
  addConfigFlags(program.command('grant')
    .argument('<grantee>', 'a user, or @group')
    .argument('<kind>', KINDS)
    .argument('<resource>', 'experiment id or name, or registered model name')
    .argument('<level>', PERMISSION_LEVELS.join(', ')), ['htpasswd', 'upstream'])
    .description('give a user or group a level on one experiment or registered model (replaces their previous grant there)')
    .option('--force', 'grant to a user or group that no file of this gateway names (e.g. one that signs in by JWT)')
    .option(...WORKSPACE_OPTION)
    .action(async (granteeText: string, kindText: string, ref: string, levelText: string, options: Options) => {
      const grantee = granteeOf(granteeText);
      const kind = kindOf(kindText);
      const level = levelOf(levelText);
      const workspace = workspaceOf(options);
      const { config } = loadConfigOrExit(options);
      if (!options.force) await refuseUnknownGrantee(config, grantee);
      const { client, resource } = await target(config, kind, ref, workspace);
      const before = currentLevel(resource, grantee);
      try {
        await client.setGrant(resource, grantee, level);
      } finally {
        // Also after a failure part-way (a legacy key left): what was written is announced.
        await announce(config, resource);
      }
      recordCommandEvent(config.audit, { event: 'grant-set', resource: describeResource(resource), grantee: describeGrantee(grantee), level });
      console.log(`granted ${level} on ${describeResource(resource)} to ${describeGrantee(grantee)}${before && before !== level ? ` (was ${before})` : ''}`);
    });

  addConfigFlags(program.command('revoke')
    .argument('<grantee>', 'a user, or @group')
    .argument('<kind>', KINDS)
    .argument('<resource>', 'experiment id or name, or registered model name'), ['upstream'])
    .description('remove a user\'s or group\'s grant on one experiment or registered model')
    .option(...WORKSPACE_OPTION)
    .action(async (granteeText: string, kindText: string, ref: string, options: Options) => {
      const grantee = granteeOf(granteeText);
      const kind = kindOf(kindText);
      const workspace = workspaceOf(options);
      const { config } = loadConfigOrExit(options);
      const { client, resource } = await target(config, kind, ref, workspace);
      const before = currentLevel(resource, grantee);
      let removed: boolean;
      try {
        removed = await client.removeGrant(resource, grantee);
      } catch (err) {
        await announce(config, resource);
        throw err;
      }
      if (removed) await announce(config, resource);
      if (!removed) {
        const list = ['mlgate', 'permissions', kindText, ref, ...(options.workspace === undefined ? [] : ['--workspace', workspace])].map(quoteArg).join(' ');
        throw new Error(`${describeGrantee(grantee)} has no grant on ${describeResource(resource)} ("${list}" lists them); nothing was changed`);
      }
      recordCommandEvent(config.audit, { event: 'grant-revoked', resource: describeResource(resource), grantee: describeGrantee(grantee) });
      console.log(`revoked ${describeGrantee(grantee)}'s ${before} on ${describeResource(resource)}`);
    });

  addConfigFlags(program.command('permissions')
    .argument('<kind>', KINDS)
    .argument('<resource>', 'experiment id or name, or registered model name'), ['upstream'])
    .description('show the owner of an experiment or registered model and every grant on it')
    .option('--json', 'print JSON (the shape of GET /-/api/permissions/...)')
    .option(...WORKSPACE_OPTION)
    .action(async (kindText: string, ref: string, options: Options) => {
      const kind = kindOf(kindText);
      const workspace = workspaceOf(options);
      const { resource } = await target(loadConfigOrExit(options).config, kind, ref, workspace);
      const view = permissionsView(resource);
      process.stdout.write(options.json ? `${JSON.stringify(view, null, 2)}\n` : describe(view, resource));
    });
}

function granteeOf(text: string): Grantee {
  const parsed = parseGrantee(text);
  if ('problem' in parsed) throw new Error(`${parsed.problem}; nothing was changed`);
  return parsed.grantee;
}

function kindOf(text: string): CarrierKind {
  const lower = text.toLowerCase();
  if (lower === 'experiment') return 'experiment';
  if (lower === 'model' || lower === 'registered-model') return 'registered-model';
  throw new Error(`the kind must be "experiment" or "model", got "${text}"; nothing was changed`);
}

function levelOf(text: string): PermissionLevel {
  const level = parsePermissionLevel(text);
  if (!level) throw new Error(`the level must be one of ${PERMISSION_LEVELS.join(', ')}, got "${text}"; nothing was changed`);
  return level;
}

/** --workspace, checked by MLflow's rule for names before anything is asked; without it the default workspace. */
function workspaceOf(options: Options): string {
  if (options.workspace === undefined) return DEFAULT_WORKSPACE;
  const parsed = parseWorkspace(String(options.workspace));
  if (!parsed.ok) throw new Error(`--workspace ${parsed.reason}; nothing was changed`);
  return parsed.workspace;
}

async function target(config: Config, kind: CarrierKind, ref: string, workspace: string): Promise<{ client: MlflowGrantsClient; resource: MlflowResource }> {
  const client = new MlflowGrantsClient(config.upstream, { timeoutMs: Math.min(config.proxy.timeout, 60_000) });
  const resource = await client.find(kind, ref, workspace);
  if (!resource) {
    // MLflow answers a workspace that does not exist as it answers a resource that does not.
    const where = workspace === DEFAULT_WORKSPACE ? '' : ` (or no workspace ${workspace})`;
    throw new Error(kind === 'experiment'
      ? `no experiment with id or name "${ref}"${inWorkspaceWords(workspace)} on the MLflow tracking server at ${client.origin}${where}; nothing was changed`
      : `no registered model named "${ref}"${inWorkspaceWords(workspace)} on the MLflow tracking server at ${client.origin}${where}; nothing was changed`);
  }
  return { client, resource };
}

/**
 * A grant to a misspelt name is silent: it names nobody, and the person meant still lacks access.
 * Users are known from the htpasswd file, the tokens file and the policy; groups from the policy.
 * Users and groups of a JWT may be in none of them, so --force grants anyway. Where none of those
 * files is here (the command run away from the gateway's host) there is nothing to check against.
 */
async function refuseUnknownGrantee(config: Config, grantee: Grantee): Promise<void> {
  const files = [config.auth.htpasswd, config.tokens.file, config.authz.policyFile].filter((file) => existsSync(file));
  if (files.length === 0) return;
  const users = new Set([...await readHtpasswdUsers(config.auth.htpasswd), ...(await readTokenFile(config.tokens.file)).records.map((record) => record.user)]);
  const groups = new Set<string>();
  const policy = policyOrUndefined(config.authz.policyFile);
  for (const [group, members] of policy?.groups ?? []) {
    groups.add(group);
    for (const member of members) users.add(member);
  }
  for (const admins of [policy?.admins, ...[...policy?.workspaces.values() ?? []].map((workspace) => workspace.admins)]) {
    for (const user of admins?.users ?? []) users.add(user);
    for (const group of admins?.groups ?? []) groups.add(group);
  }
  for (const rule of policy?.rules ?? []) {
    rule.users.forEach((user) => users.add(user));
    rule.groups.forEach((group) => groups.add(group));
  }
  const known = grantee.kind === 'user' ? users : groups;
  if (known.has(grantee.name)) return;
  const guess = closestName(grantee.name, known);
  const where = grantee.kind === 'user' ? files.join(', ').replace(/, ([^,]*)$/, ' or $1')
    : policy ? config.authz.policyFile : `a policy file (there is none at ${config.authz.policyFile})`;
  const jwt = grantee.kind === 'user' ? 'a user who signs in with a JWT may be in none of them' : "a JWT's groups claim may still name it";
  const again = ['mlgate', ...process.argv.slice(2), '--force'].map(quoteArg).join(' ');
  throw new Error(`warning: no ${grantee.kind} "${grantee.name}" in ${where}${guess ? ` (did you mean ${grantee.kind === 'group' ? '@' : ''}${guess}?)` : ''}; `
    + `${jwt}. Nothing was changed; to grant anyway: ${again}`);
}

/** A policy file with problems names nobody for certain; the gateway itself refuses to start with it. */
function policyOrUndefined(path: string): Policy | undefined {
  try {
    const policy = loadPolicy(path);
    return policy.source === undefined ? undefined : policy;
  } catch {
    return undefined;
  }
}

/** Tells the gateways through their Redis (state.redis); without it they see the change within authz.cacheTtl. */
async function announce(config: Config, resource: MlflowResource): Promise<void> {
  const redis = config.state.redis;
  if (!redis) return;
  const problem = await announceGrantChange(redis, { workspace: resource.workspace, kind: resource.kind, id: resource.id, name: resource.name });
  if (problem) {
    console.error(`warning: the change is written to MLflow, but the gateways could not be told through Redis at ${redis.url.replace(/\/\/[^@/]*@/, '//***@')} (${problem}); each applies it within authz.cacheTtl (${config.authz.cacheTtl / 1000} s)`);
  }
}

function currentLevel(resource: MlflowResource, grantee: Grantee): PermissionLevel | undefined {
  const view = permissionsView(resource);
  return (grantee.kind === 'user' ? view.users : view.groups).find((grant) => grant.name === grantee.name)?.level;
}

function quoteArg(text: string): string {
  return /^[\w./@=:-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

function describe(view: PermissionsView, resource: MlflowResource): string {
  const lines = [describeResource(resource) + (resource.kind === 'experiment' && resource.lifecycleStage === 'deleted' ? ' (deleted)' : '')];
  lines.push(`owner: ${view.owner ?? '(none recorded)'}`);
  const rows = [
    ...view.users.map((grant) => [grant.name, grant.level]),
    ...view.groups.map((grant) => [`@${grant.name}`, grant.level]),
  ];
  if (rows.length === 0) {
    lines.push('no grants (levels come from the policy file and the default)');
  } else {
    const width = Math.max('GRANTEE'.length, ...rows.map(([who]) => who!.length));
    lines.push(`${'GRANTEE'.padEnd(width)}  LEVEL`);
    for (const [who, level] of rows) lines.push(`${who!.padEnd(width)}  ${level}`);
  }
  return lines.join('\n') + '\n';
}
