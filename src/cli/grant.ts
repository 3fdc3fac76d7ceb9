import type { Command } from 'commander';
import {
  describeGrantee,
  describeResource,
  MlflowGrantsClient,
  parseGrantee,
  permissionsView,
  type MlflowResource,
  type PermissionsView,
} from '../authz/grants-client.ts';
import type { Grantee } from '../authz/grant-tags.ts';
import { parsePermissionLevel, PERMISSION_LEVELS, type PermissionLevel } from '../authz/levels.ts';
import type { CarrierKind } from '../authz/route-rule.ts';
import { addConfigFlags } from './config-flags.ts';
import { loadConfigOrExit } from './serve.ts';

type Options = Record<string, unknown>;

const KINDS = 'experiment or model';

/**
 * `mlgate grant|revoke|permissions`: ownership and grants are tags on the experiment or registered
 * model in MLflow itself (mlgate has no database), so these talk to the MLflow server (`upstream`)
 * directly, from the gateway's host where it is reachable. Every gateway sees a change at once
 * (after its short permission cache).
 */
export function registerGrant(program: Command): void {
  addConfigFlags(program.command('grant')
    .argument('<grantee>', 'a user, or @group')
    .argument('<kind>', KINDS)
    .argument('<resource>', 'experiment id or name, or registered model name')
    .argument('<level>', PERMISSION_LEVELS.join(', ')))
    .description('give a user or group a level on one experiment or registered model (replaces their previous grant there)')
    .action(async (granteeText: string, kindText: string, ref: string, levelText: string, options: Options) => {
      const grantee = granteeOf(granteeText);
      const kind = kindOf(kindText);
      const level = levelOf(levelText);
      const { client, resource } = await target(options, kind, ref);
      const before = currentLevel(resource, grantee);
      await client.setGrant(resource, grantee, level);
      console.log(`granted ${level} on ${describeResource(resource)} to ${describeGrantee(grantee)}${before && before !== level ? ` (was ${before})` : ''}`);
    });

  addConfigFlags(program.command('revoke')
    .argument('<grantee>', 'a user, or @group')
    .argument('<kind>', KINDS)
    .argument('<resource>', 'experiment id or name, or registered model name'))
    .description('remove a user\'s or group\'s grant on one experiment or registered model')
    .action(async (granteeText: string, kindText: string, ref: string, options: Options) => {
      const grantee = granteeOf(granteeText);
      const kind = kindOf(kindText);
      const { client, resource } = await target(options, kind, ref);
      const before = currentLevel(resource, grantee);
      if (!(await client.removeGrant(resource, grantee))) {
        throw new Error(`${describeGrantee(grantee)} has no grant on ${describeResource(resource)} ("mlgate permissions ${kindText} ${quoteArg(ref)}" lists them); nothing was changed`);
      }
      console.log(`revoked ${describeGrantee(grantee)}'s ${before} on ${describeResource(resource)}`);
    });

  addConfigFlags(program.command('permissions')
    .argument('<kind>', KINDS)
    .argument('<resource>', 'experiment id or name, or registered model name'))
    .description('show the owner of an experiment or registered model and every grant on it')
    .option('--json', 'print JSON (the shape of GET /-/api/permissions/...)')
    .action(async (kindText: string, ref: string, options: Options) => {
      const kind = kindOf(kindText);
      const { resource } = await target(options, kind, ref);
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

async function target(options: Options, kind: CarrierKind, ref: string): Promise<{ client: MlflowGrantsClient; resource: MlflowResource }> {
  const { config } = loadConfigOrExit(options);
  const client = new MlflowGrantsClient(config.upstream, { timeoutMs: Math.min(config.proxy.timeout, 60_000) });
  const resource = await client.find(kind, ref);
  if (!resource) {
    throw new Error(kind === 'experiment'
      ? `no experiment with id or name "${ref}" on the MLflow tracking server at ${client.origin}; nothing was changed`
      : `no registered model named "${ref}" on the MLflow tracking server at ${client.origin}; nothing was changed`);
  }
  return { client, resource };
}

function currentLevel(resource: MlflowResource, grantee: Grantee): PermissionLevel | undefined {
  const view = permissionsView(resource);
  return (grantee.kind === 'user' ? view.users : view.groups).find((grant) => grant.name === grantee.name)?.level;
}

function quoteArg(text: string): string {
  return /^[\w./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
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
